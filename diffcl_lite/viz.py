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
    """Exact kNN with the point itself first, as UMAP expects: (indices, distances), both (n, n_neighbors).

    The cosine case reuses the item graph's blockwise search (:func:`diffcl_lite.graphs.knn_indices`),
    distance = 1 - cosine; ``metric="euclidean"`` uses ``torch.cdist`` in row blocks.
    """
    from .graphs import knn_indices

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
    from .graphs import knn_indices, neighbour_topic_agreement

    idx, _ = knn_indices(torch.as_tensor(_np(x)), k=k)
    return neighbour_topic_agreement(idx, np.asarray(labels))


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
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.4, 1]})
    for g in groups:
        ax.plot(grid, by_graph[g], "-", color=colors[g], lw=1.8, label=g)
        ax.plot(grid, by_sim[g], "--", color=colors[g], lw=1.4, alpha=0.75)
    ax.axhline(chance, color="grey", ls=":", label=f"chance ({chance:.2f})")
    ax.plot([], [], "-", color="grey", label="graph fusion (solid)")
    ax.plot([], [], "--", color="grey", label="similarity fusion (dashed)")
    ax.axvline(float(image_weight), color="red", lw=0.8)
    ax.set_xlabel(f"image weight w  ({other} weight = 1 − w)")
    ax.set_ylabel("share of neighbours with the same topic")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"topic agreement of the item-item graph, k = {k}")
    ax.legend(fontsize=7.5, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
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


# ---------------------------------------------------------------------------------------------
# Notebooks 03 and 04: diffusion figures (pure functions of their arguments; the widgets redraw them)
# ---------------------------------------------------------------------------------------------
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


def plot_schedules(schedules: dict[str, Any], title: str = "Noise schedules side by side"):
    """``beta_t``, ``abar_t`` and ``log10 SNR(t)`` of several :class:`~diffcl_lite.diffusion.NoiseSchedule`.

    Introduced in notebook 03 (forward diffusion). The x axis is ``t / T`` so schedules with
    different ``T`` share a panel; markers are drawn when ``T <= 20``. Returns the figure.
    """
    import matplotlib.pyplot as plt

    if not schedules:
        raise DiffCLError("plot_schedules: give at least one schedule, e.g. {'linear-var': make_schedule()}.")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for name, s in schedules.items():
        u = np.arange(1, s.steps + 1) / s.steps
        style = "-o" if s.steps <= 20 else "-"
        axes[0].plot(u, s.betas.numpy(), style, ms=3, label=name)
        axes[1].plot(np.r_[0.0, u], np.r_[1.0, s.alphas_cumprod.numpy()], style, ms=3, label=name)
        axes[2].plot(u, np.log10(s.snr.numpy()), style, ms=3, label=name)
    axes[0].set_ylabel(r"$\beta_t$ (variance added at step t)")
    axes[1].set_ylabel(r"$\bar\alpha_t$ (signal kept: $x_t$ holds $\sqrt{\bar\alpha_t}\,x_0$)")
    axes[2].set_ylabel(r"$\log_{10}$ SNR$(t) = \log_{10} \bar\alpha_t/(1-\bar\alpha_t)$")
    axes[1].set_ylim(-0.03, 1.03)
    axes[2].axhline(0, color="grey", lw=0.8, ls=":")
    for ax in axes:
        ax.set_xlabel("t / T")
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_forward_snapshots(x0: Any, labels: Any, diffusion: Any, ts: Sequence[int], seed: int = 0, title: str = "",
                           label_name: str = "label", lim: float | None = None):
    """One panel per step number ``t`` in ``ts``: ``x_t`` from the closed form (one shared noise draw).

    Introduced in notebook 03. ``x0`` is ``(n, 2)`` points or ``(n, d)`` embeddings; for ``d > 2``
    every panel is projected on the principal axes of the CLEAN ``x0``. Panel titles give
    ``abar_t`` and the noise standard deviation ``sqrt(1 - abar_t)``. Returns the figure.
    """
    import matplotlib.pyplot as plt

    from .diffusion import noisy_snapshots

    x0 = torch.as_tensor(_np(x0))
    ts = list(ts)
    snaps = noisy_snapshots(x0, diffusion, ts, seed=seed)
    basis = None if x0.shape[1] == 2 else pca_basis(x0)
    coords = [_coords_2d(x, basis) for x in snaps]
    if lim is None:
        lim = float(np.percentile(np.abs(np.concatenate(coords)), 99.5)) * 1.08
    fig, axes = plt.subplots(1, len(ts), figsize=(2.9 * len(ts), 3.1), squeeze=False)
    for k, (ax, t, xy) in enumerate(zip(axes[0], ts, coords)):
        scatter_by_label(ax, xy, labels, s=4, legend="outside" if k == len(ts) - 1 else False, label_name=label_name)
        abar = 1.0 if t == 0 else float(diffusion.schedule.alphas_cumprod[t - 1])
        ax.set_title(f"t = {t}" + ("  (x$_0$)" if t == 0 else "")
                     + f"\n$\\bar\\alpha_t$={abar:.6g}, noise std={np.sqrt(1 - abar):.3g}", fontsize=9)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    if basis is not None:
        axes[0][0].set_xlabel("PC 1 of $x_0$")
        axes[0][0].set_ylabel("PC 2 of $x_0$")
    fig.suptitle(title or f"forward noising, {diffusion.schedule.kind} schedule, T = {diffusion.steps}")
    fig.tight_layout()
    return fig


def plot_forward_noising(points: Any, labels: Any = None, t: int = 10, kind: str = "linear-var", scale: float = 10.0,
                         steps: int = 50, seed: int = 0, noise_min: float = 1e-4, noise_max: float = 0.02,
                         lim: float = 3.5):
    """The forward-noising widget's figure: ``x_t`` of ``points`` next to the schedule, marked at ``t``.

    Introduced in notebook 03 (the ``t`` / schedule / scale widget). ``t`` is the step NUMBER
    (0 = clean ``x_0``, ``steps`` = ``x_T``; values above ``steps`` are clipped); the schedule is
    ``make_schedule(kind, steps, scale, noise_min, noise_max)``. Left: ``x_t`` in colour over the
    clean points in grey (embeddings are projected on the principal axes of the clean points);
    right: ``abar_t`` and the noise standard deviation ``sqrt(1 - abar_t)`` for ``t = 0..T``.
    Returns the figure.
    """
    import matplotlib.pyplot as plt

    from .diffusion import GaussianDiffusion, make_schedule, noisy_snapshots

    diffusion = GaussianDiffusion(make_schedule(kind, steps=int(steps), scale=float(scale), noise_min=noise_min,
                                                noise_max=noise_max))
    t = int(min(max(int(t), 0), int(steps)))
    x0 = torch.as_tensor(_np(points))
    x_t = noisy_snapshots(x0, diffusion, [t], seed=seed)[0]
    basis = None if x0.shape[1] == 2 else pca_basis(x0)
    xy0, xyt = _coords_2d(x0, basis), _coords_2d(x_t, basis)
    abar = np.r_[1.0, diffusion.schedule.alphas_cumprod.numpy()]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10.5, 4.3), gridspec_kw={"width_ratios": [1, 1.15]})
    ax.scatter(xy0[:, 0], xy0[:, 1], s=4, color="0.82", linewidths=0, label="clean $x_0$")
    scatter_by_label(ax, xyt, labels, s=6, legend=False)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_title(f"$x_t$ at t = {t} (grey: clean $x_0$)")
    ax.legend(fontsize=7, loc="upper right", markerscale=2)
    steps_axis = np.arange(int(steps) + 1)
    ax2.plot(steps_axis, abar, "-", color="tab:blue", label=r"$\bar\alpha_t$ (signal share)")
    ax2.plot(steps_axis, np.sqrt(1 - abar), "--", color="tab:red", label=r"noise std $\sqrt{1-\bar\alpha_t}$")
    ax2.plot([t], [abar[t]], "o", color="tab:blue", ms=8)
    ax2.plot([t], [np.sqrt(1 - abar[t])], "o", color="tab:red", ms=8)
    ax2.axvline(t, color="k", lw=0.8, alpha=0.5)
    ax2.set_ylim(-0.03, 1.03)
    ax2.set_xlabel("step t")
    ax2.set_title(f"{kind}, scale {scale:.3g}, T = {int(steps)}: "
                  f"$\\bar\\alpha_t$ = {abar[t]:.4g}, noise std = {np.sqrt(1 - abar[t]):.3g}", fontsize=10)
    ax2.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    return fig


