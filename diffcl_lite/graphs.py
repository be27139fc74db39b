"""Graphs: the user-item graph, LightGCN propagation and the item-item kNN graph.

Introduced in notebook 00 (a first kNN query on the features), then notebook 01 (user-item graph,
LightGCN) and notebook 02 (item-item graph).

Conventions (which are the paper's and which are ours)
-----------------------------------------------------
* User-item graph: the LightGCN / MMRec bipartite adjacency of the **train** interactions,
  ``A = [[0, R], [R^T, 0]]``, binary (duplicate interactions collapse), no self loops, and the
  symmetric normalisation ``A_hat = D^-1/2 A D^-1/2``. Item ``i`` is node ``n_users + i``.
  Nodes of degree 0 get a zero row and column (not ``inf``/``NaN``).
* Item-item graph: the FREEDOM / MMRec recipe. Per modality, cosine similarity of the raw
  (frozen) features, top-``k`` neighbours per row, binary weights, then
  ``S_hat = D^-1/2 S D^-1/2`` with ``D`` the **row sums** of the (directed) kNN graph. As in
  FREEDOM the kNN graph itself is *not* symmetrised, so ``S_hat`` is in general not symmetric.
  Two choices here differ from FREEDOM and are ours:

  - the item itself is **excluded** from its neighbour list (FREEDOM's ``topk`` over the full
    similarity matrix keeps the diagonal, so each item is its own first neighbour);
  - an item whose feature vector is all zeros has cosine similarity 0 with everything
    (FREEDOM divides by a zero norm and gets ``NaN``); in the graph it gets no edges, in
    either direction, so it is an isolated node.

  Modalities are fused after normalisation, ``S = sum_m w_m S_hat_m``, with the MMRec default
  ``w = {image: 0.1, text: 0.9}`` when the modalities are exactly image and text, and equal
  weights otherwise.
* Sparse layout: every graph builder takes ``layout="csr"`` (default) or ``"coo"``. CSR is
  faster for ``torch.sparse.mm`` on CPU (forward and backward); both give the same numbers.
  All graphs are ``float32``.
* The dense ``n x n`` similarity matrix never exists: it is computed in
  ``block_size x block_size`` tiles (upper triangle only, it is symmetric), so 23k items with
  4096-d features fit in about 1.3 GB.

What the lessons measure on these graphs (summaries, over-smoothing, topic agreement, kNN
purity) is :mod:`diffcl_lite.lessons.measures.graphs`.
"""
from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from .errors import DiffCLError
from .fileutil import atomic_write_bytes
from .utils import features_hash, to_numpy

log = logging.getLogger(__name__)

__all__ = [
    "normalized_adjacency_scipy",
    "bipartite_adjacency",
    "scipy_to_torch_sparse",
    "lightgcn_propagate",
    "propagate_layers",
    "knn_indices",
    "knn_graph",
    "default_modality_weights",
    "item_item_graph",
]

_LAYOUTS = ("csr", "coo")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _check_layout(layout: str) -> str:
    if layout not in _LAYOUTS:
        raise DiffCLError(f"layout={layout!r} is not supported; use one of {_LAYOUTS} (csr is faster on CPU).")
    return layout


