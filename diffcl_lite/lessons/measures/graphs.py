"""What the lessons measure on graphs: summaries, over-smoothing, topic agreement, kNN purity.

Introduced in notebook 01 (``graph_summary``, the over-smoothing curves), then notebook 02 (topic
agreement of the item-item graph, image vs text). The method (:mod:`diffcl_lite.graphs`) builds
the graphs; nothing here is used to train a model.

**One kNN topic purity.** :func:`neighbour_purity` is the formula, per item: the share of its
``k`` neighbours that carry its label, ``p_i = 1/k sum_{j in N_k(i)} [y_j = y_i]``. Everything
else that speaks of the purity of neighbour lists calls it: :func:`neighbour_topic_agreement`
(its mean, over all items or some rows), :func:`~diffcl_lite.lessons.measures.views.topic_purity`
(of embeddings, neighbours from :func:`diffcl_lite.graphs.knn_indices`), and the figures' helpers
:func:`~diffcl_lite.lessons.viz.neighbourhood_purity` and
:func:`~diffcl_lite.lessons.viz.purity_per_point`.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from ...errors import DiffCLError
from ...graphs import _as_feature_tensor, _check_k, _resolve_weights, item_item_graph, knn_graph, knn_indices, propagate_layers
from ...utils import to_numpy

__all__ = [
    "graph_summary",
    "neighbour_purity",
    "neighbour_topic_agreement",
    "mean_pairwise_cosine",
    "topic_separation",
    "oversmoothing_curve",
    "graph_topic_agreement",
    "fused_knn_indices",
    "fused_topic_agreement",
    "topic_agreement_sweep",
    "knn_overlap",
]


def _to_coo_parts(adj: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """(row, col, value, shape) of a torch sparse/dense tensor, scipy matrix or numpy array."""
    if isinstance(adj, torch.Tensor):
        t = adj.detach().cpu()
        if t.layout == torch.sparse_csr:
            t = t.to_sparse_coo()
        if t.layout == torch.sparse_coo:
            t = t.coalesce()
            idx = t.indices().numpy()
            return idx[0], idx[1], t.values().double().numpy(), tuple(t.shape)
        adj = t.numpy()
    if sp.issparse(adj):
        coo = sp.coo_matrix(adj)
        coo.sum_duplicates()
        return coo.row, coo.col, coo.data.astype(np.float64), tuple(coo.shape)
    arr = np.asarray(adj)
    if arr.ndim != 2:
        raise DiffCLError(f"adj_or_matrix must be 2-D, got shape {arr.shape}; pass an adjacency matrix.")
    row, col = np.nonzero(arr)
    return row, col, arr[row, col].astype(np.float64), tuple(arr.shape)




def _sig(x: float, digits: int = 6) -> float:
    """Round to ``digits`` significant digits (deterministic golden outputs)."""
    return float(f"{float(x):.{digits}g}")


# ---------------------------------------------------------------------------------------------
# Deterministic summaries (golden notebook cells)
# ---------------------------------------------------------------------------------------------
def _degree_stats(deg: np.ndarray) -> dict[str, float]:
    if deg.size == 0:
        return {}
    q = np.quantile(deg.astype(np.float64), [0.0, 0.25, 0.5, 0.75, 0.9, 1.0])
    return {
        "min": _sig(q[0]),
        "25%": _sig(q[1]),
        "median": _sig(q[2]),
        "75%": _sig(q[3]),
        "90%": _sig(q[4]),
        "max": _sig(q[5]),
        "mean": _sig(deg.mean()),
    }


def graph_summary(adj_or_matrix: Any, n_users: int | None = None) -> dict[str, Any]:
    """Nodes, edges, density, degree quantiles and isolated nodes of a graph (deterministic).

    Introduced in notebook 01 (user-item graph) and reused in notebook 02. Accepts a torch sparse
    (COO/CSR) or dense tensor, a scipy sparse matrix or a numpy array; only the non-zero
    pattern counts (degree = number of neighbours, not weighted sum). For a symmetric pattern
    ``edges`` counts undirected edges (a self loop once), otherwise directed ones. With
    ``n_users`` the graph is read as the bipartite user-item graph: ``edges`` = interactions,
    ``density = edges / (n_users * n_items)`` and user and item degrees are reported apart.
    Floats are rounded to 6 significant digits.
    """
    row, col, val, shape = _to_coo_parts(adj_or_matrix)
    if shape[0] != shape[1]:
        raise DiffCLError(f"adj_or_matrix has shape {shape}; graph_summary needs a square adjacency matrix.")
    nz = val != 0
    row, col = row[nz], col[nz]
    n = int(shape[0])
    pattern = sp.coo_matrix((np.ones(len(row)), (row, col)), shape=shape).tocsr()
    pattern.data[:] = 1.0
    nnz = int(pattern.nnz)
    symmetric = (pattern != pattern.T).nnz == 0
    self_loops = int(pattern.diagonal().sum())
    deg = np.asarray(pattern.sum(axis=1)).ravel()
    out: dict[str, Any] = {"nodes": n}
    if n_users is not None:
        n_users = int(n_users)
        if not 0 < n_users < n:
            raise DiffCLError(f"n_users={n_users} must be between 1 and the number of nodes - 1 ({n - 1}).")
        n_items = n - n_users
        edges = (nnz - self_loops) // 2 + self_loops if symmetric else nnz
        out.update(
            {
                "users": n_users,
                "items": n_items,
                "edges": int(edges),
                "symmetric": bool(symmetric),
                "density": _sig(edges / (n_users * n_items)),
                "degree": _degree_stats(deg),
                "user_degree": _degree_stats(deg[:n_users]),
                "item_degree": _degree_stats(deg[n_users:]),
                "isolated": int((deg == 0).sum()),
                "isolated_users": int((deg[:n_users] == 0).sum()),
                "isolated_items": int((deg[n_users:] == 0).sum()),
            }
        )
        return out
    if symmetric:
        edges = (nnz - self_loops) // 2 + self_loops
        possible = n * (n - 1) / 2
    else:
        edges = nnz
        possible = n * (n - 1)
    in_deg = np.asarray(pattern.sum(axis=0)).ravel()
    out.update(
        {
            "edges": int(edges),
            "symmetric": bool(symmetric),
            "self_loops": self_loops,
            "density": _sig(edges / possible) if possible > 0 else 0.0,
            "degree": _degree_stats(deg),
            "isolated": int(((deg == 0) & (in_deg == 0)).sum()),
        }
    )
    if not symmetric:
        out["in_degree"] = _degree_stats(in_deg)
    return out


# ---------------------------------------------------------------------------------------------
# The one kNN topic purity
# ---------------------------------------------------------------------------------------------
def neighbour_purity(idx: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per item, the share of its neighbours that have its label: an ``(n,)`` float64 array.

    Introduced in notebook 02 (item-item graph), through :func:`neighbour_topic_agreement`.
    ``idx`` is ``(n, k)`` as from :func:`~diffcl_lite.graphs.knn_indices` (row ``i`` lists the
    neighbours of item ``i``), ``labels`` is ``(n,)``. The one place of the kNN purity formula.
    """
    idx_np = to_numpy(idx)
    lab = to_numpy(labels)
    if idx_np.ndim != 2 or lab.ndim != 1 or idx_np.shape[0] != lab.shape[0]:
        raise DiffCLError(
            f"idx has shape {idx_np.shape} and labels {lab.shape}; expected idx (n, k) and labels (n,)."
        )
    if idx_np.size == 0:
        raise DiffCLError("idx is empty; there are no neighbours to compare.")
    if idx_np.min() < 0 or idx_np.max() >= lab.shape[0]:
        raise DiffCLError(f"idx holds ids outside 0..{lab.shape[0] - 1}; it must index rows of labels.")
    # p_i = 1/k sum_{j in N_k(i)} [y_j = y_i]
    return (lab[idx_np] == lab[:, None]).mean(axis=1)


