"""Gaussian diffusion on embeddings: noise schedules, forward noising, x0-predicting denoiser.

Introduced in notebook 03 (forward diffusion: schedules, ``q_sample``, ``q_step``) and
notebook 04 (reverse diffusion: ``Denoiser``, ``p_sample``, the denoising loss and the
diffusion views used for contrastive learning).

Notation (DDPM, Ho et al. 2020; DiffRec, Wang et al. 2023; DiffMM, Jiang et al. 2024):

* ``beta_t`` the variance added at step ``t``, ``alpha_t = 1 - beta_t``,
  ``abar_t = prod_{s <= t} alpha_s``.
* Forward: ``q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I)`` and in closed form
  ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)``.
* Posterior: ``q(x_{t-1} | x_t, x_0) = N(c1_t x_0 + c2_t x_t, beta~_t I)`` with
  ``c1_t = beta_t sqrt(abar_{t-1}) / (1 - abar_t)``,
  ``c2_t = (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t)``,
  ``beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)``.
* Reverse: the denoiser predicts ``x0_hat = f(x_t, t)`` (DiffRec's / DiffMM's "x0" mean type)
  and ``p(x_{t-1} | x_t) = N(c1_t x0_hat + c2_t x_t, beta~_t I)``.

**Timesteps are 0-indexed**, as in DiffRec: a tensor value ``t`` in ``{0, ..., T-1}`` means
diffusion step ``t + 1``. So ``q_sample(x0, t=0)`` returns ``x_1`` and
``q_sample(x0, t=T-1)`` returns ``x_T``; ``betas[t]`` is ``beta_{t+1}``.

What DiffCL's paper states is only that a forward + learned reverse diffusion generates the
contrastive views. The schedule kinds, DiffMM's defaults (5 steps, scale 0.1,
1e-4 .. 0.02), the x0 parameterisation and the SNR weighting are DiffRec/DiffMM conventions.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .errors import DiffCLError

log = logging.getLogger(__name__)

__all__ = [
    "NoiseSchedule",
    "make_schedule",
    "schedule_kinds",
    "extract",
    "timestep_embedding",
    "Denoiser",
    "GaussianDiffusion",
]

_SCHEDULE_KINDS = ("linear-var", "linear-beta", "cosine")
_MAX_BETA = 0.999


def schedule_kinds() -> list[str]:
    """Names accepted by :func:`make_schedule` (notebook 03)."""
    return list(_SCHEDULE_KINDS)


# ---------------------------------------------------------------------------------------------
# Notebook 03: noise schedules
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """All per-step coefficients of a diffusion with ``T`` steps (float64 tensors of length T).

    Introduced in notebook 03 (forward diffusion). Index ``t`` (0-based) holds the values of
    step ``t + 1``. Build it with :func:`make_schedule`.
    """

    kind: str
    steps: int
    scale: float
    noise_min: float
    noise_max: float
    betas: torch.Tensor
    alphas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor
    snr: torch.Tensor

    BUFFERS = (
        "betas",
        "alphas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
        "snr",
    )

    @classmethod
    def from_betas(
        cls, betas: np.ndarray | torch.Tensor, kind: str = "custom", scale: float = float("nan"),
        noise_min: float = float("nan"), noise_max: float = float("nan"),
    ) -> "NoiseSchedule":
        """Derive every coefficient from ``beta_1..beta_T`` (all in (0, 1))."""
        b = torch.as_tensor(np.asarray(betas, dtype=np.float64))
        if b.ndim != 1 or b.numel() < 1:
            raise DiffCLError(f"betas must be a non-empty 1-D array, got shape {tuple(b.shape)}.")
        if not bool(((b > 0) & (b < 1)).all()):
            raise DiffCLError(
                f"betas must all lie in (0, 1), got min {b.min().item():.3g} and max {b.max().item():.3g}; "
                "lower `scale` or `noise_max`."
            )
        # alpha_t = 1 - beta_t
        alphas = 1.0 - b
        # abar_t = prod_{s<=t} alpha_s
        abar = torch.cumprod(alphas, dim=0)
        # abar_{t-1}, with abar_0 = 1
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        # beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)
        post_var = b * (1.0 - abar_prev) / (1.0 - abar)
        # log beta~_t, clipped: beta~_1 = 0, so step 1 borrows beta~_2 (DDPM); with T = 1, beta_1
        first = post_var[1] if b.numel() > 1 else b[0]
        post_log_var = torch.log(torch.cat([first.reshape(1), post_var[1:]]))
        # c1_t = beta_t sqrt(abar_{t-1}) / (1 - abar_t)     (coefficient of x_0)
        coef1 = b * torch.sqrt(abar_prev) / (1.0 - abar)
        # c2_t = (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t)     (coefficient of x_t)
        coef2 = (1.0 - abar_prev) * torch.sqrt(alphas) / (1.0 - abar)
        return cls(
            kind=kind,
            steps=int(b.numel()),
            scale=float(scale),
            noise_min=float(noise_min),
            noise_max=float(noise_max),
            betas=b,
            alphas=alphas,
            alphas_cumprod=abar,
            alphas_cumprod_prev=abar_prev,
            # sqrt(abar_t)
            sqrt_alphas_cumprod=torch.sqrt(abar),
            # sqrt(1 - abar_t)
            sqrt_one_minus_alphas_cumprod=torch.sqrt(1.0 - abar),
            posterior_variance=post_var,
            posterior_log_variance_clipped=post_log_var,
            posterior_mean_coef1=coef1,
            posterior_mean_coef2=coef2,
            # SNR(t) = abar_t / (1 - abar_t)
            snr=abar / (1.0 - abar),
        )

    def table(self) -> list[dict[str, float]]:
        """Rows ``{t, beta, abar, sqrt_abar, snr}`` for ``t = 1..T`` (1-based, 6 significant digits).

        For notebook 03's golden cells: e.g. DiffMM's defaults end at ``abar_T = 0.998``.
        """
        rows = []
        for i in range(self.steps):
            rows.append(
                {
                    "t": i + 1,
                    "beta": float(f"{self.betas[i].item():.6g}"),
                    "abar": float(f"{self.alphas_cumprod[i].item():.6g}"),
                    "sqrt_abar": float(f"{self.sqrt_alphas_cumprod[i].item():.6g}"),
                    "snr": float(f"{self.snr[i].item():.6g}"),
                }
            )
        return rows

    describe = table

    def __repr__(self) -> str:
        return (
            f"NoiseSchedule(kind={self.kind!r}, steps={self.steps}, abar_1={self.alphas_cumprod[0].item():.6g}, "
            f"abar_T={self.alphas_cumprod[-1].item():.6g})"
        )


def _cosine_abar(u: float, s: float = 0.008) -> float:
    # f(u) = cos^2( (u + s) / (1 + s) * pi / 2 ),  u = t / T
    return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2


def make_schedule(
    kind: str = "linear-var",
    steps: int = 5,
    scale: float = 0.1,
    noise_min: float = 1e-4,
    noise_max: float = 0.02,
) -> NoiseSchedule:
    """Build a :class:`NoiseSchedule` (defaults: DiffMM's, which give ``abar_T = 0.998``).

    Introduced in notebook 03 (forward diffusion). Kinds:

    * ``"linear-var"`` (DiffRec / DiffMM): the *variance* ``1 - abar_t`` grows linearly from
      ``scale * noise_min`` (t=1) to ``scale * noise_max`` (t=T); ``beta_1 = 1 - abar_1`` and
      ``beta_t = 1 - abar_t / abar_{t-1}`` (clipped at 0.999).
    * ``"linear-beta"`` (DDPM-style, DiffRec's ``"linear"``): ``beta_t`` linear from
      ``scale * noise_min`` to ``scale * noise_max``.
    * ``"cosine"`` (Nichol & Dhariwal 2021, ``s = 0.008``): ``abar_t = f(t/T) / f(0)`` with
      ``f(u) = cos^2((u + s)/(1 + s) * pi/2)``, ``beta_t`` clipped at 0.999. ``scale``,
      ``noise_min`` and ``noise_max`` are validated but not used (as in DiffRec).

    Invalid arguments raise :class:`DiffCLError` naming the argument.
    """
    if kind not in _SCHEDULE_KINDS:
        raise DiffCLError(f"kind={kind!r} is not a known schedule; use one of {list(_SCHEDULE_KINDS)}.")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise DiffCLError(f"steps={steps!r} must be an integer >= 1 (DiffMM uses 5, DiffRec 100).")
    steps = int(steps)
    if not (isinstance(scale, (int, float, np.floating)) and math.isfinite(scale) and scale > 0):
        raise DiffCLError(f"scale={scale!r} must be a finite number > 0 (DiffMM uses 0.1).")
    if not (0 < noise_min < 1):
        raise DiffCLError(f"noise_min={noise_min!r} must lie in (0, 1) (DiffMM uses 1e-4).")
    if not (0 < noise_max < 1):
        raise DiffCLError(f"noise_max={noise_max!r} must lie in (0, 1) (DiffMM uses 0.02).")
    if not noise_min < noise_max:
        raise DiffCLError(
            f"noise_min={noise_min!r} must be smaller than noise_max={noise_max!r}; swap them."
        )
    start, end = scale * noise_min, scale * noise_max
    if kind in ("linear-var", "linear-beta") and end >= 1:
        raise DiffCLError(
            f"scale={scale!r} times noise_max={noise_max!r} = {end:.4g} >= 1 would give a variance or beta "
            f"outside (0, 1); use scale < {1 / noise_max:.4g}."
        )
    if kind == "linear-var":
        # 1 - abar_t = linspace(scale * noise_min, scale * noise_max, T)
        variance = np.linspace(start, end, steps, dtype=np.float64)
        # abar_t = 1 - variance_t
        abar = 1.0 - variance
        # beta_1 = 1 - abar_1 ;  beta_t = 1 - abar_t / abar_{t-1}
        betas = np.empty(steps, dtype=np.float64)
        betas[0] = 1.0 - abar[0]
        betas[1:] = np.minimum(1.0 - abar[1:] / abar[:-1], _MAX_BETA)
    elif kind == "linear-beta":
        # beta_t = linspace(scale * noise_min, scale * noise_max, T)
        betas = np.linspace(start, end, steps, dtype=np.float64)
    else:
        # beta_t = min(1 - f(t/T) / f((t-1)/T), 0.999)
        betas = np.array(
            [min(1.0 - _cosine_abar((i + 1) / steps) / _cosine_abar(i / steps), _MAX_BETA) for i in range(steps)],
            dtype=np.float64,
        )
    if not np.all((betas > 0) & (betas < 1)):
        raise DiffCLError(
            f"the {kind!r} schedule with steps={steps}, scale={scale}, noise_min={noise_min}, "
            f"noise_max={noise_max} has betas outside (0, 1) (min {betas.min():.3g}); with steps > 1 "
            "noise_min and noise_max must differ enough, or change `scale`."
        )
    return NoiseSchedule.from_betas(betas, kind=kind, scale=scale, noise_min=noise_min, noise_max=noise_max)


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------
def extract(a: torch.Tensor, t: torch.Tensor, x_shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """Gather ``a[t]`` for a batch of timesteps and reshape to broadcast over ``x``: ``(B, 1, ..., 1)``.

    Introduced in notebook 03. ``t`` is a LongTensor ``(B,)`` of 0-based steps.
    """
    out = a.gather(0, t.to(a.device).long())
    return out.reshape(t.shape[0], *((1,) * (len(x_shape) - 1)))


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (0-based) timesteps, ``(B,) -> (B, dim)`` (DiffRec / DDPM).

    Introduced in notebook 04 (reverse diffusion).
    """
    if int(dim) < 1:
        raise DiffCLError(f"dim={dim} must be >= 1 for the timestep embedding.")
    half = dim // 2
    # omega_j = max_period^(-j / half),  j = 0..half-1
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / max(half, 1))
    args = t.float()[:, None] * freqs[None, :]
    # emb(t) = [cos(t omega), sin(t omega)]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


# ---------------------------------------------------------------------------------------------
# Notebook 04: the denoiser
# ---------------------------------------------------------------------------------------------
class Denoiser(nn.Module):
    """MLP ``f(x_t, t) -> x0_hat`` that predicts the clean embedding (notebook 04).

    Introduced in notebook 04 (reverse diffusion). As DiffMM's ``Denoise``: the sinusoidal
    embedding of ``t`` goes through one linear layer (``time_mlp``), is concatenated to
    ``x_t`` (optionally L2-normalised, ``norm_input``, and dropped out, ``dropout``), then
    ``n_layers`` linear layers with Tanh between them (``activation="silu"`` is our option);
    the last layer is linear to ``dim``. Weights Xavier-normal, biases N(0, 0.001) as DiffMM.

    ``residual=True`` (our option, not DiffMM's) predicts ``x0_hat = x_t + g(x_t, t)`` with the last
    layer of ``g`` initialised at 1e-3 of its usual scale (bias 0), so an untrained denoiser is the
    identity up to 1e-3. This is the
    skip-connection parameterisation of EDM (Karras et al. 2022, ``c_skip x + c_out F``) and the
    zero-initialised residual branch of Fixup / ReZero: a random MLP would otherwise map every
    ``x_t`` to an unrelated direction and a diffusion view would carry none of ``x0``'s signal
    until the denoiser has been trained.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        time_dim: int = 16,
        n_layers: int = 2,
        dropout: float = 0.0,
        norm_input: bool = False,
        activation: str = "tanh",
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.residual = bool(residual)
        if int(dim) < 1 or int(hidden) < 1 or int(time_dim) < 1:
            raise DiffCLError(f"dim={dim}, hidden={hidden}, time_dim={time_dim} must all be >= 1.")
        if int(n_layers) < 1:
            raise DiffCLError(f"n_layers={n_layers} must be >= 1 (DiffMM uses 2 linear layers).")
        if not 0.0 <= dropout < 1.0:
            raise DiffCLError(f"dropout={dropout} must lie in [0, 1).")
        acts: dict[str, Callable[[], nn.Module]] = {"tanh": nn.Tanh, "silu": nn.SiLU}
        if activation not in acts:
            raise DiffCLError(f"activation={activation!r} is not supported; use one of {list(acts)}.")
        self.dim, self.time_dim, self.norm_input = int(dim), int(time_dim), bool(norm_input)
        self.time_mlp = nn.Linear(self.time_dim, self.time_dim)
        self.drop = nn.Dropout(dropout)
        sizes = [self.dim + self.time_dim] + [int(hidden)] * (int(n_layers) - 1) + [self.dim]
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(d_in, d_out))
            if i < len(sizes) - 2:
                layers.append(acts[activation]())
        self.mlp = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DiffMM's init: Xavier-normal weights, N(0, 0.001) biases."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.normal_(m.bias, 0.0, 0.001)
        if self.residual:
            # g starts at (almost) 0, so x0_hat = x_t at initialisation: the last layer's weights are
            # scaled by 1e-3 rather than zeroed so that every layer receives a gradient from step one
            last = self.mlp[-1]
            with torch.no_grad():
                last.weight.mul_(1e-3)
            nn.init.zeros_(last.bias)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # e_t = W_time emb(t) + b_time
        e_t = self.time_mlp(timestep_embedding(t, self.time_dim))
        # x_t <- x_t / ||x_t|| (norm_input)
        x_in = F.normalize(x_t, dim=-1) if self.norm_input else x_t
        x_in = self.drop(x_in)
        # x0_hat = MLP([x_t, e_t])
        out = self.mlp(torch.cat([x_in, e_t.to(x_t.dtype)], dim=-1))
        # residual: x0_hat = x_t + g([x_t, e_t])
        return x_t + out if self.residual else out


# ---------------------------------------------------------------------------------------------
# Notebooks 03-04: the diffusion process
# ---------------------------------------------------------------------------------------------
class GaussianDiffusion(nn.Module):
    """Forward noising and x0-parameterised reverse denoising on embedding vectors.

    Introduced in notebook 03 (forward: ``q_sample``, ``q_step``) and notebook 04 (reverse:
    ``p_sample``, ``p_sample_loop``, ``loss``, ``generate_view``). The schedule's coefficients
    are registered as float32 buffers (computed in float64 first), so ``.to(device)`` moves them
    and they work on CPU, CUDA and MPS; the float64 originals stay in ``self.schedule``.
    ``t`` arguments are LongTensors ``(B,)`` of 0-based steps (``t`` means step ``t + 1``); a
    Python int is accepted too and used for the whole batch.
    """

    def __init__(self, schedule: NoiseSchedule | None = None) -> None:
        super().__init__()
        self.schedule = schedule if schedule is not None else make_schedule()
        self.steps = self.schedule.steps
        for name in NoiseSchedule.BUFFERS:
            self.register_buffer(name, getattr(self.schedule, name).to(torch.float32), persistent=False)
        # w_t = SNR(t-1) - SNR(t) (DiffRec), w = 1 for the first step, normalised to mean 1 over t
        snr = self.schedule.snr
        w = torch.ones_like(snr)
        w[1:] = snr[:-1] - snr[1:]
        self.register_buffer("snr_weights", (w / w.mean()).to(torch.float32), persistent=False)

    def extra_repr(self) -> str:
        return repr(self.schedule)

    # --- helpers --------------------------------------------------------------------------
    def _t(self, t: torch.Tensor | int, x: torch.Tensor) -> torch.Tensor:
        if isinstance(t, (int, np.integer)):
            t = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
        elif not isinstance(t, torch.Tensor):
            raise DiffCLError(f"t must be a LongTensor (B,) of steps in 0..{self.steps - 1}, got {type(t).__name__}.")
        t = t.to(device=x.device, dtype=torch.long)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape[0] != x.shape[0]:
            raise DiffCLError(f"t has {t.shape[0]} entries but x has {x.shape[0]} rows; give one step per row.")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.steps):
            raise DiffCLError(
                f"t holds steps in [{int(t.min())}, {int(t.max())}] but this schedule has steps 0..{self.steps - 1} "
                "(0-based: t means step t + 1)."
            )
        return t

    def _coef(self, name: str, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return extract(getattr(self, name), t, x.shape).to(x.dtype)

    def sample_timesteps(
        self, batch: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Uniform 0-based timesteps ``t ~ U{0, ..., T-1}``, shape ``(batch,)`` (notebook 04)."""
        device = device if device is not None else self.betas.device
        return torch.randint(0, self.steps, (int(batch),), device=device, generator=generator)

    # --- forward process (notebook 03) -----------------------------------------------------
    def q_sample(
        self, x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Closed-form forward sample ``x_t ~ q(x_t | x_0)`` (notebook 03)."""
        t = self._t(t, x0)
        eps = _randn_like(x0, generator) if noise is None else noise
        # x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,   eps ~ N(0, I)
        return self._coef("sqrt_alphas_cumprod", t, x0) * x0 + self._coef("sqrt_one_minus_alphas_cumprod", t, x0) * eps

    def q_step(
        self, x_prev: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One forward step ``x_{t} ~ q(x_t | x_{t-1})``: from step ``t`` to step ``t + 1`` (0-based ``t``).

        Introduced in notebook 03. Applying it for ``t = 0, 1, ..., k-1`` to ``x_0`` gives a
        sample with the distribution of ``q_sample(x_0, t=k-1)`` (step ``k``).
        """
        t = self._t(t, x_prev)
        eps = _randn_like(x_prev, generator) if noise is None else noise
        # x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps
        return torch.sqrt(self._coef("alphas", t, x_prev)) * x_prev + torch.sqrt(self._coef("betas", t, x_prev)) * eps

    def q_posterior_mean_variance(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and clipped log-variance of ``q(x_{t-1} | x_t, x_0)`` (notebook 04)."""
        t = self._t(t, x_t)
        # mu~_t = c1_t x_0 + c2_t x_t
        mean = self._coef("posterior_mean_coef1", t, x_t) * x0 + self._coef("posterior_mean_coef2", t, x_t) * x_t
        # beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)
        var = self._coef("posterior_variance", t, x_t).expand_as(x_t)
        log_var = self._coef("posterior_log_variance_clipped", t, x_t).expand_as(x_t)
        return mean, var, log_var

    # --- reverse process (notebook 04) -----------------------------------------------------
    def p_mean_variance(
        self, model: nn.Module, x_t: torch.Tensor, t: torch.Tensor | int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``p(x_{t-1} | x_t)``: (mean, var, log_var, x0_hat) with ``x0_hat = model(x_t, t)``."""
        t = self._t(t, x_t)
        # x0_hat = f_theta(x_t, t)
        x0_hat = model(x_t, t)
        # mu_theta = c1_t x0_hat + c2_t x_t ;  Sigma = beta~_t I
        mean, var, log_var = self.q_posterior_mean_variance(x0_hat, x_t, t)
        return mean, var, log_var, x0_hat

    def p_sample(
        self, model: nn.Module, x_t: torch.Tensor, t: torch.Tensor | int, noise: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One reverse step ``x_{t-1} ~ p(x_{t-1} | x_t)``; deterministic (the mean) unless ``noise``.

        Introduced in notebook 04. No noise is ever added at the last step (``t = 0``), where the
        posterior mean equals ``x0_hat``.
        """
        t = self._t(t, x_t)
        mean, _, log_var, _ = self.p_mean_variance(model, x_t, t)
        if not noise:
            # x_{t-1} = mu_theta(x_t, t)
            return mean
        nonzero = (t != 0).to(x_t.dtype).reshape(-1, *((1,) * (x_t.ndim - 1)))
        # x_{t-1} = mu_theta + [t > 0] sqrt(beta~_t) z,   z ~ N(0, I)
        return mean + nonzero * torch.exp(0.5 * log_var) * _randn_like(x_t, generator)

    def p_sample_loop(
        self, model: nn.Module, x_T: torch.Tensor, steps: int | None = None, noise: bool = False,
        return_trajectory: bool = False, generator: torch.Generator | None = None, progress: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Denoise ``x_T`` (taken to be at step ``steps``, default ``T``) back to ``x_0``.

        Introduced in notebook 04. Runs ``p_sample`` for ``t = steps-1, ..., 0`` (0-based). With
        ``return_trajectory`` also returns ``[x_steps, ..., x_0]``. ``steps = 0`` returns ``x_T``.
        Note: DiffRec/DiffMM noise to ``steps`` but always denoise through all ``T`` steps;
        here the reverse chain starts where the forward one stopped.
        """
        steps = self.steps if steps is None else int(steps)
        if not 0 <= steps <= self.steps:
            raise DiffCLError(f"steps={steps} must lie in 0..{self.steps} (the schedule's number of steps).")
        x = x_T
        trajectory = [x]
        for i in tqdm(range(steps - 1, -1, -1), desc="reverse diffusion", disable=not progress, leave=False):
            t = torch.full((x.shape[0],), i, dtype=torch.long, device=x.device)
            x = self.p_sample(model, x, t, noise=noise, generator=generator)
            trajectory.append(x)
        return (x, trajectory) if return_trajectory else x

    def generate_view(
        self, model: nn.Module, x0: torch.Tensor, steps: int | None = None, noise: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """A diffusion view of ``x0``: forward-noise to step ``steps`` (default ``T``), denoise back.

        Introduced in notebook 04 (diffusion views). Differentiable w.r.t. ``x0`` and the denoiser's
        parameters; two calls give two views that differ through the forward noise.
        """
        steps = self.steps if steps is None else int(steps)
        if not 0 <= steps <= self.steps:
            raise DiffCLError(f"steps={steps} must lie in 0..{self.steps} (the schedule's number of steps).")
        if steps == 0:
            return x0
        # x_s ~ q(x_s | x_0)
        x_s = self.q_sample(x0, steps - 1, generator=generator)
        # x0' = reverse chain from step s to 0
        return self.p_sample_loop(model, x_s, steps=steps, noise=noise, generator=generator)

    def loss(
        self, model: nn.Module, x0: torch.Tensor, t: torch.Tensor | int | None = None,
        snr_weighted: bool = False, reduction: str = "mean", noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Denoising loss ``|| f(x_t, t) - x_0 ||^2`` (mean over features) on ``x_0.detach()``.

        Introduced in notebook 04. ``t`` defaults to uniform samples. ``snr_weighted`` multiplies
        each row by DiffRec's ``w_t = SNR(t-1) - SNR(t)`` (``w = 1`` at the first step, where
        ``SNR(0)`` is infinite), normalised so that the mean weight over ``t = 0..T-1`` is 1.
        ``reduction`` is ``"mean"``, ``"sum"`` or ``"none"`` (one value per row).
        """
        if reduction not in ("mean", "sum", "none"):
            raise DiffCLError(f"reduction={reduction!r} must be 'mean', 'sum' or 'none'.")
        # the encoder is not trained through the denoising loss
        x0 = x0.detach()
        t = self.sample_timesteps(x0.shape[0], x0.device, generator) if t is None else self._t(t, x0)
        x_t = self.q_sample(x0, t, noise=noise, generator=generator)
        x0_hat = model(x_t, t)
        # L_t = mean_features (x0_hat - x_0)^2
        per_row = (x0_hat - x0).pow(2).reshape(x0.shape[0], -1).mean(dim=1)
        if snr_weighted:
            # L_t <- w_t L_t
            per_row = extract(self.snr_weights, t, per_row.shape).to(per_row.dtype) * per_row
        if reduction == "mean":
            return per_row.mean()
        if reduction == "sum":
            return per_row.sum()
        return per_row
