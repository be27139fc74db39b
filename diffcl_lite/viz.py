"""Visualisation: 2-D maps of embeddings (UMAP or PCA), scatter plots, learning curves, saving figures.

Introduced in notebook 06 (modality alignment) and 07 (embedding atlas); ``save_figure`` is
used by every notebook that writes to ``figures/``. matplotlib, plotly and umap are imported
inside the functions that need them.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .errors import DiffCLError

log = logging.getLogger(__name__)


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=np.float32)


def pca_2d(x: Any, n_components: int = 2) -> np.ndarray:
    """Principal components of ``x`` (centred SVD), deterministic up to sign (fixed: largest |loading| > 0)."""
    a = _np(x).astype(np.float64)
    a = a - a.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(a, full_matrices=False)
    comps = vt[:n_components]
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(1)])
    return (a @ (comps * signs[:, None]).T).astype(np.float32)


def knn_for_umap(x: Any, n_neighbors: int = 15, metric: str = "cosine", block_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Exact kNN (self included, as UMAP expects) computed blockwise with torch: (indices, distances)."""
    t = torch.as_tensor(_np(x))
    n = len(t)
    if n_neighbors >= n:
        raise DiffCLError(f"n_neighbors={n_neighbors} must be below the number of points ({n}).")
    if metric == "cosine":
        t = torch.nn.functional.normalize(t, dim=1)
    idx, dist = [], []
    for s in range(0, n, block_size):
        blk = t[s : s + block_size]
        if metric == "cosine":
            d = (1 - blk @ t.T).clamp_min(0)
        elif metric == "euclidean":
            d = torch.cdist(blk, t)
        else:
            raise DiffCLError(f"metric={metric!r}: use 'cosine' or 'euclidean'.")
        rows = torch.arange(len(blk))
        d[rows, rows + s] = -1.0  # self first
        vals, ind = torch.topk(d, n_neighbors, dim=1, largest=False)
        vals[:, 0] = 0.0
        idx.append(ind)
        dist.append(vals)
    return torch.cat(idx).numpy().astype(np.int64), torch.cat(dist).numpy().astype(np.float32)


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
        from .notebook import fast_mode

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
    """Fraction of each point's k nearest neighbours (cosine) that share its label. Chance ≈ Σ_c p_c²."""
    idx, _ = knn_for_umap(x, k + 1)
    lab = np.asarray(labels)
    return float((lab[idx[:, 1:]] == lab[:, None]).mean())


def save_figure(fig: Any, name: str, figures_dir: str | Path | None = None, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Save a matplotlib figure (PNG) or a plotly figure (HTML, plotly.js inlined so it works offline) to ``figures/``."""
    from .notebook import find_figures_dir

    folder = Path(figures_dir) if figures_dir else find_figures_dir()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    if hasattr(fig, "savefig"):
        for fmt in formats:
            p = folder / f"{name}.{fmt}"
            fig.savefig(p, dpi=120, bbox_inches="tight")
            paths.append(p)
    elif hasattr(fig, "write_html"):
        p = folder / f"{name}.html"
        fig.write_html(p, include_plotlyjs=True, full_html=True)
        paths.append(p)
    else:
        raise DiffCLError(f"save_figure: {type(fig).__name__} is neither a matplotlib nor a plotly figure.")
    return paths


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


def plot_history(history: list[dict[str, Any]], keys: Sequence[str] = ("loss_total", "valid_recall@20"), axes=None):
    """Learning curves from ``TrainResult.history``: one panel per key."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.2))
    axes = np.atleast_1d(axes)
    for ax, key in zip(axes, keys):
        pts = [(h["epoch"], h[key]) for h in history if key in h]
        if pts:
            ax.plot(*zip(*pts), marker=".")
        ax.set_xlabel("epoch")
        ax.set_title(key)
    return axes


def plotly_scatter(coords: np.ndarray, color: Sequence[Any], hover: dict[str, Sequence[Any]] | None = None,
                   title: str = "", symbol: Sequence[Any] | None = None):
    """An interactive plotly scatter with hover columns (plotly imported here, not at package import)."""
    import plotly.express as px

    data: dict[str, Any] = {"x": coords[:, 0], "y": coords[:, 1], "color": [str(c) for c in color]}
    for k, v in (hover or {}).items():
        data[k] = list(v)
    if symbol is not None:
        data["kind"] = list(symbol)
    fig = px.scatter(data, x="x", y="y", color="color", hover_data=list((hover or {}).keys()),
                     symbol="kind" if symbol is not None else None, title=title, render_mode="svg")
    fig.update_traces(marker={"size": 5, "opacity": 0.8})
    fig.update_layout(width=720, height=520, legend_title_text="", xaxis={"visible": False}, yaxis={"visible": False})
    return fig
