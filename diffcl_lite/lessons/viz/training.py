"""Figures of notebook 08 (full training): learning curves, the ablation chart, model selection."""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from ...errors import DiffCLError

log = logging.getLogger(__name__)

__all__ = ["plot_history", "plot_ablation", "plot_histories", "plot_selection"]


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

    from ...experiments import selection_summary

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
