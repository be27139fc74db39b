"""The recommenders: DiffCL and the baselines MF-BPR and LightGCN, in one code path.

Introduced in notebook 05 (``DiffCLConfig``: a short DiffCL run whose views the notebook inspects);
notebooks 06-07 train small models, notebook 08 trains and compares all three. The pieces appear
earlier: LightGCN propagation in 01, the item-item graph in 02, diffusion views in 03-05,
alignment in 06.

All three models share one interface (:class:`Recommender`):

- ``embeddings() -> (users (n_users, d), items (n_items, d))``, the final representations;
- ``loss(users, pos, neg) -> dict`` with the weighted terms and ``"total"``;
- scores are dot products ``ŷ_ui = e_u · e_i``.

DiffCL, as this package builds it (paper statement vs reconstruction in ``DiffCLConfig``):

    views v ∈ {id} ∪ modalities;   item input x_i^id = E_i,  x_i^m = W_m f_i^m   (frozen features f)
    h^v = mean_{l=0..L} Â^l [E_u^v ; x^v]                         (LightGCN over the train graph)
    h_i^id ← h_i^id + (S E^id)_i   or   h_i^m ← h_i^m + (S h^m)_i  (item-item graph: item_graph_target)
    e = h^id + Σ_m softmax(a)_m h^m                               (fusion)
    z', z'' = views(h^m) on sampled nodes                          (diffusion views, or SimGCL noise)
    L = L_BPR + λ_cl L_cl + λ_align L_align + λ_diff L_diff + λ_reg L_reg

Sources of the choices: the ID-item graph propagation and the degree-sensitive edge pruning follow
FREEDOM (Zhou & Shen 2023); the scalar-moment alignment ``align_kind="mentor"`` is MENTOR's
``align_vt`` (Xu et al. 2024); the diffusion (schedule, x0 denoiser) is DiffMM's / DiffRec's, with
two options of ours (residual identity-initialised denoiser after EDM, per-row standardisation)
that keep x0's signal in the views from the first step. ``DiffCL.view_diagnostics`` measures it.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from .data import RecDataset
from .errors import DiffCLError
from .graphs import (
    bipartite_adjacency,
    degree_sensitive_edge_sample,
    item_item_graph,
    lightgcn_propagate,
    sparse_transpose,
    spmm_t,
)
from .losses import align_to_anchor, bpr_loss, info_nce, l2_reg, mentor_alignment, uniformity
from .views import angular_deviation, make_view_generator

log = logging.getLogger(__name__)

MODELS = ("diffcl", "lightgcn", "mf")
ALIGN_KINDS = ("infonce", "mentor", "moments")


@dataclass
class DiffCLConfig:
    """Every size, weight and ablation switch of the model. Defaults follow MMRec / FREEDOM / DiffMM.

    Paper (arXiv 2501.01066) states: ID + visual + textual views through a graph encoder, diffusion
    contrastive views with InfoNCE, alignment through the ID anchor, an item-item graph from
    modality features, loss = BPR + CL + alignment (+ L2). Everything else here is our
    reconstruction from MMRec, FREEDOM, MENTOR, DiffMM and DiffRec.
    """

    embedding_dim: int = 64                 # d (MMRec default)
    n_layers: int = 2                       # LightGCN layers L
    # item-item graph (paper: yes; k, weights and one layer: FREEDOM)
    use_item_graph: bool = True
    item_graph_k: int = 10
    item_graph_weights: dict[str, float] | None = None   # None: image .1 / text .9, else equal
    # which views' items the item-item graph enhances: h_i^v <- h_i^v + (S h^v)_i
    #   "modalities": the modality views (our first reconstruction; the graph is feature-based, so it
    #                 can only smooth modality noise into modality views);
    #   "id":         the ID item embeddings only, as FREEDOM (Zhou & Shen 2023) and LATTICE (Zhang et
    #                 al. 2021) do: the frozen feature kNN graph propagates the interaction-learnt IDs;
    #   "all":        every view.
    item_graph_target: str = "modalities"
    item_graph_on_id: bool = False          # legacy switch: True adds "id" to the target views
    # FREEDOM's degree-sensitive edge pruning of the user-item graph: each epoch keep a fraction
    # 1 - edge_prune of the train edges, sampled with probability ∝ 1/sqrt(d_u d_i) (0 = off)
    edge_prune: float = 0.0
    # contrastive views (paper: diffusion views + InfoNCE)
    use_cl: bool = True
    view_kind: str = "diffusion"            # "diffusion" (DiffCL) or "random" (SimGCL baseline)
    cl_temperature: float = 0.2
    lambda_cl: float = 0.05
    cl_max_nodes: int | None = 512           # contrast/align at most this many users (and items) per batch
    random_eps: float = 0.1                 # SimGCL noise magnitude for view_kind="random"
    # SimGCL's eps is absolute (Yu et al. 2022); relative=True scales it by ||h|| per row (ours), so
    # random and diffusion views can be compared at matched angular deviation
    random_relative: bool = False
    # diffusion (DiffMM / DiffRec defaults)
    schedule: str = "linear-var"
    diffusion_steps: int = 5
    noise_scale: float = 0.1
    noise_min: float = 1e-4
    noise_max: float = 0.02
    view_steps: int | None = None           # forward steps of a view (None: all)
    sampling_noise: bool = False
    snr_weighted: bool = False
    denoiser_hidden: int = 128
    # x0_hat = x_t + g(x_t, t), g zero-initialised (EDM skip parameterisation, Karras et al. 2022):
    # an untrained denoiser is the identity, so views carry x0's signal from the first step
    # (False: DiffMM's plain x0-predicting MLP, whose untrained output is unrelated to x0)
    denoiser_residual: bool = False
    # diffuse x0 / s with s = ||x0|| / sqrt(d) per row, view scaled back by s (DDPM assumes unit-scale
    # data; EDM's sigma_data): the schedule's noise is then relative to the embedding's norm
    diffusion_standardize: bool = False
    lambda_diff: float = 1.0
    # alignment (paper: align visual/textual through stable ID embeddings)
    use_align: bool = True
    # "infonce": InfoNCE(h^m, sg(h^id)) per sampled node (instance level; the paper's "stable ID
    #            anchor" read as a stop-gradient, our reconstruction);
    # "mentor":  MENTOR's align_vt (Xu et al. 2024): |mean(A) - mean(B)| + |var(A) - var(B)| with
    #            SCALAR mean and variance of whole embedding tables, pairwise among ID, fused and
    #            each modality, no stop-gradient;
    # "moments": our per-feature variant, mean_d |mu_d^m - mu_d^id| + mean_d |var_d^m - var_d^id|
    #            over the sampled nodes, towards sg(h^id) (inspired by MENTOR, not MENTOR's loss)
    align_kind: str = "infonce"
    lambda_align: float = 0.05
    align_temperature: float = 0.2
    # fusion and regularisation
    fusion: str = "softmax"                 # "softmax" (learned weights), "mean"
    lambda_reg: float = 1e-4

    def __post_init__(self) -> None:
        checks = [
            (self.embedding_dim >= 1, "embedding_dim must be >= 1"),
            (self.n_layers >= 0, "n_layers must be >= 0"),
            (self.item_graph_k >= 1, "item_graph_k must be >= 1"),
            (self.view_kind in ("diffusion", "random"), "view_kind must be 'diffusion' or 'random'"),
            (self.align_kind in ALIGN_KINDS, f"align_kind must be one of {ALIGN_KINDS}"),
            (self.item_graph_target in ("modalities", "id", "all"),
             "item_graph_target must be 'modalities', 'id' or 'all'"),
            (0.0 <= self.edge_prune < 1.0, "edge_prune must lie in [0, 1)"),
            (self.fusion in ("softmax", "mean"), "fusion must be 'softmax' or 'mean'"),
            (self.cl_temperature > 0 and self.align_temperature > 0, "temperatures must be > 0"),
            (self.cl_max_nodes is None or self.cl_max_nodes >= 2, "cl_max_nodes must be >= 2 or None"),
        ]
        for ok, msg in checks:
            if not ok:
                raise DiffCLError(f"DiffCLConfig: {msg} (got {self}).")
        for name in ("lambda_cl", "lambda_diff", "lambda_align", "lambda_reg"):
            if getattr(self, name) < 0:
                raise DiffCLError(f"DiffCLConfig: {name}={getattr(self, name)} must be >= 0.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DiffCLConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise DiffCLError(f"DiffCLConfig: unknown fields {sorted(unknown)}; known: {sorted(known)}.")
        return cls(**d)


#: The view fix of this package (residual identity-initialised denoiser, standardised diffusion, a
#: schedule with 1 - abar_T = 0.1): views keep x0's direction from the first step (angular deviation
#: about 0.3 instead of 1.41 at initialisation on tiktok-dev) and send ~90x the contrastive gradient.
#: Not the default: at lambda_cl = 0.01 its valid R@20 on tiktok-dev was below LightGCN's (1 seed).
FIXED_VIEWS: dict[str, Any] = {"denoiser_residual": True, "diffusion_standardize": True, "noise_scale": 5.0}

# Ablations of DiffCL, one config change each (notebook 08 and `python -m diffcl_lite ablate`).
ABLATIONS: dict[str, dict[str, Any]] = {
    "diffcl": {},
    "w/o diffusion (random views)": {"view_kind": "random"},
    "w/o CL": {"use_cl": False},
    "w/o alignment": {"use_align": False},
    "w/o item-item graph": {"use_item_graph": False},
}


class Recommender(nn.Module):
    """Common interface of MF, LightGCN and DiffCL."""

    name = "recommender"

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings for evaluation (no graph of gradients, eval mode)."""
        was = self.training
        self.eval()
        u, i = self.embeddings()
        self.train(was)
        return u.detach(), i.detach()

    def _bpr_terms(self, u_all, i_all, users, pos, neg, ego: list[torch.Tensor], lambda_reg: float):
        u, p, n = u_all[users], i_all[pos], i_all[neg]
        # ŷ_ui = e_u · e_i
        bpr = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        reg = l2_reg(*ego, batch_size=len(users))
        return {"bpr": bpr, "reg": lambda_reg * reg}


