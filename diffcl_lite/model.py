"""The recommenders: DiffCL and the baselines MF-BPR and LightGCN, in one code path.

Introduced in notebook 08 (full training); the pieces appear earlier: LightGCN propagation in 01,
the item-item graph in 02, diffusion views in 03-05, alignment in 06.

All three models share one interface (:class:`Recommender`):

- ``embeddings() -> (users (n_users, d), items (n_items, d))``, the final representations;
- ``loss(users, pos, neg) -> dict`` with the weighted terms and ``"total"``;
- scores are dot products ``ŷ_ui = e_u · e_i``.

DiffCL, as this package builds it (paper statement vs reconstruction in ``DiffCLConfig``):

    views v ∈ {id} ∪ modalities;   item input x_i^id = E_i,  x_i^m = W_m f_i^m   (frozen features f)
    h^v = mean_{l=0..L} Â^l [E_u^v ; x^v]                         (LightGCN over the train graph)
    h_i^m ← h_i^m + (S h^m_items)_i                               (item-item graph, modalities)
    e = h^id + Σ_m softmax(a)_m h^m                               (fusion)
    L = L_BPR + λ_cl L_cl + λ_align L_align + λ_diff L_diff + λ_reg L_reg
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from .data import RecDataset
from .errors import DiffCLError
from .graphs import bipartite_adjacency, item_item_graph, lightgcn_propagate
from .losses import align_to_anchor, bpr_loss, info_nce, l2_reg
from .views import make_view_generator

log = logging.getLogger(__name__)

MODELS = ("diffcl", "lightgcn", "mf")


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
    item_graph_on_id: bool = False          # also enhance the ID view's items
    # contrastive views (paper: diffusion views + InfoNCE)
    use_cl: bool = True
    view_kind: str = "diffusion"            # "diffusion" (DiffCL) or "random" (SimGCL baseline)
    cl_temperature: float = 0.2
    lambda_cl: float = 0.05
    cl_max_nodes: int | None = 512           # contrast/align at most this many users (and items) per batch
    random_eps: float = 0.1                 # SimGCL noise magnitude for view_kind="random"
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
    lambda_diff: float = 1.0
    # alignment (paper: align visual/textual through stable ID embeddings)
    use_align: bool = True
    align_kind: str = "infonce"             # "infonce" or "moments" (MENTOR)
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
            (self.align_kind in ("infonce", "moments"), "align_kind must be 'infonce' or 'moments'"),
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
        return out[: self.n_users], out[self.n_users :]

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
        self.item_graph = None
        if cfg.use_item_graph:
            self.item_graph = item_item_graph(
                data.features, k=cfg.item_graph_k, weights=cfg.item_graph_weights, cache_dir=cache_dir, device=device
            )
        self.view_gen = nn.ModuleDict()
        if cfg.use_cl:
            for m in self.modalities:
                self.view_gen[m] = make_view_generator(
                    cfg.view_kind, d, schedule=cfg.schedule, steps=cfg.diffusion_steps, noise_scale=cfg.noise_scale,
                    noise_min=cfg.noise_min, noise_max=cfg.noise_max, view_steps=cfg.view_steps,
                    sampling_noise=cfg.sampling_noise, snr_weighted=cfg.snr_weighted, hidden=cfg.denoiser_hidden,
                    eps=cfg.random_eps,
                )

    def _apply(self, fn, *args, **kwargs):  # move the sparse graphs with the module
        super()._apply(fn, *args, **kwargs)
        self.adj = fn(self.adj)
        if self.item_graph is not None:
            self.item_graph = fn(self.item_graph)
        return self

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
        # all views share Â: propagate them side by side in one sparse product, h = mean_l Â^l x
        h_all = lightgcn_propagate(self.adj, torch.cat(ego, dim=1), self.config.n_layers, symmetric=True)
        out = {}
        for k, v in enumerate(self.views):
            h = h_all[:, k * d : (k + 1) * d]
            hu, hi = h[: self.n_users], h[self.n_users :]
            if self.item_graph is not None and (v != "id" or self.config.item_graph_on_id):
                # h_i^m ← h_i^m + (S h^m)_i
                hi = hi + torch.sparse.mm(self.item_graph, hi)
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

    def loss(self, users, pos, neg):
        cfg = self.config
        views = self.view_embeddings()
        u_all, i_all = self.fuse(views)
        ego = [self.user_emb["id"](users), self.item_emb(pos), self.item_emb(neg)]
        terms = self._bpr_terms(u_all, i_all, users, pos, neg, ego, cfg.lambda_reg)
        zero = u_all.new_zeros(())
        cl, diff, align = zero, zero, zero
        batch_users = torch.unique(users)
        batch_items = torch.unique(torch.cat([pos, neg]))
        # contrast a random subset of the batch's nodes (cost grows with its square)
        cl_users, cl_items = self._subsample(batch_users), self._subsample(batch_items)
        n_u = len(cl_users)
        for m in self.modalities:
            hu, hi = views[m]
            if cfg.use_cl:
                gen = self.view_gen[m]
                # users and items share one pass through the view generator
                x0 = torch.cat([hu[cl_users], hi[cl_items]])
                # two views z', z'' of the same nodes
                z1, z2 = gen(x0)
                # L_cl = InfoNCE(z'_u, z''_u) + InfoNCE(z'_i, z''_i)
                cl = cl + info_nce(z1[:n_u], z2[:n_u], cfg.cl_temperature) + info_nce(z1[n_u:], z2[n_u:], cfg.cl_temperature)
                # the diffusion model's own denoising loss on sg(x0)
                diff = diff + gen.loss(x0)
            if cfg.use_align:
                # L_align = align(h^m, sg(h^id)) for the same sampled users and items
                id_u, id_i = views["id"]
                align = align + align_to_anchor(hu[cl_users], id_u[cl_users], cfg.align_kind, cfg.align_temperature)
                align = align + align_to_anchor(hi[cl_items], id_i[cl_items], cfg.align_kind, cfg.align_temperature)
        terms["cl"] = cfg.lambda_cl * cl
        terms["diff"] = cfg.lambda_diff * diff
        terms["align"] = cfg.lambda_align * align
        terms["total"] = terms["bpr"] + terms["reg"] + terms["cl"] + terms["diff"] + terms["align"]
        return terms


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
           "MODELS", "np", "field"]