def _row_selection(rows: Any, n: int) -> np.ndarray:
    """Indices of the rows a boolean mask (length ``n``) or an index array selects."""
    r = to_numpy(rows)
    if r.dtype == bool:
        if r.shape != (n,):
            raise DiffCLError(f"rows mask has shape {r.shape}; expected ({n},) (one flag per item).")
        return np.flatnonzero(r)
    return r.astype(np.int64).reshape(-1)


def neighbour_topic_agreement(
    idx: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, rows: Any = None
) -> float:
    """Fraction of kNN neighbours that share the item's ground-truth label: the mean of :func:`neighbour_purity`.

    Introduced in notebook 02 (item-item graph). ``rows`` (boolean mask or indices) restricts the
    items averaged over (their neighbours are whatever ``idx`` lists); ``nan`` when it selects
    none. 1.0 means every neighbour has the same topic as its item. Rounded to 6 significant digits.
    """
    per_item = neighbour_purity(idx, labels)
    if rows is not None:
        per_item = per_item[_row_selection(rows, len(per_item))]
        if per_item.size == 0:
            return float("nan")
    # agreement = mean_{i in rows} p_i
    return _sig(float(per_item.mean()))


# ---------------------------------------------------------------------------------------------
# Notebook 01: over-smoothing measures (how alike LightGCN layers make the embeddings)
# ---------------------------------------------------------------------------------------------
def _unit_rows_f64(x: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(unit rows of x in float64 without the all-zero rows, mask of the rows kept)``; cosine is undefined for 0."""
    t = torch.as_tensor(to_numpy(x))
    if t.ndim != 2:
        raise DiffCLError(f"x has shape {tuple(t.shape)}; expected a 2-D array (n, d) of embeddings.")
    t = t.to(torch.float64)
    norms = torch.linalg.vector_norm(t, dim=1)
    keep = norms > 0
    # u_i = x_i / ||x_i||
    return t[keep] / norms[keep, None], keep


def mean_pairwise_cosine(x: np.ndarray | torch.Tensor) -> float:
    """Mean cosine similarity over all pairs ``i != j`` of rows of ``x`` (zero rows left out).

    Introduced in notebook 01 (over-smoothing). Computed in ``O(n d)`` without the ``n x n``
    matrix: with unit rows ``u_i`` and ``s = sum_i u_i``,
    ``sum_{i != j} u_i . u_j = ||s||^2 - n``. 1.0 means every row points the same way.
    """
    u, _ = _unit_rows_f64(x)
    n = u.shape[0]
    if n < 2:
        raise DiffCLError(f"x has {n} non-zero row(s); mean_pairwise_cosine needs at least 2.")
    s = u.sum(dim=0)
    # mean_{i != j} cos(x_i, x_j) = (||sum_i u_i||^2 - n) / (n (n - 1))
    return _sig(float((s @ s - n) / (n * (n - 1))))


def topic_separation(x: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """Mean cosine of same-topic pairs minus mean cosine of different-topic pairs (zero rows left out).

    Introduced in notebook 01 (over-smoothing). 0 means the embeddings carry no topic signal a
    dot product could use (random, or all collapsed onto one direction); larger is better. ``O(n d)``:
    per topic ``c``, ``sum_{i != j in c} u_i . u_j = ||s_c||^2 - n_c`` with ``s_c = sum_{i in c} u_i``.
    """
    lab = to_numpy(labels)
    n_rows = x.shape[0]
    if lab.ndim != 1 or lab.shape[0] != n_rows:
        raise DiffCLError(f"labels has shape {lab.shape} but x has {n_rows} rows; give one label per row.")
    u, keep = _unit_rows_f64(x)
    lab = lab[keep.numpy()]
    n = u.shape[0]
    s = u.sum(dim=0)
    # all ordered pairs i != j: sum of cosines and count
    total_sum, total_pairs = float(s @ s - n), n * (n - 1)
    _, topic = np.unique(lab, return_inverse=True)
    counts = np.bincount(topic).astype(np.float64)
    # s_c = sum_{i in topic c} u_i, one row per topic
    s_c = torch.zeros(len(counts), u.shape[1], dtype=u.dtype).index_add_(0, torch.from_numpy(topic.astype(np.int64)), u)
    # sum_{i != j, both in topic c} u_i . u_j = ||s_c||^2 - n_c, summed over c
    within_sum = float((s_c * s_c).sum()) - float(counts.sum())
    within_pairs = int((counts * (counts - 1)).sum())
    between_pairs = total_pairs - within_pairs
    if within_pairs == 0 or between_pairs == 0:
        raise DiffCLError(
            "topic_separation needs at least one same-topic pair and one different-topic pair; "
            f"got {len(np.unique(lab))} topic(s) over {n} non-zero rows."
        )
    # separation = mean cos(same topic) - mean cos(different topics)
    return _sig(within_sum / within_pairs - (total_sum - within_sum) / between_pairs)


def oversmoothing_curve(
    adj: torch.Tensor,
    x: torch.Tensor,
    max_layers: int,
    nodes: np.ndarray | torch.Tensor | slice | None = None,
    readout: str = "layer",
    measure: str = "cosine",
    labels: np.ndarray | torch.Tensor | None = None,
) -> list[float]:
    """One value per number of layers ``L = 0..max_layers`` of LightGCN propagation of ``x``.

    Introduced in notebook 01 (over-smoothing). ``readout="layer"`` measures ``E^(L) = A_hat^L x``
    (a plain deep GCN), ``readout="mean"`` measures LightGCN's readout ``1/(L+1) sum_{l<=L} E^(l)``.
    ``measure="cosine"`` is :func:`mean_pairwise_cosine` (rises to 1 as the rows become alike);
    ``measure="separation"`` is :func:`topic_separation` against ``labels`` (one per selected node).
    ``nodes`` selects the rows measured (e.g. ``slice(n_users, None)`` for the items), all by default.
    """
    if readout not in ("layer", "mean"):
        raise DiffCLError(f"readout={readout!r}: use 'layer' (E^(L)) or 'mean' (LightGCN readout).")
    if measure not in ("cosine", "separation"):
        raise DiffCLError(f"measure={measure!r}: use 'cosine' or 'separation'.")
    if measure == "separation" and labels is None:
        raise DiffCLError("measure='separation' needs labels (one ground-truth topic per measured node).")
    layers = propagate_layers(adj, x, int(max_layers))
    sel = slice(None) if nodes is None else nodes
    if isinstance(sel, np.ndarray):
        sel = torch.from_numpy(sel)
    out: list[float] = []
    running = torch.zeros_like(layers[0])
    for l, e in enumerate(layers):
        running = running + e
        # readout: E^(L)  or  1/(L+1) sum_{l<=L} E^(l)
        emb = e if readout == "layer" else running / (l + 1)
        emb = emb[sel]
        out.append(mean_pairwise_cosine(emb) if measure == "cosine" else topic_separation(emb, labels))
    return out


# ---------------------------------------------------------------------------------------------
# Notebook 02: how good is an item-item graph? (topic agreement, image vs text)
# ---------------------------------------------------------------------------------------------
def graph_topic_agreement(
    graph: Any, labels: np.ndarray | torch.Tensor, rows: np.ndarray | None = None
) -> float:
    """Share of the edge weight of ``graph`` that links items of the same ground-truth topic.

    Introduced in notebook 02 (item-item graph). ``sum_{i in rows, j} S_ij [y_i = y_j] /
    sum_{i in rows, j} S_ij``; ``rows`` (indices or boolean mask) restricts the source items,
    e.g. to the noisy ones. For the unweighted kNN graph it equals :func:`neighbour_topic_agreement`
    (every edge of a row has the same weight, so the weighted share is the share of neighbours).
    Accepts torch sparse/dense tensors, scipy matrices and numpy arrays.
    """
    row, col, val, shape = _to_coo_parts(graph)
    lab = to_numpy(labels)
    if shape[0] != shape[1] or lab.shape != (shape[0],):
        raise DiffCLError(f"graph has shape {shape} and labels {lab.shape}; expected (n, n) and (n,).")
    if rows is not None:
        r = np.asarray(rows)
        mask = r if r.dtype == bool else np.isin(np.arange(shape[0]), r)
        if mask.shape != (shape[0],):
            raise DiffCLError(f"rows mask has shape {mask.shape}; expected ({shape[0]},).")
        keep = mask[row]
        row, col, val = row[keep], col[keep], val[keep]
    total = float(np.abs(val).sum())
    if total == 0:
        raise DiffCLError("the selected rows of graph have no edges; topic agreement is undefined.")
    same = lab[row] == lab[col]
    # agreement = sum_ij S_ij [y_i = y_j] / sum_ij S_ij
    return _sig(float(np.abs(val[same]).sum()) / total)


def _image_weight_split(names: Sequence[str], image_weight: float) -> dict[str, float]:
    if "image" not in names or len(names) != 2:
        raise DiffCLError(
            f"image_weight needs exactly two modalities, one named 'image'; the features have {list(names)}. "
            "Pass weights={name: w, ...} instead."
        )
    if not 0.0 <= float(image_weight) <= 1.0:
        raise DiffCLError(f"image_weight={image_weight} must lie in [0, 1] (the other modality gets 1 - w).")
    other = next(m for m in names if m != "image")
    return {"image": float(image_weight), other: 1.0 - float(image_weight)}


def fused_knn_indices(
    features: Mapping[str, np.ndarray], k: int = 10, weights: Mapping[str, float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` neighbours of the *fused similarity* ``sum_m w_m cos_m(i, j)`` (self excluded).

    Introduced in notebook 02 (item-item graph) as the alternative to fusing graphs ("early"
    fusion; ours, not FREEDOM's). Concatenating ``sqrt(w_m) x_m / ||x_m||`` over the modalities
    turns the weighted sum of cosines into one dot product, so :func:`knn_indices` does the rest.
    """
    names = list(features)
    w = _resolve_weights(names, weights)
    parts = []
    for m in names:
        x = _as_feature_tensor(features[m], name=f"features[{m!r}]")
        # sqrt(w_m) * x_m / ||x_m||   (zero rows stay zero)
        x = x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
        parts.append(x * float(np.sqrt(w[m])))
    # <[a_1, a_2], [b_1, b_2]> = sum_m w_m cos_m(a, b)
    return knn_indices(torch.cat(parts, dim=1), k=k)


def fused_topic_agreement(
    features: Mapping[str, np.ndarray],
    labels: np.ndarray | torch.Tensor,
    k: int = 10,
    image_weight: float | None = 0.1,
    weights: Mapping[str, float] | None = None,
    rows: np.ndarray | None = None,
    fuse: str = "graph",
) -> float:
    """Topic agreement of the fused item-item graph for modality weights.

    The one-weight reference of :func:`topic_agreement_sweep`, which notebook 02's figure and
    widget call. Weights: ``image_weight`` (image gets ``w``, the
    other of exactly two modalities ``1 - w``; MMRec default 0.1) or a full ``weights`` dict
    (``image_weight=None``). ``fuse="graph"`` is the FREEDOM/DiffCL recipe, ``S = sum_m w_m S_hat_m``
    (:func:`item_item_graph`) scored with :func:`graph_topic_agreement`; ``fuse="similarity"``
    takes the top-``k`` of the fused cosine (:func:`fused_knn_indices`) scored with
    :func:`neighbour_topic_agreement`. ``rows`` restricts the items scored.
    """
    names = list(features)
    if image_weight is not None and weights is not None:
        raise DiffCLError("give image_weight or weights, not both (set image_weight=None to use weights).")
    w = _image_weight_split(names, image_weight) if image_weight is not None else _resolve_weights(names, weights)
    if fuse == "graph":
        g = item_item_graph(features, k=k, weights=w, layout="coo")
        return graph_topic_agreement(g, labels, rows=rows)
    if fuse == "similarity":
        idx, _ = fused_knn_indices(features, k=k, weights=w)
        return neighbour_topic_agreement(idx, labels, rows=rows)
    raise DiffCLError(f"fuse={fuse!r}: use 'graph' (sum of normalised kNN graphs) or 'similarity' (kNN of fused cosine).")


def topic_agreement_sweep(
    features: Mapping[str, np.ndarray],
    labels: np.ndarray | torch.Tensor,
    k: int = 10,
    image_weights: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    groups: Mapping[str, np.ndarray | None] | None = None,
    fuse: str = "graph",
) -> dict[str, list[float]]:
    """:func:`fused_topic_agreement` for many image weights and item groups at once (notebook 02 plots).

    Introduced in notebook 02 (item-item graph). Same numbers as calling
    :func:`fused_topic_agreement` per weight and group, but each modality's kNN graph is built
    once (``fuse="graph"``). ``groups`` maps a name to a boolean row mask (``None`` = all items);
    default ``{"all": None}``. A group without items gets ``nan``.
    """
    names = list(features)
    groups = dict(groups) if groups is not None else {"all": None}
    lab = to_numpy(labels)
    weights = [_image_weight_split(names, w) for w in image_weights]
    out: dict[str, list[float]] = {g: [] for g in groups}
    empty = {g: m is not None and not np.asarray(m).any() for g, m in groups.items()}
    if fuse == "graph":
        _check_k(k, int(np.shape(features[names[0]])[0]), name=f"features[{names[0]!r}]")
        per_mod = {m: knn_graph(features[m], k=k, layout="coo") for m in names}
        for w in weights:
            # S = sum_m w_m S_hat_m
            terms = [w[m] * per_mod[m] for m in names if w[m] > 0]
            fused = terms[0]
            for term in terms[1:]:
                fused = fused + term
            fused = fused.coalesce()
            for g, mask in groups.items():
                out[g].append(float("nan") if empty[g] else graph_topic_agreement(fused, lab, rows=mask))
        return out
    if fuse != "similarity":
        raise DiffCLError(f"fuse={fuse!r}: use 'graph' or 'similarity'.")
    for w in weights:
        idx = fused_knn_indices(features, k=k, weights=w)[0]
        for g, mask in groups.items():
            out[g].append(neighbour_topic_agreement(idx, lab, rows=None if mask is None else np.asarray(mask, bool)))
    return out


def knn_overlap(idx_a: np.ndarray | torch.Tensor, idx_b: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per item, the fraction of its ``k`` neighbours in ``idx_a`` that are also in ``idx_b``.

    Introduced in notebook 02 (image vs text graphs): items whose image and text neighbourhoods
    share nothing are suspects for a noisy modality. Both are ``(n, k)`` neighbour lists.
    """
    a = to_numpy(idx_a)
    b = to_numpy(idx_b)
    if a.ndim != 2 or a.shape != b.shape:
        raise DiffCLError(f"idx_a has shape {a.shape} and idx_b {b.shape}; expected two (n, k) arrays of the same shape.")
    # overlap_i = |N_a(i) ∩ N_b(i)| / k
    hits = (a[:, :, None] == b[:, None, :]).any(axis=2)
    return hits.mean(axis=1)
