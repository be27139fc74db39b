"""What every lesson's figures share: 2-D maps of embeddings (PCA, UMAP), kNN purity, scatter plots.

Used from notebook 02 (``pca_2d``, ``scatter_2d``) to 07 (``embed_2d``, ``plotly_scatter``);
matplotlib, plotly and umap are imported inside the functions that need them.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any, Sequence

import numpy as np
import torch

from ...errors import DiffCLError
from ...utils import to_numpy

log = logging.getLogger(__name__)

__all__ = [
    "pca_2d", "knn_for_umap", "embed_2d", "neighbourhood_purity", "scatter_2d", "plotly_scatter",
    "pca_basis", "pca_project", "scatter_by_label",
]


def _np(x: Any) -> np.ndarray:
    """``x`` as a float32 numpy array (:func:`diffcl_lite.utils.to_numpy`, then float32)."""
    return np.asarray(to_numpy(x), dtype=np.float32)


def pca_2d(x: Any, n_components: int = 2) -> np.ndarray:
    """Principal components of ``x`` (centred SVD), deterministic up to sign (fixed: largest |loading| > 0).

    The same axes as :func:`pca_basis`: ``pca_2d(x) == pca_project(x, pca_basis(x))``.
    """
    return pca_project(x, pca_basis(x, n_components))


def knn_for_umap(x: Any, n_neighbors: int = 15, metric: str = "cosine", block_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Exact kNN with the point itself first, as UMAP expects: (indices, distances), both (n, n_neighbors).

    The cosine case reuses the item graph's blockwise search (:func:`diffcl_lite.graphs.knn_indices`),
    distance = 1 - cosine; ``metric="euclidean"`` uses ``torch.cdist`` in row blocks.
    """
    from ...graphs import knn_indices

    t = torch.as_tensor(_np(x))
    n = len(t)
    if n_neighbors >= n:
        raise DiffCLError(f"n_neighbors={n_neighbors} must be below the number of points ({n}).")
    if metric not in ("cosine", "euclidean"):
        raise DiffCLError(f"metric={metric!r}: use 'cosine' or 'euclidean'.")
    self_idx = torch.arange(n)[:, None]
    if n_neighbors == 1:
        return self_idx.numpy().astype(np.int64), np.zeros((n, 1), np.float32)
    if metric == "cosine":
        nbr, sim = knn_indices(t, k=n_neighbors - 1, block_size=block_size)
        dist = (1 - sim).clamp_min(0)
    else:
        nbr_blocks, dist_blocks = [], []
        for s in range(0, n, block_size):
            d = torch.cdist(t[s : s + block_size], t)
            rows = torch.arange(len(d))
            d[rows, rows + s] = float("inf")  # self is added in front below
            vals, ind = torch.topk(d, n_neighbors - 1, dim=1, largest=False)
            nbr_blocks.append(ind)
            dist_blocks.append(vals)
        nbr, dist = torch.cat(nbr_blocks), torch.cat(dist_blocks)
    idx = torch.cat([self_idx, nbr.cpu()], dim=1)
    dist = torch.cat([torch.zeros(n, 1), dist.cpu().float()], dim=1)
    return idx.numpy().astype(np.int64), dist.numpy().astype(np.float32)


def embed_2d(x: Any, method: str = "auto", n_neighbors: int = 15, seed: int = 0, n_epochs: int | None = None,
             metric: str = "cosine") -> np.ndarray:
    """Map embeddings to 2-D for plots.

    ``method="umap"`` computes its own exact neighbours (fast for a few thousand points) and hands
    them to umap-learn with ``precomputed_knn``; ``"pca"`` is the quick deterministic fallback;
    ``"auto"`` is PCA in fast mode (``DIFFCL_FAST=1``) or when umap-learn is missing, else UMAP.
    The same ``seed`` gives the same map.
    """
    a = _np(x)
    if method == "auto":
        from ..notebook import fast_mode

        method = "pca" if fast_mode() else "umap"
        if method == "umap":
            try:
                import umap  # noqa: F401
            except ImportError:
                log.warning("umap-learn is not installed; using PCA (pip install umap-learn)")
                method = "pca"
    if method == "pca":
        return pca_2d(a)
    if method != "umap":
        raise DiffCLError(f"method={method!r}: use 'umap', 'pca' or 'auto'.")
    import umap

    k = min(n_neighbors, len(a) - 1)
    idx, dist = knn_for_umap(a, k, metric)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(n_neighbors=k, metric=metric, precomputed_knn=(idx, dist, None), random_state=seed,
                            n_jobs=1, init="random", n_epochs=n_epochs or (200 if len(a) < 10000 else 100))
        out = reducer.fit_transform(a)
    return np.asarray(out, dtype=np.float32)


def neighbourhood_purity(x: Any, labels: Sequence[int], k: int = 10) -> float:
    """Fraction of each point's k nearest neighbours (cosine) that share its label. Chance ≈ Σ_c p_c².

    The figures' name for :func:`diffcl_lite.lessons.measures.views.topic_purity` over all points.
    """
    from ..measures.views import topic_purity

    return topic_purity(_np(x), labels, k=k)