def plot_reverse_trajectories(trajectory: Sequence[Any], labels: Any = None, reference: Any = None, n_paths: int = 30,
                              ax=None, title: str = "", label_name: str = "label", lim: float | None = None,
                              show_start: bool = True, start_label: str = "start $x_T$"):
    """A reverse chain ``[x_T, ..., x_0]`` (``p_sample_loop(..., return_trajectory=True)``) drawn in 2-D.

    Introduced in notebook 04 (reverse diffusion). Grey dots: ``reference`` (the clean data, when
    given); small black crosses: the start ``x_T`` (``show_start``, legend ``start_label``); coloured
    dots: the end ``x_0``; thin lines:
    ``n_paths`` evenly spaced points' paths. Embeddings (``d > 2``) are projected on the principal
    axes of ``reference`` (else of the end points). Returns the figure.
    """
    import matplotlib.pyplot as plt

    if len(trajectory) < 2:
        raise DiffCLError("plot_reverse_trajectories: the trajectory needs at least a start and an end (2 tensors).")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.2, 4.8))
    else:
        fig = ax.figure
    dim = _np(trajectory[0]).shape[1]
    basis = None
    if dim != 2:
        basis = pca_basis(reference if reference is not None else trajectory[-1])
    path = np.stack([_coords_2d(x, basis) for x in trajectory])  # (steps + 1, n, 2)
    if reference is not None:
        ref = _coords_2d(reference, basis)
        ax.scatter(ref[:, 0], ref[:, 1], s=4, color="0.85", linewidths=0, label="data $x_0$")
    if show_start:
        ax.scatter(path[0, :, 0], path[0, :, 1], s=5, marker="x", color="k", alpha=0.25, linewidths=0.6,
                   label=start_label)
    n = path.shape[1]
    for i in np.linspace(0, n - 1, min(int(n_paths), n)).astype(int):
        ax.plot(path[:, i, 0], path[:, i, 1], "-", color="k", lw=0.6, alpha=0.45)
    scatter_by_label(ax, path[-1], labels, s=6, label_name=label_name)
    ax.legend(fontsize=7, markerscale=2, loc="upper right", framealpha=0.8)
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
    else:
        ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title or f"reverse chain, {len(trajectory) - 1} steps")
    return fig


