"""Full-ranking evaluation: Recall, NDCG and Precision at K (MMRec protocol).

Introduced in notebook 00 (welcome), which defines Recall@K and NDCG@K with :func:`ranking_metrics`;
notebook 08 (full training) states the protocol, and notebook 09 splits Recall by item group. Protocol:

- every user with at least one held-out item in the split is ranked against ALL items;
- the user's train items are masked (and valid items too when testing);
- Recall@K = |hits in top K| / |held-out|;  Precision@K = |hits in top K| / K;
- NDCG@K = DCG@K / IDCG@K with binary relevance, DCG@K = Σ_{r=1..K} rel_r / log2(r + 1),
  IDCG truncated to min(|held-out|, K);
- metrics are averaged over those users. Users are processed in batches so memory stays
  bounded by ``batch_size x n_items`` scores.
"""
from __future__ import annotations

import logging
from typing import Iterable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from .data import RecDataset
from .errors import DiffCLError

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_KS", "metric_names", "ranking_metrics", "evaluate_embeddings", "evaluate", "user_topk",
           "ITEM_GROUPS", "item_groups", "group_recall", "group_metric_name"]

DEFAULT_KS = (10, 20)


def metric_names(ks: Iterable[int] = DEFAULT_KS) -> list[str]:
    return [f"{m}@{k}" for m in ("recall", "ndcg", "precision") for k in ks]


