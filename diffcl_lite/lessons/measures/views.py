"""What the lessons measure on contrastive views: topic purity, SimGCL views of matched magnitude, noise sweeps.

Introduced in notebook 05 (contrastive views); notebook 06 measures its views' purity with
:func:`topic_purity`. The views themselves (:class:`~diffcl_lite.views.DiffusionViews`,
:class:`~diffcl_lite.views.RandomNoiseViews`, the one SimGCL formula
:func:`~diffcl_lite.views.simgcl_perturb` and :func:`~diffcl_lite.views.angular_deviation`) are
the method's, in :mod:`diffcl_lite.views`; nothing here is used to train a model.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ...errors import DiffCLError
from ...graphs import knn_indices
from ...losses import alignment, info_nce, uniformity
from ...utils import to_numpy
from ...views import DiffusionViews, angular_deviation, simgcl_perturb
from .diffusion import fit_denoiser
from .graphs import neighbour_topic_agreement

__all__ = ["matched_random_views", "topic_purity", "compare_views", "view_noise_sweep"]


@torch.no_grad()
def matched_random_views(
    x0: torch.Tensor, target: float, seed: int = 0, iters: int = 40, clip: bool = False
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Two SimGCL views of ``x0`` whose first view has mean angular deviation ``target``; returns ``(z1, z2, eps)``.

    Introduced in notebook 05: "random noise of the same magnitude" as a diffusion view. ``eps``
    is found by bisection with one fixed uniform draw (from ``seed``), so the result is
    deterministic. SimGCL's noise stays in the orthant of ``x`` (``sign(x)``), so it can never turn
    a vector by 90 degrees: a ``target`` beyond the reachable deviation raises, or with ``clip=True``
    gives the views at the largest ``eps`` tried (deviation below the target).
    """
    gen = torch.Generator(device=x0.device).manual_seed(int(seed))
    u1 = torch.rand(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
    u2 = torch.rand(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
    scale = float(x0.norm(dim=-1).mean()) or 1.0
    lo, hi = 0.0, 1e3 * scale
    if angular_deviation(simgcl_perturb(x0, u1, hi), x0) < target:
        if clip:
            return simgcl_perturb(x0, u1, hi), simgcl_perturb(x0, u2, hi), hi
        raise DiffCLError(f"matched_random_views: target={target} is beyond what SimGCL noise reaches; use a smaller "
                          "target (or clip=True).")
    for _ in range(int(iters)):
        mid = (lo + hi) / 2
        if angular_deviation(simgcl_perturb(x0, u1, mid), x0) < target:
            lo = mid
        else:
            hi = mid
    eps = (lo + hi) / 2
    return simgcl_perturb(x0, u1, eps), simgcl_perturb(x0, u2, eps), eps


def topic_purity(x: Any, labels: Any, k: int = 10, mask: Any = None) -> float:
    """Share of the ``k`` cosine nearest neighbours (among ALL rows of ``x``) that share the row's label.

    Introduced in notebook 05. The neighbours come from :func:`diffcl_lite.graphs.knn_indices`
    (self excluded, exact float64 re-ranking, ties by id) and are scored by
    :func:`~diffcl_lite.lessons.measures.graphs.neighbour_topic_agreement`, the one kNN purity.
    ``mask`` (boolean, one per row) restricts the average to some rows (e.g. the items with a
    noisy image), while their neighbours are still searched among all rows; ``nan`` for an empty mask.
    Rounded to 6 significant digits.
    """
    idx, lab = _neighbours(x, labels, k)
    return neighbour_topic_agreement(idx, lab, rows=None if mask is None else np.asarray(mask, bool))


def _neighbours(x: Any, labels: Any, k: int) -> tuple[torch.Tensor, np.ndarray]:
    """``(the k cosine neighbours of every row of x, the labels as an array)``, checked."""
    xt = torch.as_tensor(to_numpy(x), dtype=torch.float32)
    lab = to_numpy(labels)
    n = len(xt)
    if lab.shape != (n,):
        raise DiffCLError(f"topic_purity: labels has shape {tuple(lab.shape)}, expected ({n},) (one label per row of x).")
    if not 1 <= k < n:
        raise DiffCLError(f"topic_purity: k={k} must lie in 1..{n - 1} (the number of rows minus one).")
    return knn_indices(xt, k=k)[0], lab


@torch.no_grad()
def compare_views(
    x0: torch.Tensor, views: dict[str, tuple[torch.Tensor, torch.Tensor]], labels, groups: dict | None = None,
    k: int = 10, temperature: float = 0.2,
) -> list[dict]:
    """One row of measures per named pair of views ``(z1, z2)`` of ``x0``.

    Introduced in notebook 05. Columns: ``view``, ``deviation`` (:func:`angular_deviation` of
    ``z1``), ``purity[<group>]`` (:func:`topic_purity` of ``z1`` for each boolean mask in
    ``groups``; ``"all"`` when ``groups`` is None), ``alignment`` and ``uniformity`` (Wang & Isola,
    from :mod:`diffcl_lite.losses`) and ``infonce`` (the contrastive loss of the pair).
    """
    groups = groups if groups is not None else {"all": None}
    out = []
    for name, (z1, z2) in views.items():
        row = {"view": name, "deviation": angular_deviation(z1, x0)}
        idx, lab = _neighbours(z1, labels, k)  # one kNN search per view, scored per group (= topic_purity)
        for g, mask in groups.items():
            row[f"purity[{g}]"] = neighbour_topic_agreement(idx, lab, rows=None if mask is None else np.asarray(mask, bool))
        row["alignment"] = float(alignment(z1, z2))
        row["uniformity"] = float(uniformity(z1))
        row["infonce"] = float(info_nce(z1, z2, temperature))
        out.append(row)
    return out


def view_noise_sweep(
    x0: torch.Tensor, labels, noise_scales, groups: dict | None = None, denoiser_steps: int = 300,
    hidden: int = 128, k: int = 10, seed: int = 0, **diffusion_kwargs,
) -> list[dict]:
    """Diffusion views vs SimGCL views of the same angular magnitude, for several diffusion noise scales.

    Introduced in notebook 05. For each ``noise_scale``: a fresh :class:`DiffusionViews` (DiffMM's
    linear-variance schedule, 5 steps unless ``diffusion_kwargs`` say otherwise) whose denoiser is
    fitted on ``x0`` with :func:`~diffcl_lite.lessons.measures.diffusion.fit_denoiser` (``denoiser_steps`` Adam steps,
    single-threaded, seeded), two views from seeded forward noise, then SimGCL views matched to the
    diffusion view's :func:`angular_deviation` (:func:`matched_random_views`, clipped where SimGCL
    cannot reach it: compare the ``deviation`` columns). Returns the rows of
    :func:`compare_views` with ``kind`` ("diffusion"/"random"), ``noise_scale``, ``abar_T`` and
    ``eps`` added. Re-seeds torch's global generator with ``seed`` (the denoisers' initialisation).
    """
    rows = []
    x0 = x0.detach()
    for scale in noise_scales:
        torch.manual_seed(int(seed))
        gen = DiffusionViews(x0.shape[1], noise_scale=float(scale), hidden=hidden, **diffusion_kwargs).to(x0.device)
        fit_denoiser(gen.denoiser, gen.diffusion, x0, steps=int(denoiser_steps), seed=int(seed))
        gen.eval()
        g = torch.Generator(device=x0.device).manual_seed(int(seed) + 1)
        with torch.no_grad():
            d1 = gen.diffusion.generate_view(gen.denoiser, x0, steps=gen.view_steps, noise=gen.sampling_noise, generator=g)
            d2 = gen.diffusion.generate_view(gen.denoiser, x0, steps=gen.view_steps, noise=gen.sampling_noise, generator=g)
        r1, r2, eps = matched_random_views(x0, angular_deviation(d1, x0), seed=int(seed) + 2, clip=True)
        abar = float(gen.diffusion.schedule.alphas_cumprod[gen.view_steps - 1])
        for kind, pair in (("diffusion", (d1, d2)), ("random", (r1, r2))):
            row = compare_views(x0, {kind: pair}, labels, groups, k=k)[0]
            row.update({"kind": kind, "noise_scale": float(scale), "abar_T": abar, "eps": eps if kind == "random" else float("nan")})
            rows.append(row)
    return rows