def plot_diffusion_view(points: Any, labels: Any, model: Any, diffusion: Any, t: int = 5, seed: int = 0,
                        sampling_noise: bool = False, lim: float = 3.0):
    """DiffCL's view of ``points`` at depth ``t``: noised ``x_t`` (left) and denoised view (right).

    Introduced in notebook 04 (the diffusion-view widget). ``t`` is the number of forward steps
    (0 = no change); the view is the reverse chain of ``model`` from ``x_t`` back to step 0, as in
    :meth:`~diffcl_lite.diffusion.GaussianDiffusion.generate_view`, with the forward noise drawn from
    ``seed``. Titles give the mean distance of each cloud to the nearest clean point (how far it
    left the data) and to its own ``x_0``. Returns the figure.
    """
    import matplotlib.pyplot as plt

    from .diffusion import noisy_snapshots

    t = int(min(max(int(t), 0), diffusion.steps))
    x0 = torch.as_tensor(_np(points))
    x_t = noisy_snapshots(x0, diffusion, [t], seed=seed)[0]
    with torch.no_grad():
        gen = torch.Generator().manual_seed(int(seed) + 1)
        view = diffusion.p_sample_loop(model, x_t, steps=t, noise=sampling_noise, generator=gen)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    basis = None if x0.shape[1] == 2 else pca_basis(x0)
    ref = _coords_2d(x0, basis)
    for ax, x, name in ((axes[0], x_t, f"noised $x_t$, t = {t}"), (axes[1], view, f"diffusion view (denoised from t = {t})")):
        xy = _coords_2d(x, basis)
        off_data = float(torch.cdist(x.float(), x0.float()).min(dim=1).values.mean())
        own = float((x - x0).norm(dim=1).mean())
        ax.scatter(ref[:, 0], ref[:, 1], s=4, color="0.82", linewidths=0)
        scatter_by_label(ax, xy, labels, s=6)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(f"{name}\ndistance to nearest clean point {off_data:.3f}, to own $x_0$ {own:.3f}", fontsize=9.5)
    fig.suptitle(f"{diffusion.schedule.kind} schedule, T = {diffusion.steps}  (grey: clean data)")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Notebooks 05 and 06: contrastive views and modality alignment
