"""Figures of notebooks 05 and 06: InfoNCE temperature, contrastive view maps, modality alignment maps."""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch

from ...errors import DiffCLError
from .common import _np, embed_2d, pca_basis, pca_project, scatter_2d

log = logging.getLogger(__name__)

__all__ = [
    "infonce_temperature_curves", "plot_infonce_temperature", "plot_view_maps", "plot_view_sweep",
    "joint_embed_2d", "plot_modality_links", "link_lengths", "plot_alignment_maps",
]


def infonce_temperature_curves(z1: Any, z2: Any, taus: Sequence[float]) -> dict[str, np.ndarray]:
    """How the temperature reshapes InfoNCE's softmax, averaged over anchors, for each ``tau`` in ``taus``.

    Introduced in notebook 05. Keys: ``"tau"``; ``"p_positive"``, the mean probability of the
    positive (the diagonal of :func:`diffcl_lite.losses.infonce_weights`); ``"loss"``, InfoNCE;
    ``"effective_negatives"``, the mean over anchors of ``1 / Σ_j q_ij²`` where ``q`` is the
    softmax restricted to the negatives and renormalised: B - 1 when all negatives are pushed
    equally, 1 when one hard negative takes all the push.
    """
    from ...losses import info_nce, infonce_weights

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

    from ...losses import infonce_weights

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
    :func:`diffcl_lite.lessons.measures.views.topic_purity` (all rows, and the ``highlight`` rows, drawn as black
    crosses). Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    from ..measures.views import topic_purity

    def unit(v: Any) -> np.ndarray:
        a = _np(v).astype(np.float64)
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    basis = pca_basis(unit(x0))  # the PCA frame of x0's unit rows, shared by every panel
    panels = {"original $x_0$": x0, **views}
    lab = np.asarray(labels)
    hl = None if highlight is None else np.asarray(highlight, dtype=bool)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    coords_all = [pca_project(unit(v), basis) for v in panels.values()]
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
    """Diffusion vs random views across noise levels (rows of :func:`diffcl_lite.lessons.measures.views.view_noise_sweep`).

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


def plot_alignment_maps(maps: dict[str, dict[str, np.ndarray]], labels: Any, n_links: int = 10, seed: int = 0,
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
