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


# ---------------------------------------------------------------------------------------------
# Notebooks 01 and 02: graph figures (pure functions of their arguments; the widgets redraw them)
# ---------------------------------------------------------------------------------------------
def plot_degrees(user_degrees: Any, item_degrees: Any, title: str = "Degree distributions (train graph)"):
    """Histograms of user and item degrees plus the item rank-degree curve on log axes (long tail).

    Introduced in notebook 01 (user-item graph). Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    ud = np.asarray(user_degrees)
    idg = np.asarray(item_degrees)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, deg, who, color in ((axes[0], ud, "users", "tab:blue"), (axes[1], idg, "items", "tab:orange")):
        bins = np.arange(0, deg.max() + 2) - 0.5 if deg.max() <= 60 else 40
        ax.hist(deg, bins=bins, color=color, alpha=0.85)
        ax.axvline(np.median(deg), color="k", ls="--", lw=1, label=f"median {np.median(deg):g}")
        ax.set_xlabel(f"degree (interactions per {who[:-1]})")
        ax.set_ylabel(f"number of {who}")
        ax.set_title(f"{who}: {len(deg)}, zero-degree: {int((deg == 0).sum())}")
        ax.legend(fontsize=8)
    ranked = np.sort(idg)[::-1]
    pos = ranked > 0
    axes[2].loglog(np.arange(1, len(ranked) + 1)[pos], ranked[pos], color="tab:orange")
    axes[2].set_xlabel("item rank (most popular first)")
    axes[2].set_ylabel("item degree")
    top = max(1, len(ranked) // 10)
    share = ranked[:top].sum() / max(ranked.sum(), 1)
    axes[2].set_title(f"long tail: top 10% items get {share:.0%} of edges")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_oversmoothing(adj: Any, x: Any, n_layers: int = 2, labels: Any = None, n_users: int = 0,
                       max_layers: int = 16):
    """Over-smoothing of LightGCN propagation, measured on the items (nodes ``n_users..``).

    Introduced in notebook 01 (over-smoothing widget). Left: mean pairwise cosine
    (:func:`diffcl_lite.graphs.oversmoothing_curve`) of the layer output ``E^(L)`` and of LightGCN's
    mean readout; middle: topic separation (same-topic minus different-topic cosine) when
    ``labels`` are given; right: the distribution of pairwise cosines at ``L = n_layers``.
    The marker shows ``n_layers``. Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    from .graphs import oversmoothing_curve, propagate_layers

    n_layers = int(n_layers)
    max_layers = max(int(max_layers), n_layers)
    items = slice(int(n_users), None)
    xs = np.arange(max_layers + 1)
    ncols = 3 if labels is not None else 2
    fig, axes = plt.subplots(1, ncols, figsize=(4.6 * ncols, 3.7))
    panels = [("cosine", "mean pairwise cosine of items")]
    if labels is not None:
        panels.append(("separation", "topic separation\n(same-topic cos − other-topic cos)"))
    for ax, (measure, ylabel) in zip(axes, panels):
        for readout, style, name in (("layer", "-o", "layer output $E^{(L)}$"), ("mean", "--s", "LightGCN readout (mean)")):
            ys = oversmoothing_curve(adj, x, max_layers, nodes=items, readout=readout, measure=measure, labels=labels)
            ax.plot(xs, ys, style, ms=3.5, label=name)
            ax.plot([n_layers], [ys[n_layers]], "o", ms=10, mfc="none", mec="red")
        ax.axvline(n_layers, color="red", lw=0.8, alpha=0.6)
        ax.set_xlabel("number of layers L")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    axes[0].set_ylim(-0.05, 1.05)
    axes[0].set_title("do all items look alike?")
    if labels is not None:
        axes[1].set_title("can a dot product still tell topics apart?")
    # pairwise cosines at L = n_layers
    e = propagate_layers(adj, torch.as_tensor(_np(x)), n_layers)[-1][items]
    e = _np(e).astype(np.float64)
    keep = np.linalg.norm(e, axis=1) > 0
    u = e[keep] / np.linalg.norm(e[keep], axis=1, keepdims=True)
    cos = u @ u.T
    iu = np.triu_indices(len(u), 1)
    ax = axes[-1]
    bins = np.linspace(-1, 1, 81)
    if labels is not None:
        lab = np.asarray(labels)[keep]
        same = (lab[:, None] == lab[None, :])[iu]
        ax.hist(cos[iu][~same], bins=bins, density=True, alpha=0.6, label="different topic")
        ax.hist(cos[iu][same], bins=bins, density=True, alpha=0.6, label="same topic")
        ax.legend(fontsize=8)
    else:
        ax.hist(cos[iu], bins=bins, density=True, alpha=0.7)
    ax.set_xlabel("cosine similarity of two items")
    ax.set_ylabel("density")
    ax.set_title(f"all item pairs at L = {n_layers}")
    fig.tight_layout()
    return fig