# ---------------------------------------------------------------------------------------------
def infonce_temperature_curves(z1: Any, z2: Any, taus: Sequence[float]) -> dict[str, np.ndarray]:
    """How the temperature reshapes InfoNCE's softmax, averaged over anchors, for each ``tau`` in ``taus``.

    Introduced in notebook 05. Keys: ``"tau"``; ``"p_positive"``, the mean probability of the
    positive (the diagonal of :func:`diffcl_lite.losses.infonce_weights`); ``"loss"``, InfoNCE;
    ``"effective_negatives"``, the mean over anchors of ``1 / Σ_j q_ij²`` where ``q`` is the
    softmax restricted to the negatives and renormalised: B - 1 when all negatives are pushed
    equally, 1 when one hard negative takes all the push.
    """
    from .losses import info_nce, infonce_weights

    a, b = torch.as_tensor(_np(z1)), torch.as_tensor(_np(z2))
    n = len(a)
    off = ~torch.eye(n, dtype=torch.bool)
    out: dict[str, list[float]] = {"tau": [], "p_positive": [], "loss": [], "effective_negatives": []}
    for tau in taus:
        p = infonce_weights(a, b, float(tau)).double()
        neg = p[off].reshape(n, n - 1)
        q = neg / neg.sum(1, keepdim=True)
        out["tau"].append(float(tau))
        out["p_positive"].append(float(p.diagonal().mean()))
        out["loss"].append(float(info_nce(a, b, float(tau))))
        out["effective_negatives"].append(float((1.0 / q.pow(2).sum(1)).mean()))
    return {k: np.asarray(v) for k, v in out.items()}