def _coo_tensor(indices: torch.Tensor, values: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """``torch.sparse_coo_tensor`` without the invariant check (the parts are valid by construction).

    Some torch versions warn "Sparse invariant checks are implicitly disabled" even when
    ``check_invariants=False`` is passed; the warning is silenced here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse invariant checks.*")
        return torch.sparse_coo_tensor(indices, values, size, check_invariants=False)


def _sparse_from_coo(
    indices: torch.Tensor, values: torch.Tensor, size: tuple[int, int], device: Any = None, layout: str = "csr"
) -> torch.Tensor:
    """Build a coalesced float32 torch sparse tensor (COO or CSR) from COO parts."""
    _check_layout(layout)
    coo = _coo_tensor(indices.long(), values.float(), size).coalesce()
    if device is not None:
        coo = coo.to(device)
    if layout == "coo":
        return coo
    with warnings.catch_warnings():
        # "Sparse CSR tensor support is in beta state": CSR spmm is stable enough for this use.
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        return coo.to_sparse_csr()


def scipy_to_torch_sparse(mat: sp.spmatrix, device: Any = None, layout: str = "csr") -> torch.Tensor:
    """Convert a scipy sparse matrix to a float32 torch sparse tensor (CSR or COO).

    Introduced in notebook 01 (user-item graph).
    """
    coo = sp.coo_matrix(mat)
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32))
    return _sparse_from_coo(indices, values, tuple(coo.shape), device=device, layout=layout)


# ---------------------------------------------------------------------------------------------
# Notebook 01: the user-item graph
# ---------------------------------------------------------------------------------------------
def _check_train(n_users: int, n_items: int, train: np.ndarray) -> np.ndarray:
    if int(n_users) < 1 or int(n_items) < 1:
        raise DiffCLError(f"n_users={n_users}, n_items={n_items}: both must be >= 1.")
    arr = to_numpy(train)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise DiffCLError(
            f"train has shape {arr.shape}; expected (n, 2) with columns (user, item), e.g. dataset.train."
        )
    if not np.issubdtype(arr.dtype, np.integer):
        raise DiffCLError(f"train has dtype {arr.dtype}; expected integer ids (use train.astype(np.int64)).")
    arr = arr.astype(np.int64, copy=False)
    if arr.size:
        u_min, u_max = arr[:, 0].min(), arr[:, 0].max()
        i_min, i_max = arr[:, 1].min(), arr[:, 1].max()
        if u_min < 0 or u_max >= n_users:
            raise DiffCLError(
                f"train user ids span [{u_min}, {u_max}] but n_users={n_users}; ids must be 0..n_users-1 "
                "(re-index the users or pass the right n_users)."
            )
        if i_min < 0 or i_max >= n_items:
            raise DiffCLError(
                f"train item ids span [{i_min}, {i_max}] but n_items={n_items}; ids must be 0..n_items-1 "
                "(re-index the items or pass the right n_items)."
            )
    return arr


def normalized_adjacency_scipy(n_users: int, n_items: int, train: np.ndarray) -> sp.csr_matrix:
    """``A_hat = D^-1/2 A D^-1/2`` of the bipartite train graph as a scipy CSR matrix (float32).

    Introduced in notebook 01 (user-item graph). See :func:`bipartite_adjacency`.
    """
    pairs = _check_train(n_users, n_items, train)
    n = int(n_users) + int(n_items)
    # R[u, i] = 1 if (u, i) in train; duplicates collapse to 1 (binary graph)
    r = sp.coo_matrix(
        (np.ones(len(pairs), dtype=np.float64), (pairs[:, 0], pairs[:, 1])), shape=(n_users, n_items)
    ).tocsr()
    r.data[:] = 1.0
    # A = [[0, R], [R^T, 0]]  (no self loops)
    a = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float64)
    # d_v = sum_u A[v, u]
    deg = np.asarray(a.sum(axis=1)).ravel()
    # d_v^-1/2, with 0 for isolated nodes instead of inf
    d_inv_sqrt = np.zeros_like(deg)
    nz = deg > 0
    d_inv_sqrt[nz] = deg[nz] ** -0.5
    # A_hat = D^-1/2 A D^-1/2
    d = sp.diags(d_inv_sqrt)
    a_hat = (d @ a @ d).tocsr()
    a_hat.sort_indices()
    return a_hat.astype(np.float32)


def bipartite_adjacency(
    n_users: int, n_items: int, train: np.ndarray, device: Any = None, layout: str = "csr"
) -> torch.Tensor:
    """Normalised user-item adjacency ``A_hat = D^-1/2 A D^-1/2`` with ``A = [[0, R], [R^T, 0]]``.

    Introduced in notebook 01 (user-item graph). ``train`` is an ``(n, 2)`` int array of
    (user, item) pairs; item ``i`` becomes node ``n_users + i``. Duplicates collapse (binary
    graph), there are no self loops, isolated nodes get zero rows. Returns a float32 torch sparse
    tensor of shape ``(n_users + n_items, n_users + n_items)``, CSR (``layout="csr"``, default,
    faster for ``torch.sparse.mm`` on CPU) or COO (``layout="coo"``), on ``device``.
    """
    _check_layout(layout)
    a_hat = normalized_adjacency_scipy(n_users, n_items, train)
    log.debug("bipartite adjacency: %d nodes, %d non-zeros", a_hat.shape[0], a_hat.nnz)
    return scipy_to_torch_sparse(a_hat, device=device, layout=layout)


def degree_sensitive_edge_sample(
    n_users: int, n_items: int, train: np.ndarray, keep: float, generator: torch.Generator | None = None,
) -> np.ndarray:
    """FREEDOM's degree-sensitive edge pruning: a fraction ``keep`` of the unique train edges.

    FREEDOM (Zhou & Shen 2023, ``pre_epoch_processing``) samples edges without replacement with
    probability ``p_ui ∝ 1 / sqrt(d_u d_i)`` (degrees of the full train graph), so edges between
    popular users and items are dropped first; the kept edges are renormalised into a fresh
    ``A_hat`` every epoch (:func:`bipartite_adjacency` of the returned pairs), and evaluation uses
    the full graph. Returns the kept ``(n, 2)`` pairs, sorted.
    """
    if not 0.0 < keep <= 1.0:
        raise DiffCLError(f"degree_sensitive_edge_sample: keep={keep} must lie in (0, 1] (FREEDOM keeps 0.1-0.2).")
    pairs = np.unique(_check_train(n_users, n_items, train), axis=0)
    d_u = np.bincount(pairs[:, 0], minlength=n_users).astype(np.float64)
    d_i = np.bincount(pairs[:, 1], minlength=n_items).astype(np.float64)
    # p_ui ∝ 1 / sqrt(d_u d_i)
    w = torch.as_tensor(1.0 / np.sqrt(d_u[pairs[:, 0]] * d_i[pairs[:, 1]]), dtype=torch.float64)
    n_keep = max(1, int(len(pairs) * keep))
    idx = torch.multinomial(w, n_keep, replacement=False, generator=generator).numpy()
    return pairs[np.sort(idx)]


class _SymmetricSpMM(torch.autograd.Function):
    """y = A x for a symmetric sparse A; the backward reuses A because dL/dx = A^T g = A g.

    torch's own backward of a CSR product transposes A on every call; skipping that makes a
    LightGCN training step about a third faster on CPU.
    """

    @staticmethod
    def forward(ctx: Any, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        # dL/dx = A^T g = A g  (A symmetric)
        return None, torch.sparse.mm(ctx.adj, grad.contiguous())


class _TransposedSpMM(torch.autograd.Function):
    """y = A x with a precomputed A^T for the backward (dL/dx = A^T g), for a non-symmetric sparse A."""

    @staticmethod
    def forward(ctx: Any, adj: torch.Tensor, adj_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj_t = adj_t
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        # dL/dx = A^T g
        return None, None, torch.sparse.mm(ctx.adj_t, grad.contiguous())


def sparse_transpose(adj: torch.Tensor) -> torch.Tensor:
    """A^T in the layout of ``adj`` (CSR or COO), computed once so backward passes can reuse it."""
    if adj.layout == torch.sparse_csr:
        return adj.to_sparse_coo().t().coalesce().to_sparse_csr()
    return adj.t().coalesce()


def spmm_t(adj: torch.Tensor, adj_t: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """``A x``, differentiable in ``x``; with ``adj_t`` (= A^T) the backward skips torch's per-call transpose."""
    if adj_t is None or not x.requires_grad or adj.layout == torch.strided:
        return torch.sparse.mm(adj, x) if adj.layout != torch.strided else adj @ x
    return _TransposedSpMM.apply(adj, adj_t, x)


def _spmm(adj: torch.Tensor, x: torch.Tensor, symmetric: bool = False) -> torch.Tensor:
    # torch.sparse.mm supports autograd w.r.t. the dense x for both COO and CSR.
    if adj.layout == torch.strided:
        return adj @ x
    if symmetric and x.requires_grad:
        return _SymmetricSpMM.apply(adj, x)
    return torch.sparse.mm(adj, x)


def propagate_layers(adj: torch.Tensor, x: torch.Tensor, n_layers: int, symmetric: bool = False) -> list[torch.Tensor]:
    """All LightGCN layers ``[E^(0), E^(1), ..., E^(L)]`` (notebook 01's over-smoothing plots).

    Introduced in notebook 01 (LightGCN propagation). ``symmetric=True`` promises that ``adj`` is
    symmetric (true of :func:`bipartite_adjacency`), which makes the backward pass cheaper.
    """
    if int(n_layers) < 0:
        raise DiffCLError(f"n_layers={n_layers} must be >= 0 (LightGCN uses 2 or 3).")
    if adj.shape[0] != adj.shape[1] or adj.shape[1] != x.shape[0]:
        raise DiffCLError(
            f"adj has shape {tuple(adj.shape)} but x has {x.shape[0]} rows; x must hold one row per node "
            "(users first, then items)."
        )
    layers = [x]
    for _ in range(int(n_layers)):
        # E^(l+1) = A_hat E^(l)
        layers.append(_spmm(adj, layers[-1], symmetric))
    return layers


def lightgcn_propagate(
    adj: torch.Tensor, x: torch.Tensor, n_layers: int, symmetric: bool = False, column_block: int | None = None,
) -> torch.Tensor:
    """LightGCN readout: ``E = 1/(L+1) sum_{l=0..L} E^(l)`` with ``E^(l+1) = A_hat E^(l)``.

    Introduced in notebook 01 (LightGCN propagation). Differentiable w.r.t. ``x``; pass
    ``symmetric=True`` for the (symmetric) normalised user-item graph. ``column_block`` propagates
    ``x`` in blocks of that many columns (each column is propagated independently, so the result
    is the same); on a CPU, blocks of 64 columns keep the dense operand in cache and a 192-column
    product runs about a fifth faster that way.
    """
    if column_block is not None and x.shape[1] > column_block:
        return torch.cat([lightgcn_propagate(adj, x[:, j : j + column_block], n_layers, symmetric)
                          for j in range(0, x.shape[1], column_block)], dim=1)
    layers = propagate_layers(adj, x, n_layers, symmetric)
    # E = 1/(L+1) sum_l E^(l), l = 0..L (a running sum: no (L+1, n, d) stack to allocate and reduce)
    total = layers[0]
    for layer in layers[1:]:
        total = total + layer
    return total / len(layers)


# ---------------------------------------------------------------------------------------------
# Notebook 02: the item-item kNN graph
# ---------------------------------------------------------------------------------------------
def _as_feature_tensor(features: np.ndarray | torch.Tensor, name: str = "features") -> torch.Tensor:
    if isinstance(features, torch.Tensor):
        x = features.detach()
    else:
        arr = np.asarray(features)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise DiffCLError(f"{name} has dtype {arr.dtype}; expected a float array (n_items, d).")
        x = torch.from_numpy(np.ascontiguousarray(arr))
    if x.ndim != 2:
        raise DiffCLError(f"{name} has shape {tuple(x.shape)}; expected a 2-D array (n_items, d).")
    if x.dtype != torch.float32:
        x = x.float()
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(dim=1).sum())
        raise DiffCLError(
            f"{name} contains NaN or inf values in {bad} row(s); clean the features "
            "(e.g. np.nan_to_num) or drop those items before building the kNN graph."
        )
    return x