def plot_topic_agreement(features: Any, labels: Any, k: int = 10, image_weight: float = 0.1,
                         noisy_modality: Any = None, n_grid: int = 11):
    """How many item-item neighbours share the item's topic, as the image weight goes 0 → 1.

    Introduced in notebook 02 (item-item graph widget). Left: agreement of the fused graph
    (solid: FREEDOM-style graph fusion; dashed: kNN of the fused similarity) for all items and,
    when ``noisy_modality`` (per-item name of the replaced modality, ``""`` for clean) is given,
    for items with a noisy image / noisy text; computed with
    :func:`diffcl_lite.graphs.topic_agreement_sweep`. Right: the groups at ``image_weight``, with
    the statistics of that graph in the title. Chance level is ``sum_c p_c^2``. Returns the figure.
    """
    import matplotlib.pyplot as plt

    from .graphs import graph_summary, item_item_graph, topic_agreement_sweep

    lab = np.asarray(labels)
    names = list(features)
    if "image" not in names or len(names) != 2:
        raise DiffCLError(f"plot_topic_agreement needs two modalities, one named 'image'; got {names}.")
    other = next(m for m in names if m != "image")
    groups: dict[str, Any] = {"all items": None}
    if noisy_modality is not None:
        noisy = np.asarray(noisy_modality).astype(str)
        groups.update({"clean items": noisy == "", "noisy image": noisy == "image", f"noisy {other}": noisy == other})
    grid = np.linspace(0.0, 1.0, int(n_grid))
    grid = np.unique(np.round(np.append(grid, float(image_weight)), 6))
    by_graph = topic_agreement_sweep(features, lab, k=k, image_weights=grid, groups=groups, fuse="graph")
    by_sim = topic_agreement_sweep(features, lab, k=k, image_weights=grid, groups=groups, fuse="similarity")
    chance = float(((np.bincount(lab) / len(lab)) ** 2).sum())
    colors = dict(zip(groups, ("k", "tab:green", "tab:red", "tab:purple")))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [1.4, 1]})
    for g in groups:
        ax.plot(grid, by_graph[g], "-", color=colors[g], label=f"{g} (graph fusion)")
        ax.plot(grid, by_sim[g], "--", color=colors[g], alpha=0.7, label=f"{g} (similarity fusion)")
    ax.axhline(chance, color="grey", ls=":", label=f"chance ({chance:.2f})")
    ax.axvline(float(image_weight), color="red", lw=0.8)
    ax.set_xlabel(f"image weight w  ({other} weight = 1 − w)")
    ax.set_ylabel("share of neighbours with the same topic")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"topic agreement of the item-item graph, k = {k}")
    ax.legend(fontsize=7, ncol=2, loc="lower center")
    pos = int(np.flatnonzero(np.isclose(grid, float(image_weight)))[0])
    vals = [by_graph[g][pos] for g in groups]
    bars = ax2.bar(range(len(groups)), np.nan_to_num(vals), color=[colors[g] for g in groups], alpha=0.8)
    for b, v in zip(bars, vals):
        ax2.text(b.get_x() + b.get_width() / 2, (0 if np.isnan(v) else v) + 0.02, "n/a" if np.isnan(v) else f"{v:.2f}",
                 ha="center", fontsize=9)
    ax2.axhline(chance, color="grey", ls=":")
    ax2.set_xticks(range(len(groups)), list(groups), fontsize=8)
    ax2.set_ylim(0, 1.1)
    w_img = float(image_weight)
    g_sum = graph_summary(item_item_graph(features, k=k, weights={"image": w_img, other: 1.0 - w_img}, layout="coo"))
    in_deg = g_sum.get("in_degree", g_sum["degree"])
    ax2.set_title(f"w = {w_img:.2f}: {g_sum['edges']} edges, in-degree median {in_deg['median']:g}, max {in_deg['max']:g}",
                  fontsize=9)
    fig.tight_layout()
    return fig
