"""Figures of notebooks 01 and 02 (graphs): degrees, over-smoothing, topic agreement of kNN graphs.

Pure functions of their arguments; the widgets redraw them.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from ...errors import DiffCLError
from .common import _np

log = logging.getLogger(__name__)

__all__ = ["plot_degrees", "plot_oversmoothing", "plot_topic_agreement"]


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
    (:func:`diffcl_lite.lessons.measures.graphs.oversmoothing_curve`) of the layer output ``E^(L)`` and of LightGCN's
    mean readout; middle: topic separation (same-topic minus different-topic cosine) when
    ``labels`` are given; right: the distribution of pairwise cosines at ``L = n_layers``.
    The marker shows ``n_layers``. Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    from ...graphs import propagate_layers
    from ..measures.graphs import oversmoothing_curve

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
    :func:`diffcl_lite.lessons.measures.graphs.topic_agreement_sweep`. Right: the groups at ``image_weight``, with
    the statistics of that graph in the title. Chance level is ``sum_c p_c^2``. Returns the figure.
    """
    import matplotlib.pyplot as plt

    from ...graphs import item_item_graph
    from ..measures.graphs import graph_summary, topic_agreement_sweep

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