def plot_infonce_temperature(z1: Any, z2: Any, temperature: float = 0.2, anchor: int = 0, n_show: int = 40,
                             taus: Sequence[float] | None = None, labels: Any = None):
    """Left: the softmax InfoNCE puts over one anchor's candidates at ``temperature``; right: averages over τ.

    Introduced in notebook 05 (temperature widget). Candidates are sorted by cosine similarity with
    the anchor (the positive in red; with ``labels``, negatives of the anchor's own topic in orange).
    The right panel shows :func:`infonce_temperature_curves` with the chosen temperature marked.
    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    from .losses import infonce_weights

    a, b = torch.as_tensor(_np(z1)), torch.as_tensor(_np(z2))
    n = len(a)
    anchor = int(anchor)
    if not 0 <= anchor < n:
        raise DiffCLError(f"plot_infonce_temperature: anchor={anchor} must lie in 0..{n - 1}.")
    p = infonce_weights(a, b, float(temperature))[anchor].numpy()
    cos = (torch.nn.functional.normalize(a[anchor], dim=0) @ torch.nn.functional.normalize(b, dim=1).T).numpy()
    order = np.argsort(-cos)[: max(2, min(int(n_show), n))]
    if anchor not in order:
        order = np.append(order[:-1], anchor)
    taus = np.geomspace(0.02, 2.0, 40) if taus is None else np.asarray(taus, dtype=float)
    curves = infonce_temperature_curves(a, b, np.unique(np.append(taus, float(temperature))))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 3.9), gridspec_kw={"width_ratios": [1.3, 1]})
    lab = None if labels is None else np.asarray(labels)
    same = np.zeros(n, dtype=bool) if lab is None else (lab == lab[anchor])
    colors = ["tab:red" if j == anchor else ("tab:orange" if same[j] else "tab:blue") for j in order]
    ax.bar(np.arange(len(order)), p[order], color=colors)
    ax.set_xticks(np.arange(len(order))[::5], [f"{cos[j]:.2f}" for j in order][::5], fontsize=8)
    ax.set_xlabel("candidates, most similar first (tick label: cosine with the anchor)")
    ax.set_ylabel("softmax weight $p_{ij}$")
    ax.set_ylim(0, 1.0)
    ax.plot([], [], "s", color="tab:red", label=f"positive: p = {p[anchor]:.3f}")
    if lab is not None:
        share = float(p[same & (np.arange(n) != anchor)].sum())
        ax.plot([], [], "s", color="tab:orange", label=f"same-topic negatives: total p = {share:.3f}")
        ax.plot([], [], "s", color="tab:blue", label="other negatives (pushed away ∝ p)")
    else:
        ax.plot([], [], "s", color="tab:blue", label="negatives (pushed away ∝ p)")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(f"anchor {anchor}, τ = {float(temperature):.3g}: where the softmax puts its mass")
    ax2.semilogx(curves["tau"], curves["p_positive"], "-", color="tab:red", label="mean p(positive)")
    ax2.semilogx(curves["tau"], curves["effective_negatives"] / (n - 1), "-", color="tab:blue",
                 label="effective negatives / (B − 1)")
    ax2.set_xlabel("temperature τ (log scale)")
    ax2.set_ylabel("share")
    ax2.set_ylim(0, 1.05)
    ax3 = ax2.twinx()
    ax3.semilogx(curves["tau"], curves["loss"], "--", color="grey", label="InfoNCE loss (right axis)")
    ax3.set_ylabel("InfoNCE loss")
    ax3.grid(False)
    ax2.axvline(float(temperature), color="k", lw=0.8)
    h1, l1 = ax2.get_legend_handles_labels()
    h2, l2 = ax3.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, fontsize=8, loc="center left")
    ax2.set_title(f"averaged over all {n} anchors")
    fig.tight_layout()
    return fig


def plot_view_maps(x0: Any, views: dict[str, Any], labels: Any, highlight: Any = None, k: int = 10,
                   highlight_label: str = "noisy image", title: str = ""):
    """The original embeddings and their views in ONE 2-D PCA frame (fitted on the unit rows of ``x0``).

    Introduced in notebook 05. Rows are L2-normalised first (InfoNCE only sees directions), so a
    view that keeps the topic structure shows the same clusters. Each panel title gives
    :func:`diffcl_lite.views.topic_purity` (all rows, and the ``highlight`` rows, drawn as black
    crosses). Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    from .views import topic_purity

    def unit(v: Any) -> np.ndarray:
        a = _np(v).astype(np.float64)
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    base = unit(x0)
    mean = base.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(base - mean, full_matrices=False)
    comps = vt[:2] * np.sign(vt[np.arange(2), np.abs(vt[:2]).argmax(1)])[:, None]
    panels = {"original $x_0$": x0, **views}
    lab = np.asarray(labels)
    hl = None if highlight is None else np.asarray(highlight, dtype=bool)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    coords_all = [(unit(v) - mean) @ comps.T for v in panels.values()]
    lim = np.abs(np.concatenate(coords_all)).max() * 1.05
    for ax, (name, v), xy in zip(axes[0], panels.items(), coords_all):
        scatter_2d(xy, lab, ax=ax, legend=(ax is axes[0][0]))
        t = f"{name}\npurity {topic_purity(torch.as_tensor(_np(v)), lab, k=k):.3f}"
        if hl is not None and hl.any():
            ax.scatter(xy[hl, 0], xy[hl, 1], marker="x", color="black", s=16, linewidths=0.8,
                       label=highlight_label if ax is axes[0][-1] else None)
            t += f", {highlight_label} {topic_purity(torch.as_tensor(_np(v)), lab, k=k, mask=hl):.3f}"
        ax.set_title(t, fontsize=9.5)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_xlabel("PC 1 of $x_0$")
        ax.set_ylabel("PC 2 of $x_0$")
    if hl is not None and hl.any():
        axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.suptitle(title or f"unit vectors in the PCA frame of $x_0$ (purity: share of the {k} nearest neighbours with the same topic)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def plot_view_sweep(rows: Sequence[dict[str, Any]], groups: Sequence[str] = ("all",)):
    """Diffusion vs random views across noise levels (rows of :func:`diffcl_lite.views.view_noise_sweep`).

    Introduced in notebook 05. x axis: the views' angular deviation from ``x0``. Panels: topic
    purity per group (solid ``groups[0]``, dashed the others), alignment (lower = the two views
    agree), uniformity (lower = more spread). Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    kinds = {"diffusion": "tab:purple", "random": "tab:orange"}
    styles = ["-o", "--s", ":^", "-.v"]
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.8))
    for kind, color in kinds.items():
        rs = sorted((r for r in rows if r.get("kind") == kind), key=lambda r: r["deviation"])
        if not rs:
            continue
        x = [r["deviation"] for r in rs]
        for g, st in zip(groups, styles):
            axes[0].plot(x, [r[f"purity[{g}]"] for r in rs], st, color=color, ms=4, label=f"{kind}: {g}")
        axes[1].plot(x, [r["alignment"] for r in rs], "-o", color=color, ms=4, label=kind)
        axes[2].plot(x, [r["uniformity"] for r in rs], "-o", color=color, ms=4, label=kind)
        if kind == "diffusion":
            for r in rs:
                axes[1].annotate(f"{r['noise_scale']:g}", (r["deviation"], r["alignment"]), fontsize=7,
                                 xytext=(3, 3), textcoords="offset points", color=color)
    axes[0].set_ylabel("topic purity of the view")
    axes[0].set_title("does the view keep the topics?")
    pur = [r[f"purity[{g}]"] for r in rows for g in groups if np.isfinite(r.get(f"purity[{g}]", np.nan))]
    axes[0].set_ylim(max(0.0, min(pur, default=0.0) - 0.05), 1.01)
    axes[1].set_ylabel("alignment $\\mathbb{E}\\,\\|\\hat z' - \\hat z''\\|^2$")
    axes[1].set_title("do the two views agree? (lower = closer;\nlabels: diffusion noise scale)")
    axes[2].set_ylabel("uniformity $\\log \\mathbb{E}\\, e^{-2\\|\\hat z_i - \\hat z_j\\|^2}$")
    axes[2].set_title("are the views spread out? (lower = more)")
    for ax in axes:
        ax.set_xlabel("angular deviation of a view from $x_0$")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def joint_embed_2d(views: dict[str, Any], method: str = "auto", seed: int = 0, n_neighbors: int = 15,
                   normalize: bool = True) -> dict[str, np.ndarray]:
    """Map several views of the same nodes into ONE 2-D space with :func:`embed_2d`; returns ``{view: (n, 2)}``.

    Introduced in notebook 06. The rows of all views are stacked (L2-normalised first when
    ``normalize``, as the alignment losses see them), mapped together (UMAP in full mode, PCA in
    fast mode with ``method="auto"``) and split back, so distances between an item's image, text
    and ID points are comparable.
    """
    names = list(views)
    mats = [_np(views[v]).astype(np.float32) for v in names]
    sizes = {m.shape[0] for m in mats}
    if len(sizes) != 1:
        raise DiffCLError(f"joint_embed_2d: the views have different numbers of rows {sorted(sizes)}; give the same nodes.")
    if normalize:
        mats = [m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12) for m in mats]
    xy = embed_2d(np.concatenate(mats), method=method, n_neighbors=n_neighbors, seed=seed)
    n = mats[0].shape[0]
    return {v: xy[i * n : (i + 1) * n] for i, v in enumerate(names)}


def plot_modality_links(coords: dict[str, np.ndarray], labels: Any, sample: Sequence[int], ax=None, title: str = "",
                        show_all: bool = True, legend: bool = True):
    """One panel: each view's points (marker per view) and, for the ``sample`` items, lines joining their views.

    Introduced in notebook 06. ``coords`` is the output of :func:`joint_embed_2d`. Lines are
    coloured by the item's topic: short lines = the item's image, text and ID vectors sit together.
    Returns the axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 5))
    lab = np.asarray(labels)
    cmap = plt.get_cmap("tab10")
    markers = ["o", "s", "^", "D", "v"]
    names = list(coords)
    sample = np.asarray(sample, dtype=int)
    for v, mk in zip(names, markers):
        xy = coords[v]
        if show_all:
            ax.scatter(xy[:, 0], xy[:, 1], c=[cmap(int(c) % 10) for c in lab], s=4, alpha=0.15, marker=mk, linewidths=0)
        ax.scatter(xy[sample, 0], xy[sample, 1], c=[cmap(int(c) % 10) for c in lab[sample]], s=26, marker=mk,
                   edgecolors="k", linewidths=0.4)
        # legend proxy in grey: the colour of a point is its topic, the marker its view
        ax.scatter([], [], c="lightgrey", s=26, marker=mk, edgecolors="k", linewidths=0.4, label=v)
    for i in sample:
        pts = np.array([coords[v][i] for v in names] + [coords[names[0]][i]])
        ax.plot(pts[:, 0], pts[:, 1], "-", color=cmap(int(lab[i]) % 10), lw=0.8, alpha=0.8)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if legend:
        ax.legend(fontsize=8, loc="best", title="view", title_fontsize=8)
    return ax


