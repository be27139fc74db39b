"""Figures of notebooks 03 and 04 (forward and reverse diffusion): schedules, noising, trajectories, views.

Pure functions of their arguments; the widgets redraw them.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch

from ...errors import DiffCLError
from .common import _coords_2d, _np, pca_basis, scatter_by_label

log = logging.getLogger(__name__)

__all__ = [
    "plot_schedules", "plot_forward_snapshots", "plot_forward_noising", "plot_reverse_trajectories",
    "plot_diffusion_view",
]


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

    from ..measures.diffusion import noisy_snapshots

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

    from ...diffusion import GaussianDiffusion, make_schedule
    from ..measures.diffusion import noisy_snapshots

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
                              show_start: bool = True, start_label: str = "start $x_T$", mark_paths: bool = False):
    """A reverse chain ``[x_T, ..., x_0]`` (``p_sample_loop(..., return_trajectory=True)``) drawn in 2-D.

    Introduced in notebook 04 (reverse diffusion). Grey dots: ``reference`` (the clean data, when
    given); small black crosses: the start ``x_T`` (``show_start``, legend ``start_label``); coloured
    dots: the end ``x_0``; thin lines:
    ``n_paths`` evenly spaced points' paths, with ``mark_paths`` each with its start (open circle)
    and end (black square) marked (keep ``n_paths`` near 10 where the paths are noisy). Embeddings (``d > 2``) are projected on the principal
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
    traced = np.unique(np.linspace(0, n - 1, min(int(n_paths), n)).astype(int))
    for k, i in enumerate(traced):
        # with mark_paths each traced path gets its own colour, so ten noisy paths can be told apart
        colour = plt.get_cmap("tab10")(k % 10) if mark_paths else "k"
        ax.plot(path[:, i, 0], path[:, i, 1], "-", color=colour, lw=0.8 if mark_paths else 0.6,
                alpha=0.8 if mark_paths else 0.45)
    scatter_by_label(ax, path[-1], labels, s=6, label_name=label_name)
    if mark_paths and len(traced):
        # the traced paths' own start (open circle) and end (filled square), so each path can be followed
        ax.scatter(path[0, traced, 0], path[0, traced, 1], s=22, facecolors="none", edgecolors="k", linewidths=0.8,
                   zorder=4, label=f"{len(traced)} traced paths: start")
        ax.scatter(path[-1, traced, 0], path[-1, traced, 1], s=18, marker="s", color="k", zorder=4,
                   label="traced paths: end")
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

    from ..measures.diffusion import noisy_snapshots

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