def ranking_metrics(hits: torch.Tensor, n_relevant: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[str, torch.Tensor]:
    """Per-user metrics from a hit matrix.

    ``hits[u, r] = 1`` when the item ranked at position ``r`` (0-based) for user ``u`` is relevant;
    ``n_relevant[u]`` is the user's number of held-out items (> 0). Returns per-user tensors.
    """
    if hits.dim() != 2 or len(hits) != len(n_relevant):
        raise DiffCLError(f"ranking_metrics: hits must be (U, K) and n_relevant (U,); got {tuple(hits.shape)}, {tuple(n_relevant.shape)}.")
    if max(ks) > hits.shape[1]:
        raise DiffCLError(f"ranking_metrics: K={max(ks)} needs at least {max(ks)} ranked items, got {hits.shape[1]}.")
    hits = hits.float()
    n_rel = n_relevant.float()
    positions = torch.arange(1, hits.shape[1] + 1, device=hits.device, dtype=torch.float32)
    # discount 1 / log2(r + 1), r = 1..K
    discount = 1.0 / torch.log2(positions + 1.0)
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        h = hits[:, :k]
        n_hit = h.sum(1)
        # Recall@K = hits / |relevant|
        out[f"recall@{k}"] = n_hit / n_rel
        # Precision@K = hits / K
        out[f"precision@{k}"] = n_hit / k
        # DCG@K = Σ_r rel_r / log2(r + 1)
        dcg = (h * discount[:k]).sum(1)
        # IDCG@K = Σ_{r=1..min(|rel|, K)} 1 / log2(r + 1)
        ideal = torch.cumsum(discount[:k], 0)
        idcg = ideal[(n_rel.clamp(max=k) - 1).long()]
        out[f"ndcg@{k}"] = dcg / idcg
    return out


def _csr_rows_to_dense(m: sp.csr_matrix, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    sub = m[rows]
    dense = torch.zeros(len(rows), m.shape[1], dtype=torch.bool, device=device)
    r = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
    if len(r):
        dense[torch.as_tensor(r, device=device), torch.as_tensor(sub.indices.astype(np.int64), device=device)] = True
    return dense


@torch.no_grad()
def evaluate_embeddings(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    data: RecDataset,
    split: str = "valid",
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Average Recall/NDCG/Precision@K over users with held-out items in ``split``.

    Train items are masked; for ``split="test"`` valid items are masked too.
    """
    if split not in ("valid", "test"):
        raise DiffCLError(f"evaluate: split={split!r} must be 'valid' or 'test'.")
    if batch_size < 1:
        raise DiffCLError(f"evaluate: batch_size={batch_size} must be >= 1.")
    device = user_emb.device
    kmax = max(ks)
    if kmax > data.n_items:
        raise DiffCLError(f"evaluate: K={kmax} exceeds n_items={data.n_items}; use smaller --ks.")
    heldout = data.interaction_matrix(split)
    masked = data.interaction_matrix("train")
    if split == "test":
        masked = (masked + data.interaction_matrix("valid")).tocsr()
    n_rel_all = np.diff(heldout.indptr)
    users = np.where(n_rel_all > 0)[0]
    if len(users) == 0:
        raise DiffCLError(f"evaluate: the {split} split of {data.name!r} has no users with held-out items.")
    sums = {name: 0.0 for name in metric_names(ks)}
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        bt = torch.as_tensor(batch, device=device)
        # ŷ_ui = e_u · e_i for all items
        scores = user_emb[bt] @ item_emb.T
        scores = scores.masked_fill(_csr_rows_to_dense(masked, batch, device), float("-inf"))
        top = torch.topk(scores, kmax, dim=1).indices
        relevant = _csr_rows_to_dense(heldout, batch, device)
        hits = relevant.gather(1, top)
        per_user = ranking_metrics(hits, torch.as_tensor(n_rel_all[batch], device=device), ks)
        for name, val in per_user.items():
            sums[name] += float(val.sum())
    return {name: sums[name] / len(users) for name in metric_names(ks)}


def evaluate(model, data: RecDataset, split: str = "valid", ks: Sequence[int] = DEFAULT_KS, batch_size: int = 1024) -> dict[str, float]:
    """Evaluate a :class:`~diffcl_lite.model.Recommender` (its ``final_embeddings()``) on a split."""
    u, i = model.final_embeddings()
    return evaluate_embeddings(u, i, data, split, ks, batch_size)


@torch.no_grad()
def user_topk(user_emb: torch.Tensor, item_emb: torch.Tensor, data: RecDataset, user: int, split: str = "test",
              k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """One user's top-``k`` items and held-out items, with the masking of :func:`evaluate_embeddings`.

    Train items are masked (and valid items for ``split="test"``). Returns ``(ranked, relevant)``:
    the ``k`` best-scored item ids, best first, and the user's sorted ``split`` items.
    Introduced in notebook 08 (Recall@K and NDCG@K by hand).
    """
    if split not in ("valid", "test"):
        raise DiffCLError(f"user_topk: split={split!r} must be 'valid' or 'test'.")
    if not 0 <= int(user) < data.n_users:
        raise DiffCLError(f"user_topk: user={user} is not in 0..{data.n_users - 1}.")
    if not 1 <= k <= data.n_items:
        raise DiffCLError(f"user_topk: k={k} must lie in 1..n_items={data.n_items}.")
    masked = data.interaction_matrix("train")
    if split == "test":
        masked = (masked + data.interaction_matrix("valid")).tocsr()
    rows = np.array([int(user)])
    # ŷ_ui = e_u · e_i for all items
    scores = user_emb[int(user)][None] @ item_emb.T
    scores = scores.masked_fill(_csr_rows_to_dense(masked, rows, scores.device), float("-inf"))
    ranked = torch.topk(scores, k, dim=1).indices[0].cpu().numpy().astype(np.int64)
    held = data.interaction_matrix(split)
    relevant = np.sort(held.indices[held.indptr[user] : held.indptr[user + 1]].astype(np.int64))
    return ranked, relevant


# ---------------------------------------------------------------------------------------------
# Recall by item group: cold / tail / head items (notebook 09, the verdict)
# ---------------------------------------------------------------------------------------------
#: the item groups of :func:`item_groups`, in this order
ITEM_GROUPS = ("cold", "tail", "head")


def group_metric_name(group: str, k: int = 20) -> str:
    """``"recall@20[cold]"``: the key of a group's Recall@K in run records and tables."""
    if group not in ITEM_GROUPS:
        raise DiffCLError(f"group_metric_name: group={group!r} is not one of {ITEM_GROUPS}.")
    return f"recall@{int(k)}[{group}]"


def item_groups(data: RecDataset, cold_max_degree: int | None = None, head_fraction: float = 0.2) -> dict[str, np.ndarray]:
    """Boolean masks (one per item) of the cold, tail and head items, from the TRAIN degrees.

    Introduced in notebook 09. Grouping (each item in exactly one group):

    - **cold**: train degree ``<= cold_max_degree`` (default: the generator's
      ``cold_item_train_keep`` when the dataset was made with rare items, else 0, i.e. never seen
      in train);
    - **head**: among the other items, those in the top ``head_fraction`` of ALL items by train
      degree: items are ranked by (degree descending, item id ascending) and the first
      ``round(head_fraction * n_items)`` ranks are head, so ties at the border go to the lower id;
    - **tail**: every item that is neither cold nor head (the low-degree bulk, about 80 %).
    """
    if not 0.0 < head_fraction < 1.0:
        raise DiffCLError(f"item_groups: head_fraction={head_fraction} must lie in (0, 1), e.g. 0.2.")
    if cold_max_degree is None:
        misleading = data.meta.get("generator", {}).get("misleading", {}) if isinstance(data.meta, dict) else {}
        cold_max_degree = int(misleading.get("cold_item_train_keep", 0)) if misleading.get("cold_item_fraction") else 0
    if cold_max_degree < 0:
        raise DiffCLError(f"item_groups: cold_max_degree={cold_max_degree} must be >= 0.")
    deg = data.item_degrees("train")
    cold = deg <= int(cold_max_degree)
    # rank by (degree desc, id asc): lexsort sorts by the last key first
    order = np.lexsort((np.arange(data.n_items), -deg))
    n_head = int(round(head_fraction * data.n_items))
    head = np.zeros(data.n_items, dtype=bool)
    head[order[:n_head]] = True
    head &= ~cold
    tail = ~cold & ~head
    return {"cold": cold, "tail": tail, "head": head}


def group_recall(top: torch.Tensor, relevant: torch.Tensor, in_group: torch.Tensor, k: int = 20) -> torch.Tensor:
    """Per-user Recall@K restricted to held-out items of one group (NaN where a user has none).

    ``top``: (U, >=K) ranked item ids; ``relevant``: (U, n_items) boolean held-out items;
    ``in_group``: (n_items,) boolean mask of the group. The ranking is the usual one over all
    items; only the numerator and denominator are restricted:
    Recall@K_g(u) = |top_K(u) ∩ T_u ∩ G| / |T_u ∩ G|.
    """
    if top.shape[1] < k:
        raise DiffCLError(f"group_recall: K={k} needs at least {k} ranked items, got {top.shape[1]}.")
    rel_g = relevant & in_group[None, :]
    hits = rel_g.gather(1, top[:, :k]).sum(1).double()
    denom = rel_g.sum(1).double()
    # 0 / 0 -> NaN: users with no held-out item of the group are skipped by the means
    return torch.where(denom > 0, hits / denom.clamp(min=1), torch.full_like(denom, float("nan")))
