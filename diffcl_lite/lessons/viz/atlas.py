"""Figures of notebook 07 (embedding atlas): per-point kNN purity, topic centroids, the atlas panels."""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from ...errors import DiffCLError
from .common import _np

log = logging.getLogger(__name__)

__all__ = ["purity_per_point", "chance_purity", "topic_centroid_similarity", "plot_atlas"]


def purity_per_point(x: Any, labels: Sequence[Any], k: int = 10) -> np.ndarray:
    """For every point, the share of its ``k`` nearest neighbours (cosine, itself excluded) with its label.

    Introduced in notebook 07 (embedding atlas). The mean over points is
    :func:`neighbourhood_purity`; averaging over a subset (e.g. items with a noisy image) tells
    how well that group is placed. Returns a float array of shape ``(n,)``.
    """
    from ...graphs import knn_indices
    from ..measures.graphs import neighbour_purity

    lab = np.asarray(labels)
    pts = _np(x)
    if len(lab) != len(pts):
        raise DiffCLError(f"purity_per_point: {len(lab)} labels for {len(pts)} points; pass one label per row of x.")
    idx, _ = knn_indices(pts, k=k)
    # purity_i = 1/k Σ_{j ∈ N_k(i)} [y_j = y_i]   (neighbour_purity, the one kNN purity)
    return neighbour_purity(idx, lab)


def chance_purity(labels: Sequence[Any]) -> float:
    """Purity of random neighbours: Σ_c p_c² with p_c the share of label c. Introduced in notebook 07."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    p = counts / counts.sum()
    # chance = Σ_c p_c²
    return float((p**2).sum())


def topic_centroid_similarity(x: Any, labels: Sequence[int], n_topics: int | None = None) -> np.ndarray:
    """Cosine similarity of topic centroids, ``C[a, b] = cos(μ_a, μ_b)``.

    ``μ_c`` is the mean of the unit-length rows ``x_i / ||x_i||`` with label ``c`` (so that
    popular items with long vectors do not dominate their topic). Topics without rows get NaN.
    Introduced in notebook 07 (embedding atlas). Returns a ``(n_topics, n_topics)`` array.
    """
    a = _np(x).astype(np.float64)
    lab = np.asarray(labels).astype(np.int64)
    if len(lab) != len(a):
        raise DiffCLError(f"topic_centroid_similarity: {len(lab)} labels for {len(a)} rows; pass one label per row.")
    c = int(n_topics if n_topics is not None else lab.max() + 1)
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    unit = np.divide(a, norms, out=np.zeros_like(a), where=norms > 0)
    cent = np.full((c, a.shape[1]), np.nan)
    for t in range(c):
        if (lab == t).any():
            # μ_t = mean_{i: y_i = t} x_i / ||x_i||
            cent[t] = unit[lab == t].mean(0)
    cn = cent / np.linalg.norm(cent, axis=1, keepdims=True)
    # C[a, b] = μ_a · μ_b / (||μ_a|| ||μ_b||)
    return cn @ cn.T


def _is_categorical(values: np.ndarray) -> bool:
    if values.dtype.kind in "OUSb":
        return True
    return values.dtype.kind in "iu" and len(np.unique(values)) <= 12


def plot_atlas(maps: dict[str, Any], colours: dict[str, Sequence[Any]], colour_by: str = "topic",
               titles: dict[str, str] | None = None, s: float = 9, suptitle: str | None = None):
    """2-D maps side by side (one panel per entry of ``maps``), all coloured by ``colours[colour_by]``.

    Introduced in notebook 07 (embedding atlas; its colour-by widget redraws this figure).
    Categorical colourings (strings, or integers with at most 12 values) share one legend and rare
    categories are drawn last, on top; numeric ones (e.g. degree) share a colour bar with a
    symmetric-log scale when they are long-tailed. Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize, SymLogNorm

    if colour_by not in colours:
        raise DiffCLError(f"plot_atlas: colour_by={colour_by!r} is not one of {list(colours)}.")
    values = np.asarray(colours[colour_by])
    names = list(maps)
    for name in names:
        if len(maps[name]) != len(values):
            raise DiffCLError(f"plot_atlas: map {name!r} has {len(maps[name])} points but colours[{colour_by!r}] "
                              f"has {len(values)} values.")
    fig, axes = plt.subplots(1, len(names), figsize=(4.8 * len(names), 4.6), squeeze=False)
    axes = axes[0]
    if _is_categorical(values):
        cats, counts = np.unique(values.astype(str) if values.dtype.kind == "O" else values, return_counts=True)
        cmap = plt.get_cmap("tab10" if len(cats) <= 10 else "tab20")
        order = np.argsort(-counts, kind="stable")  # frequent first, rare on top
        handles = {}
        for ax, name in zip(axes, names):
            xy = np.asarray(maps[name])
            key = values.astype(str) if values.dtype.kind == "O" else values
            for j in order:
                sel = key == cats[j]
                colour = "lightgrey" if str(cats[j]) in ("clean", "") else cmap(int(j) % cmap.N)
                handles[j] = ax.scatter(xy[sel, 0], xy[sel, 1], s=s, color=colour, alpha=0.8, linewidths=0,
                                        label=f"{cats[j]} ({counts[j]})")
        ordered = [handles[j] for j in sorted(handles)]
        fig.legend(handles=ordered, loc="center right", title=colour_by, fontsize=8, markerscale=1.6,
                   frameon=False)
        right = 0.86
    else:
        v = values.astype(float)
        long_tail = v.min() >= 0 and v.max() > 10 * max(float(np.median(v)), 1.0)
        norm = SymLogNorm(linthresh=1.0, vmin=v.min(), vmax=v.max()) if long_tail else Normalize(v.min(), v.max())
        order = np.argsort(v, kind="stable")  # large values on top
        sc = None
        for ax, name in zip(axes, names):
            xy = np.asarray(maps[name])
            sc = ax.scatter(xy[order, 0], xy[order, 1], c=v[order], s=s, cmap="viridis", norm=norm, alpha=0.85,
                            linewidths=0)
        cax = fig.add_axes([0.88, 0.15, 0.015, 0.7])
        fig.colorbar(sc, cax=cax, label=colour_by + (" (symlog scale)" if long_tail else ""))
        right = 0.86
    for ax, name in zip(axes, names):
        ax.set_title((titles or {}).get(name, name), fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.subplots_adjust(left=0.02, right=right, wspace=0.06, top=0.86 if suptitle else 0.9, bottom=0.04)
    return fig