class MF(Recommender):
    """Matrix factorisation trained with BPR: ŷ_ui = p_u · q_i."""

    name = "mf"

    def __init__(self, n_users: int, n_items: int, embedding_dim: int = 64, lambda_reg: float = 1e-4) -> None:
        super().__init__()
        self.user_emb = nn.Embedding(n_users, embedding_dim)
        self.item_emb = nn.Embedding(n_items, embedding_dim)
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        self.lambda_reg = lambda_reg

    def embeddings(self):
        return self.user_emb.weight, self.item_emb.weight

    def loss(self, users, pos, neg):
        u, i = self.embeddings()
        terms = self._bpr_terms(u, i, users, pos, neg, [u[users], i[pos], i[neg]], self.lambda_reg)
        terms["total"] = terms["bpr"] + terms["reg"]
        return terms


class LightGCN(Recommender):
    """LightGCN: E = mean_{l=0..L} Â^l E^(0) over the normalised train graph Â."""

    name = "lightgcn"

    def __init__(self, data: RecDataset, embedding_dim: int = 64, n_layers: int = 2, lambda_reg: float = 1e-4,
                 device: torch.device | None = None) -> None:
        super().__init__()
        self.n_users, self.n_items, self.n_layers = data.n_users, data.n_items, n_layers
        self.user_emb = nn.Embedding(data.n_users, embedding_dim)
        self.item_emb = nn.Embedding(data.n_items, embedding_dim)
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        self.lambda_reg = lambda_reg
        self.adj = bipartite_adjacency(data.n_users, data.n_items, data.train, device=device)

    def _apply(self, fn, *args, **kwargs):  # keep the sparse graph on the module's device
        super()._apply(fn, *args, **kwargs)
        self.adj = fn(self.adj)
        return self

    def embeddings(self):
        ego = torch.cat([self.user_emb.weight, self.item_emb.weight])
        out = lightgcn_propagate(self.adj, ego, self.n_layers, symmetric=True)
        return torch.split(out, [self.n_users, self.n_items])

    def loss(self, users, pos, neg):
        u, i = self.embeddings()
        ego = [self.user_emb(users), self.item_emb(pos), self.item_emb(neg)]
        terms = self._bpr_terms(u, i, users, pos, neg, ego, self.lambda_reg)
        terms["total"] = terms["bpr"] + terms["reg"]
        return terms


