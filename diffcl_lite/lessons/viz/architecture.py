"""DiffCL's architecture as a diagram drawn by code (boxes and arrows, matplotlib).

Introduced in notebook 00 (welcome) and shown in the README (``figures/00_architecture.png``).
The boxes follow :class:`~diffcl_lite.model.DiffCL`: the user-item graph feeds a LightGCN
encoder of the ID embeddings; each modality's features give an item-item kNN graph and a
modality view; forward noise and the denoiser turn an embedding into two views contrasted by
InfoNCE; the modality views are aligned to the (stop-gradient) ID embeddings; BPR ranks.
"""
from __future__ import annotations

from typing import Any

__all__ = ["ARCHITECTURE_BOXES", "ARCHITECTURE_ARROWS", "plot_architecture"]

#: name -> (x, y, width, height, text, colour group); unit square coordinates of the figure
ARCHITECTURE_BOXES: dict[str, tuple[float, float, float, float, str, str]] = {
    "ui_graph": (0.02, 0.70, 0.17, 0.16, "user-item graph\n(train interactions)", "data"),
    "features": (0.02, 0.30, 0.17, 0.16, "modality features\n(image, text, audio)", "data"),
    "lightgcn": (0.25, 0.70, 0.17, 0.16, "LightGCN encoder\nID embeddings $e_u, e_i$", "encoder"),
    "knn": (0.25, 0.30, 0.17, 0.16, "item-item kNN graph\n(frozen, k = 10)", "encoder"),
    "modal": (0.25, 0.06, 0.17, 0.14, "modality views\n$h^m$ (projected, propagated)", "encoder"),
    "noise": (0.48, 0.50, 0.14, 0.14, "forward noise\n$x_t = \\sqrt{\\bar\\alpha_t}x_0 + \\sqrt{1-\\bar\\alpha_t}\\epsilon$", "diffusion"),
    "denoiser": (0.66, 0.50, 0.12, 0.14, "denoiser\n$f_\\theta(x_t, t)$", "diffusion"),
    "views": (0.82, 0.50, 0.16, 0.14, "two views\n$z', z''$", "diffusion"),
    "infonce": (0.82, 0.29, 0.16, 0.12, "InfoNCE\n$\\lambda_{cl}$", "loss"),
    "align": (0.48, 0.10, 0.20, 0.13, "ID-anchored alignment\n$h^m \\to$ sg$(e)$, $\\lambda_{align}$", "loss"),
    "bpr": (0.76, 0.74, 0.18, 0.12, "BPR ranking loss\n$\\hat y_{ui} = e_u \\cdot e_i$", "loss"),
    "total": (0.80, 0.06, 0.18, 0.13, "total loss\n+ $\\lambda_{diff}$ (denoiser), $\\lambda_{reg}$", "loss"),
}
#: (from, to, label); the label "curve" draws the arrow around the right side, without a label
ARCHITECTURE_ARROWS: tuple[tuple[str, str, str], ...] = (
    ("ui_graph", "lightgcn", ""),
    ("features", "knn", "cosine kNN"),
    ("features", "modal", ""),
    ("knn", "lightgcn", "FREEDOM: propagate ID items"),
    ("knn", "modal", ""),
    ("lightgcn", "noise", "$x_0$"),
    ("modal", "noise", ""),
    ("noise", "denoiser", ""),
    ("denoiser", "views", "reverse steps"),
    ("views", "infonce", ""),
    ("modal", "align", ""),
    ("lightgcn", "align", "stop-gradient"),
    ("lightgcn", "bpr", ""),
    ("bpr", "total", "curve"),
    ("infonce", "total", ""),
    ("align", "total", ""),
)
_COLOURS = {"data": "#dbe9f6", "encoder": "#e3f1de", "diffusion": "#fde8d0", "loss": "#f3dcec"}


def _anchor(box: tuple[float, float, float, float, str, str], towards: tuple[float, float]) -> tuple[float, float]:
    """The point on the border of ``box`` on the segment from its centre to ``towards``."""
    x, y, w, h = box[:4]
    cx, cy = x + w / 2, y + h / 2
    dx, dy = towards[0] - cx, towards[1] - cy
    if dx == 0 and dy == 0:
        return cx, cy
    # the smallest scale t with |t dx| = w/2 or |t dy| = h/2
    t = min((w / 2) / abs(dx) if dx else float("inf"), (h / 2) / abs(dy) if dy else float("inf"))
    return cx + t * dx, cy + t * dy


def plot_architecture(figsize: tuple[float, float] = (13.0, 6.0)) -> Any:
    """DiffCL's architecture: data (blue), encoders (green), diffusion views (orange), losses (pink).

    Returns the matplotlib figure (one axis, no ticks). Pure function of its argument.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig, ax = plt.subplots(figsize=figsize)
    ax.set_xlim(0, 1.06)
    ax.set_ylim(0, 0.92)
    ax.axis("off")
    for name, (x, y, w, h, text, group) in ARCHITECTURE_BOXES.items():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.005,rounding_size=0.012",
                                    facecolor=_COLOURS[group], edgecolor="#555555", linewidth=1.2))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)
    for src, dst, label in ARCHITECTURE_ARROWS:
        a, b = ARCHITECTURE_BOXES[src], ARCHITECTURE_BOXES[dst]
        ca, cb = (a[0] + a[2] / 2, a[1] + a[3] / 2), (b[0] + b[2] / 2, b[1] + b[3] / 2)
        style = "arc3"
        if label == "curve":  # around the right side of the figure, from right edge to right edge
            p, q, style, label = (a[0] + a[2], ca[1]), (b[0] + b[2], cb[1]), "arc3,rad=-0.35", ""
        else:
            p, q = _anchor(a, cb), _anchor(b, ca)
        ax.add_patch(FancyArrowPatch(p, q, arrowstyle="-|>", mutation_scale=12, color="#333333", linewidth=1.0,
                                     shrinkA=2, shrinkB=2, connectionstyle=style))
        if label:
            ax.text((p[0] + q[0]) / 2, (p[1] + q[1]) / 2 + 0.012, label, ha="center", va="bottom", fontsize=7.5,
                    color="#333333", bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=0.5))
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="#555555") for c in _COLOURS.values()]
    ax.legend(handles, ["data", "encoders", "diffusion views", "losses"], loc="upper center", ncol=4, frameon=False,
              bbox_to_anchor=(0.5, 0.99), fontsize=9)
    ax.set_title("DiffCL: diffusion views for contrastive learning on a multimodal user-item graph", fontsize=11, y=1.02)
    fig.tight_layout()
    return fig
