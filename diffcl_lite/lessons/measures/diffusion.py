"""What the lessons measure on diffusion: snapshots and chains of the forward process, denoising errors.

Introduced in notebook 03 (forward diffusion: ``noisy_snapshots``, ``forward_chain``,
``chain_noise``), then notebook 04 (reverse diffusion: ``fit_denoiser``, ``denoise_error_by_t``,
``view_error_by_steps``). Step NUMBERS here are 1-based (``0`` = the clean ``x_0``, ``T`` =
``x_T``); the method's tensors index steps from 0 (:mod:`diffcl_lite.diffusion`). The model
trains its denoisers itself (:mod:`diffcl_lite.training`); nothing here is used to train it.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ...diffusion import GaussianDiffusion, _randn_like
from ...errors import DiffCLError

__all__ = ["noisy_snapshots", "forward_chain", "chain_noise", "denoise_error_by_t", "view_error_by_steps", "fit_denoiser"]


def _check_step_numbers(ts: list[int] | tuple[int, ...] | np.ndarray, steps: int, what: str = "ts") -> list[int]:
    out = [int(t) for t in np.atleast_1d(np.asarray(ts))]
    bad = [t for t in out if not 0 <= t <= steps]
    if bad:
        raise DiffCLError(
            f"{what}={bad} are outside 0..{steps}: {what} are step NUMBERS (0 = the clean x_0, {steps} = x_T)."
        )
    return out


def noisy_snapshots(
    x0: torch.Tensor, diffusion: GaussianDiffusion, ts: list[int] | tuple[int, ...], seed: int = 0,
    noise: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """``[x_t for t in ts]`` from the closed form, all with the SAME noise ``eps`` (one draw from ``seed``).

    Introduced in notebook 03 (forward diffusion). ``ts`` are 1-based step NUMBERS: ``0`` returns
    ``x_0`` itself, ``T`` returns ``x_T`` (the package's 0-based index is ``t - 1``). Sharing one
    ``eps`` makes a point move smoothly from ``x_0`` towards ``eps`` as ``t`` grows, which is what
    the figures and the ``t`` slider show.
    """
    steps = _check_step_numbers(ts, diffusion.steps)
    if noise is None:
        noise = _randn_like(x0, torch.Generator(device=x0.device).manual_seed(int(seed)))
    out = []
    for t in steps:
        # x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps   (x_0 itself for t = 0)
        out.append(x0.clone() if t == 0 else diffusion.q_sample(x0, t - 1, noise=noise))
    return out


def forward_chain(
    x0: torch.Tensor, diffusion: GaussianDiffusion, k: int | None = None, seed: int = 0,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Run ``k`` one-step transitions ``q(x_t | x_{t-1})`` (``q_step``); return ``([x_0..x_k], [eps_1..eps_k])``.

    Introduced in notebook 03 ("k small steps equal one closed-form jump"). ``eps_t`` is the noise
    drawn at step ``t`` (from a generator seeded with ``seed``); :func:`chain_noise` turns them into
    the single ``eps`` for which ``q_sample(x_0, k - 1, noise=eps)`` reproduces ``x_k``.
    """
    k = diffusion.steps if k is None else int(k)
    _check_step_numbers([k], diffusion.steps, "k")
    gen = torch.Generator(device=x0.device).manual_seed(int(seed))
    xs, noises = [x0], []
    for i in range(k):
        eps = _randn_like(x0, gen)
        # x_{t} = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps_t
        xs.append(diffusion.q_step(xs[-1], i, noise=eps))
        noises.append(eps)
    return xs, noises


def chain_noise(diffusion: GaussianDiffusion, noises: list[torch.Tensor]) -> torch.Tensor:
    """The single standard-normal ``eps`` equivalent to the step noises ``eps_1..eps_k`` of a chain.

    Introduced in notebook 03. Unrolling ``x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps_t`` gives
    ``x_k = sqrt(abar_k) x_0 + sum_j sqrt(beta_j abar_k / abar_j) eps_j``; the weights' squares sum
    to ``1 - abar_k`` (a telescoping sum), so ``eps = sum_j sqrt(beta_j abar_k / abar_j) eps_j /
    sqrt(1 - abar_k)`` is again ``N(0, I)`` and ``x_k = q_sample(x_0, k - 1, noise=eps)`` exactly.
    Computed in float64 from the schedule.
    """
    k = len(noises)
    if not 1 <= k <= diffusion.steps:
        raise DiffCLError(f"noises holds {k} step noises; give 1..{diffusion.steps} (one per forward step).")
    s = diffusion.schedule
    abar_k = s.alphas_cumprod[k - 1]
    total = torch.zeros_like(noises[0], dtype=torch.float64)
    for j, eps in enumerate(noises):
        # weight_j = sqrt(beta_j abar_k / abar_j)
        total = total + torch.sqrt(s.betas[j] * abar_k / s.alphas_cumprod[j]) * eps.double()
    # eps = sum_j weight_j eps_j / sqrt(1 - abar_k)
    return (total / torch.sqrt(1.0 - abar_k)).to(noises[0].dtype)


@contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """An ``nn.Module`` in eval mode for the block, its mode restored afterwards; any other callable as it is."""
    was_training = getattr(model, "training", None)
    if was_training is not None:
        model.eval()
    try:
        yield
    finally:
        if was_training is not None:
            model.train(was_training)


@torch.no_grad()
def denoise_error_by_t(
    model: nn.Module, diffusion: GaussianDiffusion, x0: torch.Tensor, seed: int = 0,
) -> dict[str, np.ndarray]:
    """Mean squared error per step ``t = 1..T`` of three guesses of ``x_0`` from ``x_t`` (same noise for all t).

    Introduced in notebook 04 (reverse diffusion). Keys (arrays of length ``T``):

    * ``"denoiser"``: ``mean (f(x_t, t) - x_0)^2``, what the trained denoiser achieves;
    * ``"noisy"``: ``mean (x_t - x_0)^2``, doing nothing;
    * ``"rescaled"``: ``mean (x_t / sqrt(abar_t) - x_0)^2 = (1 - abar_t) / abar_t`` on average,
      undoing the shrinking but not the noise (``1 / SNR(t)``).

    An ``nn.Module`` is put in eval mode for the measurement and its mode restored afterwards;
    any callable ``model(x_t, t)`` works.
    """
    with _eval_mode(model):
        gen = torch.Generator(device=x0.device).manual_seed(int(seed))
        eps = _randn_like(x0, gen)
        out: dict[str, list[float]] = {"denoiser": [], "noisy": [], "rescaled": []}
        for i in range(diffusion.steps):
            x_t = diffusion.q_sample(x0, i, noise=eps)
            t = torch.full((x0.shape[0],), i, dtype=torch.long, device=x0.device)
            out["denoiser"].append(float((model(x_t, t) - x0).pow(2).mean()))
            out["noisy"].append(float((x_t - x0).pow(2).mean()))
            # x_0 ~ x_t / sqrt(abar_t)
            out["rescaled"].append(float((x_t / diffusion.sqrt_alphas_cumprod[i] - x0).pow(2).mean()))
    return {k: np.asarray(v) for k, v in out.items()}


@torch.no_grad()
def view_error_by_steps(
    model: nn.Module, diffusion: GaussianDiffusion, x0: torch.Tensor, seed: int = 0, noise: bool = False,
) -> dict[str, np.ndarray]:
    """How far a diffusion view moves from ``x_0``, for view depths ``s = 0..T`` (arrays of length ``T + 1``).

    Introduced in notebook 04 (diffusion views). For each ``s``: ``"noisy"`` is ``mean (x_s - x_0)^2``
    (forward noise only) and ``"view"`` is ``mean (view_s - x_0)^2`` with ``view_s`` the output of
    the reverse chain from ``x_s`` (what :meth:`GaussianDiffusion.generate_view` returns). All depths
    share one forward noise ``eps`` drawn from ``seed``; ``noise=True`` adds sampling noise in the
    reverse steps (from the same seeded generator).
    """
    with _eval_mode(model):
        gen = torch.Generator(device=x0.device).manual_seed(int(seed))
        eps = _randn_like(x0, gen)
        noisy, view = [0.0], [0.0]
        for s in range(1, diffusion.steps + 1):
            x_s = diffusion.q_sample(x0, s - 1, noise=eps)
            z = diffusion.p_sample_loop(model, x_s, steps=s, noise=noise, generator=gen)
            noisy.append(float((x_s - x0).pow(2).mean()))
            view.append(float((z - x0).pow(2).mean()))
    return {"noisy": np.asarray(noisy), "view": np.asarray(view)}


def fit_denoiser(
    model: nn.Module, diffusion: GaussianDiffusion, x0: torch.Tensor, steps: int = 500, batch_size: int = 256,
    lr: float = 1e-3, seed: int = 0, snr_weighted: bool = False, threads: int | None = 1, progress: bool = False,
) -> list[float]:
    """Train ``model`` on the denoising loss of ``x0``'s rows; return the loss of every step.

    Introduced in notebook 04 (the training loop written out there, packaged): each step draws a
    batch of rows and timesteps ``t ~ U{1..T}`` and fresh noise from one generator seeded with
    ``seed``, computes :meth:`GaussianDiffusion.loss` and takes an Adam step. ``threads=1`` runs
    torch single-threaded during the loop (restored afterwards) so the losses are identical run to
    run and machine to machine; ``None`` leaves the thread count alone.
    """
    if int(steps) < 1 or int(batch_size) < 1:
        raise DiffCLError(f"fit_denoiser: steps={steps} and batch_size={batch_size} must both be >= 1.")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        gen = torch.Generator(device=x0.device).manual_seed(int(seed))
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        losses = []
        for _ in tqdm(range(int(steps)), desc="denoiser", disable=not progress, leave=False):
            idx = torch.randint(0, x0.shape[0], (min(int(batch_size), x0.shape[0]),), generator=gen, device=x0.device)
            # L = E_t || f(x_t, t) - x_0 ||^2
            loss = diffusion.loss(model, x0[idx], snr_weighted=snr_weighted, generator=gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    finally:
        torch.set_num_threads(old_threads)
    return losses