class DiffCL(Recommender):
    """DiffCL: ID + modality views, item-item graph, diffusion contrastive views, ID-anchored alignment."""

    name = "diffcl"

    def __init__(self, data: RecDataset, config: DiffCLConfig | None = None, device: torch.device | None = None,
                 cache_dir: str | None = None) -> None:
        super().__init__()
        cfg = config or DiffCLConfig()
        self.config = cfg
        self.n_users, self.n_items = data.n_users, data.n_items
        self.modalities = list(data.features)
        if not self.modalities:
            raise DiffCLError(
                f"DiffCL needs at least one modality feature; dataset {data.name!r} has none. "
                "Fix: load the *_feat.npy files, or train --model lightgcn."
            )
        d = cfg.embedding_dim
        self.views = ["id", *self.modalities]
        # user embeddings, one table per view: E_u^v
        self.user_emb = nn.ModuleDict({v: nn.Embedding(data.n_users, d) for v in self.views})
        # ID item embeddings E_i^id
        self.item_emb = nn.Embedding(data.n_items, d)
        # frozen modality features f^m and their projections W_m
        for m in self.modalities:
            self.register_buffer(f"feat_{m}", torch.as_tensor(data.features[m], dtype=torch.float32), persistent=False)
        self.proj = nn.ModuleDict({m: nn.Linear(data.features[m].shape[1], d) for m in self.modalities})
        for emb in [*self.user_emb.values(), self.item_emb]:
            nn.init.xavier_uniform_(emb.weight)
        # fusion weights a_m (softmax)
        self.fusion_logits = nn.Parameter(torch.zeros(len(self.modalities)))
        self.adj = bipartite_adjacency(data.n_users, data.n_items, data.train, device=device)
        # the graph training propagates over (FREEDOM's pruned copy when edge_prune > 0); eval uses adj
        self.train_adj = self.adj
        self._train_pairs = data.train
        self.item_graph = None
        self.item_graph_views = set()
        if cfg.use_item_graph:
            target = {"modalities": set(self.modalities), "id": {"id"}, "all": set(self.views)}[cfg.item_graph_target]
            self.item_graph_views = target | ({"id"} if cfg.item_graph_on_id else set())
            self.item_graph = item_item_graph(
                data.features, k=cfg.item_graph_k, weights=cfg.item_graph_weights, cache_dir=cache_dir, device=device
            )
        # S^T once, for the backward of S h (the kNN graph is not symmetric)
        self.item_graph_t = sparse_transpose(self.item_graph) if self.item_graph is not None else None
        self.view_gen = nn.ModuleDict()
        if cfg.use_cl:
            for m in self.modalities:
                self.view_gen[m] = make_view_generator(
                    cfg.view_kind, d, schedule=cfg.schedule, steps=cfg.diffusion_steps, noise_scale=cfg.noise_scale,
                    noise_min=cfg.noise_min, noise_max=cfg.noise_max, view_steps=cfg.view_steps,
                    sampling_noise=cfg.sampling_noise, snr_weighted=cfg.snr_weighted, hidden=cfg.denoiser_hidden,
                    residual=cfg.denoiser_residual, standardize=cfg.diffusion_standardize,
                    eps=cfg.random_eps, relative=cfg.random_relative,
                )

    def _apply(self, fn, *args, **kwargs):  # move the sparse graphs with the module
        super()._apply(fn, *args, **kwargs)
        pruned = self.train_adj is not self.adj
        self.adj = fn(self.adj)
        self.train_adj = fn(self.train_adj) if pruned else self.adj
        if self.item_graph is not None:
            self.item_graph = fn(self.item_graph)
            self.item_graph_t = fn(self.item_graph_t)
        return self

    def pre_epoch(self) -> None:
        """Called by the training loop before each epoch: FREEDOM's edge pruning (``edge_prune > 0``)."""
        p = self.config.edge_prune
        if p <= 0:
            return
        kept = degree_sensitive_edge_sample(self.n_users, self.n_items, self._train_pairs, keep=1.0 - p)
        self.train_adj = bipartite_adjacency(self.n_users, self.n_items, kept, device=self.adj.device)

    def feature(self, m: str) -> torch.Tensor:
        return getattr(self, f"feat_{m}")

    def fusion_weights(self) -> torch.Tensor:
        """w_m = softmax(a)_m (or 1/M for fusion="mean")."""
        if self.config.fusion == "mean":
            return torch.full_like(self.fusion_logits, 1.0 / len(self.modalities))
        return torch.softmax(self.fusion_logits, dim=0)

    def view_embeddings(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per-view (users, items) after LightGCN and item-item enhancement."""
        d = self.config.embedding_dim
        ego = []
        for v in self.views:
            # item input: x_i^id = E_i ;  x_i^m = W_m f_i^m
            items = self.item_emb.weight if v == "id" else self.proj[v](self.feature(v))
            ego.append(torch.cat([self.user_emb[v].weight, items]))
        adj = self.train_adj if self.training else self.adj
        if adj.device.type == "cpu":
            # on a CPU one sparse product per view (64 columns stay in cache; about a fifth faster than one
            # 192-column product, and no slicing whose backward would allocate the full width)
            hs = [lightgcn_propagate(adj, e, self.config.n_layers, symmetric=True) for e in ego]
        else:
            # elsewhere all views share Â side by side in one sparse product, h = mean_l Â^l x
            h_all = lightgcn_propagate(adj, torch.cat(ego, dim=1), self.config.n_layers, symmetric=True)
            hs = [h_all[:, k * d : (k + 1) * d] for k in range(len(self.views))]
        out = {}
        for v, h in zip(self.views, hs):
            # split, not two slices: its backward is one cat instead of two zero-filled full-size buffers
            hu, hi = torch.split(h, [self.n_users, self.n_items])
            if v in self.item_graph_views:
                if v == "id":
                    # FREEDOM: h_i^id ← h_i^id + (S E^id)_i, the graph over the ID item embeddings
                    hi = hi + spmm_t(self.item_graph, self.item_graph_t, self.item_emb.weight)
                else:
                    # h_i^m ← h_i^m + (S h^m)_i
                    hi = hi + spmm_t(self.item_graph, self.item_graph_t, hi)
            out[v] = (hu, hi)
        return out

    def fuse(self, views: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        # e = h^id + Σ_m w_m h^m
        w = self.fusion_weights()
        u, i = views["id"]
        for k, m in enumerate(self.modalities):
            u = u + w[k] * views[m][0]
            i = i + w[k] * views[m][1]
        return u, i

    def embeddings(self):
        return self.fuse(self.view_embeddings())

    def _subsample(self, nodes: torch.Tensor) -> torch.Tensor:
        k = self.config.cl_max_nodes
        if k is None or len(nodes) <= k:
            return nodes
        return nodes[torch.randperm(len(nodes), device=nodes.device)[:k]]

    def contrast_nodes(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's distinct users and items that the contrastive and alignment terms use.

        At most ``cl_max_nodes`` of each, drawn at random (the cost of InfoNCE grows with the square).
        Notebook 08's capstone calls it.
        """
        return self._subsample(torch.unique(users)), self._subsample(torch.unique(torch.cat([pos, neg])))

    def contrastive_views(self, views: dict[str, tuple[torch.Tensor, torch.Tensor]], cl_users: torch.Tensor,
                          cl_items: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``{m: (x0, z', z'', L_diff^m)}`` for every modality: two views of the nodes and the generator's own loss.

        ``x0`` stacks the users ``cl_users`` then the items ``cl_items`` of modality view ``m``; both
        views and the denoising loss draw random noise, in this order, modality by modality.
        Notebook 08's capstone calls it.
        """
        out = {}
        for m in self.modalities:
            hu, hi = views[m]
            gen = self.view_gen[m]
            # users and items share one pass through the view generator
            x0 = torch.cat([hu[cl_users], hi[cl_items]])
            # two views z', z'' of the same nodes
            z1, z2 = gen(x0)
            # the diffusion model's own denoising loss on sg(x0)
            out[m] = (x0, z1, z2, gen.loss(x0))
        return out

    def loss(self, users, pos, neg):
        cfg = self.config
        views = self.view_embeddings()
        u_all, i_all = self.fuse(views)
        ego = [self.user_emb["id"](users), self.item_emb(pos), self.item_emb(neg)]
        terms = self._bpr_terms(u_all, i_all, users, pos, neg, ego, cfg.lambda_reg)
        zero = u_all.new_zeros(())
        cl, diff, align = zero, zero, zero
        # contrast a random subset of the batch's nodes
        cl_users, cl_items = self.contrast_nodes(users, pos, neg)
        n_u = len(cl_users)
        if cfg.use_cl:
            for m, (_, z1, z2, denoise) in self.contrastive_views(views, cl_users, cl_items).items():
                # L_cl = InfoNCE(z'_u, z''_u) + InfoNCE(z'_i, z''_i)
                cl = cl + info_nce(z1[:n_u], z2[:n_u], cfg.cl_temperature) + info_nce(z1[n_u:], z2[n_u:], cfg.cl_temperature)
                diff = diff + denoise
        if cfg.use_align and cfg.align_kind != "mentor":
            id_u, id_i = views["id"]
            for m in self.modalities:
                hu, hi = views[m]
                # L_align = align(h^m, sg(h^id)) for the same sampled users and items
                align = align + align_to_anchor(hu[cl_users], id_u[cl_users], cfg.align_kind, cfg.align_temperature)
                align = align + align_to_anchor(hi[cl_items], id_i[cl_items], cfg.align_kind, cfg.align_temperature)
        if cfg.use_align and cfg.align_kind == "mentor":
            # MENTOR: Σ_{pairs of {id, fused, m...}} |σ²(A) - σ²(B)| + |μ(A) - μ(B)|, whole tables, users and items
            align = mentor_alignment({"id": views["id"][1], "fused": i_all, **{m: views[m][1] for m in self.modalities}})
            align = align + mentor_alignment({"id": views["id"][0], "fused": u_all,
                                              **{m: views[m][0] for m in self.modalities}})
        terms["cl"] = cfg.lambda_cl * cl
        terms["diff"] = cfg.lambda_diff * diff
        terms["align"] = cfg.lambda_align * align
        terms["total"] = terms["bpr"] + terms["reg"] + terms["cl"] + terms["diff"] + terms["align"]
        return terms


    def view_diagnostics(self, n_nodes: int = 512, seed: int = 0) -> dict[str, float]:
        """Per modality: how far the contrastive views are from x0 and from each other, and the gradient they send.

        Measured on ``n_nodes`` users and ``n_nodes`` items drawn uniformly with ``seed`` (the same
        nodes every call), inside a forked RNG so that training's random stream is untouched. Keys
        ``diag_<m>_<what>``:

        * ``dev_x0``: mean angular deviation of a view from its x0 (:func:`angular_deviation`,
          0 = same direction, sqrt(2) = orthogonal), averaged over both views;
        * ``dev_views``: angular deviation between the two views of the same node (0 = identical:
          InfoNCE then only pushes negatives apart);
        * ``uniformity`` / ``uniformity_x0``: Wang & Isola uniformity of the views and of x0
          (about 0 = all nodes in one direction; lower = spread), mean of users and items;
        * ``infonce``: the unweighted contrastive loss on these nodes (chance = ln n_nodes);
        * ``cl_grad``: ||dL_cl / dx0||, the contrastive gradient reaching the encoder's output.

        Empty when ``use_cl`` is off.
        """
        if not self.config.use_cl:
            return {}
        dev = self.item_emb.weight.device
        devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
        out: dict[str, float] = {}
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed))
            with torch.no_grad():
                views = self.view_embeddings()
            nu, ni = min(n_nodes, self.n_users), min(n_nodes, self.n_items)
            users = torch.randperm(self.n_users, device=dev)[:nu]
            items = torch.randperm(self.n_items, device=dev)[:ni]
            tau = self.config.cl_temperature
            for m in self.modalities:
                hu, hi = views[m]
                x0 = torch.cat([hu[users], hi[items]]).detach().requires_grad_(True)
                with torch.enable_grad():
                    z1, z2 = self.view_gen[m](x0)
                    cl = info_nce(z1[:nu], z2[:nu], tau) + info_nce(z1[nu:], z2[nu:], tau)
                    (grad,) = torch.autograd.grad(cl, x0)
                z1, z2 = z1.detach(), z2.detach()
                x0d = x0.detach()
                unif = lambda z: 0.5 * float(uniformity(z[:nu]) + uniformity(z[nu:]))  # noqa: E731
                out.update({
                    f"diag_{m}_dev_x0": 0.5 * (angular_deviation(z1, x0d) + angular_deviation(z2, x0d)),
                    f"diag_{m}_dev_views": angular_deviation(z1, z2),
                    f"diag_{m}_uniformity": unif(z1),
                    f"diag_{m}_uniformity_x0": unif(x0d),
                    f"diag_{m}_infonce": 0.5 * float(cl.detach()),
                    f"diag_{m}_cl_grad": float(grad.norm()),
                })
        return {k: round(v, 6) for k, v in out.items()}


def build_model(name: str, data: RecDataset, config: DiffCLConfig | None = None,
                device: torch.device | None = None, cache_dir: str | None = None) -> Recommender:
    """Create ``"diffcl"``, ``"lightgcn"`` or ``"mf"`` for ``data`` on ``device``."""
    cfg = config or DiffCLConfig()
    if name == "diffcl":
        model: Recommender = DiffCL(data, cfg, device=device, cache_dir=cache_dir)
    elif name == "lightgcn":
        model = LightGCN(data, cfg.embedding_dim, cfg.n_layers, cfg.lambda_reg, device=device)
    elif name == "mf":
        model = MF(data.n_users, data.n_items, cfg.embedding_dim, cfg.lambda_reg)
    else:
        raise DiffCLError(f"model={name!r} is not known; use one of {', '.join(MODELS)}.")
    return model.to(device) if device is not None else model


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


__all__ = ["DiffCLConfig", "ABLATIONS", "Recommender", "MF", "LightGCN", "DiffCL", "build_model", "count_parameters",
           "MODELS", "ALIGN_KINDS", "FIXED_VIEWS"]