def scatter_2d(coords: np.ndarray, color: Sequence[Any] | None = None, ax=None, title: str = "", s: float = 6,
               cmap: str = "tab10", legend: bool = True):
    """A matplotlib scatter of 2-D points coloured by a label or a value."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    c = None if color is None else np.asarray(color)
    sc = ax.scatter(coords[:, 0], coords[:, 1], c=c, s=s, cmap=cmap, alpha=0.8, linewidths=0)
    if c is not None and legend and np.issubdtype(c.dtype, np.integer) and len(np.unique(c)) <= 12:
        ax.legend(*sc.legend_elements(), title="topic", fontsize=7, loc="best", markerscale=0.8)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def plotly_scatter(coords: np.ndarray, color: Sequence[Any], hover: dict[str, Sequence[Any]] | None = None,
                   title: str = "", symbol: Sequence[Any] | None = None):
    """An interactive plotly scatter with hover columns (plotly imported here, not at package import).

    Colours follow :func:`~diffcl_lite.lessons.viz.plot_atlas`: the sorted categories get ``tab10``
    colours in order (``tab20`` above 10), "clean" or "" light grey, so a topic has the same colour as
    in the matplotlib maps. The legend has one entry per colour and one per marker ``symbol`` (grey),
    not one per (colour, symbol) pair.
    """
    import matplotlib
    import plotly.graph_objects as go

    xy = np.asarray(coords)
    col = np.asarray([str(c) for c in color])
    cats = sorted(set(col.tolist()))
    cmap = matplotlib.colormaps["tab10" if len(cats) <= 10 else "tab20"]
    shapes = ["circle", "x", "diamond", "triangle-up", "square", "cross", "star", "triangle-down"]
    sym = np.asarray([str(v) for v in symbol]) if symbol is not None else None
    kinds = list(dict.fromkeys(sorted(set(sym.tolist()), key=lambda k: (k not in ("clean", ""), k)))) if sym is not None else []
    shape_of = {k: shapes[j % len(shapes)] for j, k in enumerate(kinds)}
    hover = {k: np.asarray(list(v)) for k, v in (hover or {}).items()}
    names = list(hover)
    template = "<br>".join(f"{k}: %{{customdata[{j}]}}" for j, k in enumerate(names)) + "<extra></extra>" if names else None
    fig = go.Figure()
    for j, cat in enumerate(cats):
        sel = col == cat
        rgb = "lightgrey" if cat in ("clean", "") else matplotlib.colors.to_hex(cmap(j % cmap.N))
        marker: dict[str, Any] = {"size": 6, "opacity": 0.8, "color": rgb}
        if sym is not None:
            marker["symbol"] = [shape_of[k] for k in sym[sel]]
        custom = np.stack([hover[k][sel] for k in names], axis=1) if names else None
        fig.add_trace(go.Scatter(x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=cat, marker=marker,
                                 customdata=custom, hovertemplate=template, legendgroup="colour"))
    for k in kinds:  # legend-only entries for the marker shapes
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"marker: {k or 'none'}",
                                 marker={"size": 7, "color": "grey", "symbol": shape_of[k]}, legendgroup="symbol",
                                 hoverinfo="skip"))
    fig.update_layout(width=720, height=520, title=title, legend_title_text="", xaxis={"visible": False},
                      yaxis={"visible": False}, legend={"tracegroupgap": 12}, template="plotly_white")
    return fig


def pca_basis(x: Any, n_components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, components)`` of ``x``'s principal axes, signs fixed as in :func:`pca_2d`.

    Introduced in notebook 03: fit the axes ONCE on the clean ``x_0`` and project every noisy
    ``x_t`` with :func:`pca_project`, so the panels of a figure share one coordinate system.
    """
    a = _np(x).astype(np.float64)
    if a.ndim != 2 or a.shape[1] < n_components:
        raise DiffCLError(f"pca_basis: x must be 2-D with at least {n_components} columns, got shape {a.shape}.")
    mean = a.mean(0)
    _, _, vt = np.linalg.svd(a - mean, full_matrices=False)
    comps = vt[:n_components]
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(1)])
    return mean, comps * signs[:, None]


def pca_project(x: Any, basis: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Coordinates of ``x`` on a basis from :func:`pca_basis` (2-D points pass through unchanged)."""
    a = _np(x).astype(np.float64)
    mean, comps = basis
    return ((a - mean) @ comps.T).astype(np.float32)


def _coords_2d(x: Any, basis: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    a = _np(x)
    if a.shape[1] == 2 and basis is None:
        return a
    return pca_project(a, basis if basis is not None else pca_basis(a))


def scatter_by_label(ax, xy: np.ndarray, labels: Any, s: float = 6, alpha: float = 0.8, legend: bool | str = False,
                     label_name: str = "label") -> None:
    """Scatter 2-D points on ``ax``, one ``tab10`` colour per integer label (label ``k`` gets colour ``k``).

    Introduced in notebook 03; the diffusion figures use it so a topic has the same colour in every
    panel. ``legend``: False, True (inside) or ``"outside"`` (right of the axes).
    """
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=s, alpha=alpha, color="tab:blue", linewidths=0)
        return
    import matplotlib

    lab = np.asarray(labels)
    cmap = matplotlib.colormaps["tab10"]
    for k in np.unique(lab):
        m = lab == k
        ax.scatter(xy[m, 0], xy[m, 1], s=s, alpha=alpha, color=cmap(int(k) % 10), linewidths=0,
                   label=f"{label_name} {k}")
    if legend == "outside":
        ax.legend(fontsize=7, markerscale=2, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    elif legend:
        ax.legend(fontsize=7, markerscale=2, loc="upper right", framealpha=0.8)