def link_lengths(coords: dict[str, np.ndarray], anchor: str = "id") -> dict[str, float]:
    """Median 2-D distance between each view's point and the anchor view's point of the same item.

    Introduced in notebook 06; relative to the median distance between random pairs of points of
    the whole map (all views stacked; 1.0 = no closer than two random points), so maps with
    different scales compare.
    """
    if anchor not in coords:
        raise DiffCLError(f"link_lengths: anchor view {anchor!r} is not among {sorted(coords)}.")
    a = coords[anchor]
    pts = np.concatenate([np.asarray(v) for v in coords.values()])
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(pts), size=(2, 20000))
    keep = i != j
    ref = float(np.median(np.linalg.norm(pts[i[keep]] - pts[j[keep]], axis=1))) or 1.0
    return {v: float(np.median(np.linalg.norm(xy - a, axis=1))) / ref for v, xy in coords.items() if v != anchor}


def plot_alignment_maps(maps: dict[str, dict[str, np.ndarray]], labels: Any, n_links: int = 30, seed: int = 0,
                        show_all: bool = True):
    """One :func:`plot_modality_links` panel per trained variant (``maps``: variant → coords), same sampled items.

    Introduced in notebook 06 (before/after alignment, and the widget). The panel title gives the
    :func:`link_lengths` of each modality. Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    n = len(np.asarray(labels))
    n_links = int(max(0, min(int(n_links), n)))
    sample = np.sort(np.random.default_rng(int(seed)).choice(n, size=n_links, replace=False))
    fig, axes = plt.subplots(1, len(maps), figsize=(5.2 * len(maps), 5.0), squeeze=False)
    for k, (ax, (name, coords)) in enumerate(zip(axes[0], maps.items())):
        ll = link_lengths(coords)
        sub = ", ".join(f"{v}–id {d:.2f}" for v, d in ll.items())
        plot_modality_links(coords, labels, sample, ax=ax, title=f"{name}\nrelative link length: {sub}",
                            show_all=show_all, legend=(k == 0))
    fig.suptitle(f"image, text and ID vectors of {n_links} items (lines join an item's three points; colour = topic)",
                 fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Notebooks 07 and 08: embedding atlas, ablation table and learning curves
# ---------------------------------------------------------------------------------------------
def purity_per_point(x: Any, labels: Sequence[Any], k: int = 10) -> np.ndarray:
    """For every point, the share of its ``k`` nearest neighbours (cosine, itself excluded) with its label.

    Introduced in notebook 07 (embedding atlas). The mean over points is
    :func:`neighbourhood_purity`; averaging over a subset (e.g. items with a noisy image) tells
    how well that group is placed. Returns a float array of shape ``(n,)``.
    """
    lab = np.asarray(labels)
    n = len(_np(x))
    if len(lab) != n:
        raise DiffCLError(f"purity_per_point: {len(lab)} labels for {n} points; pass one label per row of x.")
    idx, _ = knn_for_umap(x, k + 1)
    # purity_i = 1/k Σ_{j ∈ N_k(i)} [y_j = y_i]
    return (lab[idx[:, 1:]] == lab[:, None]).mean(1)


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


def _metric_of(result: Any, metric: str, split: str = "test") -> float:
    values = getattr(result, split) if hasattr(result, split) else result[split]
    if metric not in values:
        raise DiffCLError(f"metric {metric!r} is not in the {split} results; known: {sorted(values)}.")
    return float(values[metric])


def plot_ablation(rows: Sequence[tuple[str, Any]], metric: str = "recall@20", split: str = "test",
                  reference: str | None = None, ax=None):
    """Horizontal bars of one metric per variant of an ablation table (rows of ``run_ablation``).

    Introduced in notebook 08 (full training). DiffCL variants are blue, the baselines (LightGCN,
    MF) grey; the dashed line marks ``reference`` (default: the first row). Returns the figure.
    """
    import matplotlib.pyplot as plt

    if not rows:
        raise DiffCLError("plot_ablation: no rows; pass the list returned by run_ablation.")
    labels = [label for label, _ in rows]
    vals = [_metric_of(r, metric, split) for _, r in rows]
    baselines = {"lightgcn", "mf", "mf-bpr"}
    colours = ["tab:grey" if lab.lower() in baselines else "tab:blue" for lab in labels]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    y = np.arange(len(rows))[::-1]
    ax.barh(y, vals, color=colours, alpha=0.85)
    for yi, v in zip(y, vals):
        ax.text(v, yi, f" {v:.4f}", va="center", fontsize=8)
    ref = labels[0] if reference is None else reference
    if ref in labels:
        ax.axvline(vals[labels.index(ref)], color="k", ls="--", lw=0.8)
    ax.set_yticks(y, labels)
    ax.set_xlabel(f"{split} {metric}")
    ax.set_xlim(0, max(vals) * 1.18 if max(vals) > 0 else 1)
    ax.set_title(f"{split} {metric} at the best valid epoch")
    ax.figure.tight_layout()
    return ax.figure


def plot_histories(histories: dict[str, list[dict[str, Any]]], key: str = "valid_recall@20", ax=None):
    """One metric of several runs' ``TrainResult.history`` on one axis (notebook 08's curve widget).

    Introduced in notebook 08 (full training). Runs without ``key`` are skipped. Returns the figure.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.8))
    drawn = 0
    for name, hist in histories.items():
        pts = [(h["epoch"], h[key]) for h in hist if key in h]
        if pts:
            ax.plot(*zip(*pts), marker=".", label=name)
            drawn += 1
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    ax.set_title(key if drawn else f"{key}: no run has it")
    if drawn:
        ax.legend(fontsize=8, loc="best")
    ax.figure.tight_layout()
    return ax.figure