def _check_k(k: int, n: int, name: str = "features") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise DiffCLError(f"k={k!r} must be an integer with 1 <= k < n_items.")
    if k < 1 or k >= n:
        raise DiffCLError(
            f"k={k} is invalid for {name} with n_items={n} items: the kNN graph needs 1 <= k < n_items "
            f"(self is excluded); pass a smaller k, e.g. k={max(1, min(10, n - 1))}."
        )
    return int(k)


def knn_indices(
    features: np.ndarray | torch.Tensor,
    k: int = 10,
    block_size: int = 2048,
    device: Any = None,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` cosine neighbours of every item, self excluded: ``(idx (n, k) long, sim (n, k) float)``.

    Introduced in notebook 02 (item-item graph). Rows are L2-normalised (an all-zero row stays
    zero, so its similarity to everything is 0). The similarity matrix is computed in
    ``block_size x block_size`` tiles, only on and above the diagonal (it is symmetric), and
    running top-k lists are merged tile by tile; neighbours are sorted by decreasing
    similarity. Memory beyond the features: two tiles and the ``(n, k)`` lists. Returned on
    ``device`` (default: the features' device, CPU for numpy).

    The tiles are float32 products, whose last bits depend on the CPU's matrix kernel; a few
    spare candidates per row are therefore re-scored in float64 and ties broken by item id, so
    the same features give the same graph on every machine.
    """
    x = _as_feature_tensor(features)
    k = _check_k(k, x.shape[0])
    if device is not None:
        x = x.to(device)
    n_cand = min(x.shape[0] - 1, k + max(4, k // 2))
    cand, _ = _topk_dot(_unit_rows(x), n_cand, block_size, progress)
    return _rerank_exact(x, cand, k)


def _rerank_exact(x: torch.Tensor, cand: torch.Tensor, k: int, block_bytes: int = 2**26) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` of each row's candidates by float64 cosine, ties broken by the smaller item id."""
    x64 = _unit_rows(x.double())
    # candidates in id order first, so the stable sort below breaks exact ties by id
    cand = torch.sort(cand, dim=1).values
    rows = max(1, block_bytes // (8 * cand.shape[1] * max(1, x.shape[1])))
    out_idx, out_sim = [], []
    for start in range(0, x.shape[0], rows):
        c = cand[start : start + rows]
        # cos(x_i, x_j) = x_i . x_j on unit rows, in float64
        sim = (x64[start : start + rows].unsqueeze(1) * x64[c]).sum(dim=-1)
        order = torch.sort(sim, dim=1, descending=True, stable=True).indices[:, :k]
        out_idx.append(torch.gather(c, 1, order))
        out_sim.append(torch.gather(sim, 1, order).float())
    return torch.cat(out_idx), torch.cat(out_sim)


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    # ||x_i||_2, with zero rows kept at zero below
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    # x_i <- x_i / ||x_i||   (cosine similarity becomes a dot product)
    return x / norms.clamp_min(torch.finfo(x.dtype).tiny)


def _topk_dot(
    x: torch.Tensor, k: int, block_size: int, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of ``x_i . x_j`` over ``j != i`` for every row, computed in tiles (see :func:`knn_indices`)."""
    if int(block_size) < 1:
        raise DiffCLError(f"block_size={block_size} must be >= 1 (2048 rows is a good default).")
    block_size = int(block_size)
    n = x.shape[0]
    # Running top-k lists, filled block pair by block pair. sim is symmetric (sim_ij = sim_ji), so
    # only the blocks (I, J) with J >= I are computed: C = X_I X_J^T serves the rows of I, and C^T
    # serves the rows of J. This halves the work of the n x n similarity (the dominant cost).
    best_sim = torch.full((n, k), float("-inf"), dtype=torch.float32, device=x.device)
    best_idx = torch.zeros((n, k), dtype=torch.long, device=x.device)

    def merge(start: int, vals: torch.Tensor, cols: torch.Tensor) -> None:
        stop = start + vals.shape[0]
        cand_sim = torch.cat([best_sim[start:stop], vals], dim=1)
        cand_idx = torch.cat([best_idx[start:stop], cols], dim=1)
        top_sim, pos = torch.topk(cand_sim, k, dim=1, largest=True, sorted=True)
        best_sim[start:stop] = top_sim
        best_idx[start:stop] = torch.gather(cand_idx, 1, pos)

    starts = list(range(0, n, block_size))
    pairs = [(a, b) for i, a in enumerate(starts) for b in starts[i:]]
    for s_i, s_j in tqdm(pairs, desc="kNN blocks", disable=not progress, leave=False):
        x_i = x[s_i : s_i + block_size]
        x_j = x[s_j : s_j + block_size]
        # C_ab = cos(x_a, x_b) = x_a . x_b   for a in block I, b in block J
        c = x_i @ x_j.T
        if s_i == s_j:
            # exclude self: sim_aa = -inf
            c.fill_diagonal_(float("-inf"))
        vals, cols = torch.topk(c, min(k, c.shape[1]), dim=1, largest=True, sorted=False)
        merge(s_i, vals, cols + s_j)
        if s_i != s_j:
            # the same block seen from the rows of J: C^T
            c_t = c.T.contiguous()
            vals, cols = torch.topk(c_t, min(k, c_t.shape[1]), dim=1, largest=True, sorted=False)
            merge(s_j, vals, cols + s_i)
        del c
    return best_idx, best_sim


def _normalise_knn(idx: torch.Tensor, keep: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """COO (indices, values) of ``D^-1/2 S D^-1/2`` for the binary kNN graph ``S`` (row-sum degrees)."""
    k = idx.shape[1]
    rows = torch.arange(n, device=idx.device).repeat_interleave(k)
    cols = idx.reshape(-1)
    mask = keep.reshape(-1)
    rows, cols = rows[mask], cols[mask]
    # d_i = sum_j S_ij  (row sums of the directed kNN graph, FREEDOM's convention)
    deg = torch.bincount(rows, minlength=n).to(torch.float32)
    # d_i^-1/2, 0 for rows without edges
    d_inv_sqrt = torch.where(deg > 0, deg.clamp_min(1.0).rsqrt(), torch.zeros_like(deg))
    # S_hat_ij = d_i^-1/2 * S_ij * d_j^-1/2, with S_ij = 1
    values = d_inv_sqrt[rows] * d_inv_sqrt[cols]
    return torch.stack([rows, cols]), values


def knn_graph(
    features: np.ndarray | torch.Tensor,
    k: int = 10,
    block_size: int = 2048,
    device: Any = None,
    layout: str = "csr",
    progress: bool = False,
) -> torch.Tensor:
    """Normalised item-item kNN graph ``S_hat = D^-1/2 S D^-1/2`` of one modality (float32 sparse).

    Introduced in notebook 02 (item-item graph). ``S_ij = 1`` if ``j`` is among the ``k`` most
    cosine-similar items of ``i`` (``j != i``), else 0; ``S`` is not symmetrised (FREEDOM) and
    ``D`` holds its row sums. Items with all-zero features get no edges. Returned as CSR
    (``layout="csr"``, default) or COO, shape ``(n_items, n_items)``, on ``device``.
    """
    _check_layout(layout)
    x = _as_feature_tensor(features)
    n = x.shape[0]
    idx, _ = knn_indices(x, k=k, block_size=block_size, device=device, progress=progress)
    # an all-zero feature row carries no information: no edge from or to it
    nonzero = (x != 0).any(dim=1).to(idx.device)
    keep = nonzero[:, None] & nonzero[idx]
    indices, values = _normalise_knn(idx, keep, n)
    return _sparse_from_coo(indices, values, (n, n), device=idx.device, layout=layout)


def default_modality_weights(names: Sequence[str]) -> dict[str, float]:
    """MMRec/FREEDOM fusion weights: image 0.1 / text 0.9 for exactly {image, text}, else 1/M each.

    Introduced in notebook 02 (item-item graph).
    """
    names = list(names)
    if set(names) == {"image", "text"} and len(names) == 2:
        return {"image": 0.1, "text": 0.9}
    return {m: 1.0 / len(names) for m in names}


def _resolve_weights(names: Sequence[str], weights: Mapping[str, float] | None) -> dict[str, float]:
    if weights is None:
        w = default_modality_weights(names)
    else:
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise DiffCLError(
                f"weights names unknown modalities {unknown}; the features have {list(names)}. "
                "Use those names as keys."
            )
        missing = sorted(set(names) - set(weights))
        if missing:
            raise DiffCLError(
                f"weights has no entry for modalities {missing}; give every modality in {list(names)} a "
                "weight (0.0 to leave one out)."
            )
        w = {m: float(weights[m]) for m in names}
        bad = {m: v for m, v in w.items() if not np.isfinite(v) or v < 0}
        if bad:
            raise DiffCLError(f"weights {bad} must be finite and >= 0.")
    total = sum(w.values())
    if total <= 0:
        raise DiffCLError(f"weights={w} sum to {total}; at least one modality needs a positive weight.")
    # w_m <- w_m / sum_m' w_m'
    return {m: v / total for m, v in w.items()}


def item_item_graph(
    features: Mapping[str, np.ndarray],
    k: int = 10,
    weights: Mapping[str, float] | None = None,
    block_size: int = 2048,
    cache_dir: str | Path | None = None,
    device: Any = None,
    layout: str = "csr",
    progress: bool = False,
) -> torch.Tensor:
    """Fused item-item graph ``S = sum_m w_m S_hat_m`` over the modalities (float32 sparse).

    Introduced in notebook 02 (item-item graph). One :func:`knn_graph` per modality, fused with
    weights normalised to sum 1 (default: :func:`default_modality_weights`). With ``cache_dir``
    the graph is stored as ``item_item_<key>.pt`` where ``key`` hashes every modality's name,
    shape, dtype and bytes plus ``k`` and the weights; a later call with the same inputs loads
    it instead of recomputing. The file is written atomically (temp file + ``os.replace``).
    """
    _check_layout(layout)
    if not isinstance(features, Mapping) or len(features) == 0:
        raise DiffCLError(
            "features must be a non-empty dict {modality name: array (n_items, d)}; an ID-only dataset has "
            "no item-item graph."
        )
    names = list(features)
    sizes = {m: int(np.shape(features[m])[0]) for m in names}
    if len(set(sizes.values())) != 1:
        raise DiffCLError(f"modalities have different numbers of rows {sizes}; each row must be one item.")
    n = next(iter(sizes.values()))
    _check_k(k, n, name=f"features[{names[0]!r}]")
    w = _resolve_weights(names, weights)

    cache_path: Path | None = None
    if cache_dir is not None:
        arrays = {m: to_numpy(features[m]) for m in names}
        key = features_hash(arrays, k=int(k), weights=sorted(w.items()), kind="item_item_graph_v1")
        cache_path = Path(cache_dir) / f"item_item_{key[:24]}.pt"
        if cache_path.exists():
            blob = torch.load(cache_path, map_location="cpu", weights_only=True)
            log.info("item-item graph loaded from cache %s", cache_path)
            return _sparse_from_coo(
                blob["indices"], blob["values"], tuple(blob["size"]), device=device, layout=layout
            )

    parts_idx: list[torch.Tensor] = []
    parts_val: list[torch.Tensor] = []
    for m in names:
        if w[m] == 0.0:
            continue
        g = knn_graph(
            _as_feature_tensor(features[m], name=f"features[{m!r}]"),
            k=k, block_size=block_size, device=device, layout="coo", progress=progress,
        )
        parts_idx.append(g.indices())
        # S = sum_m w_m S_hat_m
        parts_val.append(w[m] * g.values())
    fused = _coo_tensor(torch.cat(parts_idx, dim=1), torch.cat(parts_val), (n, n)).coalesce()
    if cache_path is not None:
        buf = io.BytesIO()
        torch.save(
            {
                "indices": fused.indices().cpu(),
                "values": fused.values().cpu(),
                "size": [n, n],
                "k": int(k),
                "weights": dict(w),
            },
            buf,
        )
        atomic_write_bytes(cache_path, buf.getvalue())
        log.info("item-item graph cached at %s", cache_path)
    return _sparse_from_coo(fused.indices(), fused.values(), (n, n), device=device, layout=layout)