def plot_selection(curve: list[dict[str, Any]] | dict[str, list[dict[str, Any]]], metric: str = "recall@20", ax=None):
    """Valid (dashed) and test (solid) curves per epoch, with the row each reporting rule picks.

    Introduced in notebook 08 (evaluation protocol): ``curve`` comes from
    :func:`diffcl_lite.experiments.valid_test_curves`, or is a dict ``{label: curve}`` of several
    runs (e.g. learning rates), one colour each; the selection is then over all runs. The square
    marks the test value at the best *valid* row (MMRec), the star the best *test* value (DiffMM's
    reporting). Returns the figure.
    """
    import matplotlib.pyplot as plt

    from .experiments import selection_summary

    curves = curve if isinstance(curve, dict) else {"": curve}
    rows = [r for c in curves.values() for r in c]
    summ = selection_summary(rows, metric)
    picked_valid, picked_test = rows[summ["valid_selected_index"]], rows[summ["best_test_index"]]
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4))
    for k, (label, c) in enumerate(curves.items()):
        colour = f"C{k}"
        ep = [r["epoch"] for r in c]
        name = f"{label}: " if label else ""
        ax.plot(ep, [r[f"valid_{metric}"] for r in c], "--", color=colour, lw=1.2, label=f"{name}valid")
        ax.plot(ep, [r[f"test_{metric}"] for r in c], "-", color=colour, lw=1.6, label=f"{name}test")
    ax.plot([picked_valid["epoch"]], [summ["valid_selected_test"]], "s", ms=10, mfc="none", mec="k", mew=1.5,
            label=f"test at best valid ({summ['valid_selected_test']:.4f})")
    ax.plot([picked_test["epoch"]], [summ["best_test"]], "*", ms=14, color="tab:red",
            label=f"best test ({summ['best_test']:.4f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7.5, loc="lower right", ncol=2 if len(curves) > 1 else 1)
    ax.set_title("which epoch gets reported?")
    ax.figure.tight_layout()
    return ax.figure
