"""Tests of diffcl_lite.diffusion: schedules, forward/posterior formulas, denoiser, loss, views."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffcl_lite.diffusion import (
    Denoiser,
    GaussianDiffusion,
    extract,
    make_schedule,
    schedule_kinds,
    timestep_embedding,
)
from diffcl_lite.errors import DiffCLError

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def three_step() -> GaussianDiffusion:
    """betas = 0.1, 0.2, 0.3 (linear-beta, scale 1)."""
    return GaussianDiffusion(make_schedule("linear-beta", steps=3, scale=1.0, noise_min=0.1, noise_max=0.3))


# ------------------------------------------------------------------ schedules
def test_linear_var_diffmm_defaults():
    s = make_schedule()  # linear-var, 5 steps, scale 0.1, 1e-4 .. 0.02
    assert s.kind == "linear-var" and s.steps == 5
    # 1 - abar_t = linspace(1e-5, 2e-3, 5)
    np.testing.assert_allclose(1 - s.alphas_cumprod.numpy(), np.linspace(1e-5, 2e-3, 5), rtol=1e-10)
    assert s.alphas_cumprod[-1].item() == pytest.approx(0.998, abs=1e-12)
    assert s.alphas_cumprod[0].item() == pytest.approx(0.99999, abs=1e-12)
    assert s.betas[0].item() == pytest.approx(1e-5)
    assert s.betas[1].item() == pytest.approx(1 - (1 - 0.0005075) / 0.99999)
    # abar_t is the product of the alphas
    np.testing.assert_allclose(torch.cumprod(1 - s.betas, 0).numpy(), s.alphas_cumprod.numpy(), rtol=1e-12)
    rows = s.table()
    assert rows[-1]["t"] == 5 and rows[-1]["abar"] == 0.998 and rows[-1]["snr"] == pytest.approx(499.0)
    assert set(schedule_kinds()) == {"linear-var", "linear-beta", "cosine"}


@pytest.mark.parametrize("kind", ["linear-var", "linear-beta", "cosine"])
def test_schedules_monotone_and_in_range(kind):
    s = make_schedule(kind, steps=50, scale=1.0)
    assert ((s.betas > 0) & (s.betas < 1)).all()
    assert (s.alphas_cumprod[1:] < s.alphas_cumprod[:-1]).all()
    assert (s.snr[1:] < s.snr[:-1]).all()
    assert s.alphas_cumprod_prev[0] == 1.0


def test_linear_beta_values():
    s = make_schedule("linear-beta", steps=5, scale=0.1)
    np.testing.assert_allclose(s.betas.numpy(), np.linspace(1e-5, 2e-3, 5))


def test_cosine_endpoints():
    steps, off = 10, 0.008

    def f(u):
        return math.cos((u + off) / (1 + off) * math.pi / 2) ** 2

    s = make_schedule("cosine", steps=steps)
    assert s.alphas_cumprod[0].item() == pytest.approx(f(1 / steps) / f(0), rel=1e-12)
    assert s.betas[-1].item() == pytest.approx(0.999)  # f(1) = 0 -> clipped
    assert s.alphas_cumprod[-1].item() == pytest.approx(0.001 * f((steps - 1) / steps) / f(0), rel=1e-9)
    assert s.alphas_cumprod[-1].item() < 1e-4


def test_posterior_coefficients_by_hand_three_steps():
    s = three_step().schedule
    np.testing.assert_allclose(s.alphas_cumprod.numpy(), [0.9, 0.72, 0.504], rtol=1e-12)
    np.testing.assert_allclose(s.alphas_cumprod_prev.numpy(), [1.0, 0.9, 0.72], rtol=1e-12)
    # c1 = beta_t sqrt(abar_{t-1}) / (1 - abar_t)
    np.testing.assert_allclose(
        s.posterior_mean_coef1.numpy(), [1.0, 0.2 * math.sqrt(0.9) / 0.28, 0.3 * math.sqrt(0.72) / 0.496], rtol=1e-12
    )
    # c2 = (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t)
    np.testing.assert_allclose(
        s.posterior_mean_coef2.numpy(), [0.0, 0.1 * math.sqrt(0.8) / 0.28, 0.28 * math.sqrt(0.7) / 0.496], atol=1e-15
    )
    # beta~ = beta_t (1 - abar_{t-1}) / (1 - abar_t)
    np.testing.assert_allclose(s.posterior_variance.numpy(), [0.0, 0.2 * 0.1 / 0.28, 0.3 * 0.28 / 0.496], atol=1e-15)
    # clipped log variance: step 1 borrows step 2's value
    np.testing.assert_allclose(
        s.posterior_log_variance_clipped.numpy(), np.log([0.2 * 0.1 / 0.28, 0.2 * 0.1 / 0.28, 0.3 * 0.28 / 0.496])
    )
    np.testing.assert_allclose(s.snr.numpy(), [9.0, 0.72 / 0.28, 0.504 / 0.496])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"scale": 0.0}, "scale"),
        ({"scale": -1.0}, "scale"),
        ({"noise_min": 0.0}, "noise_min"),
        ({"noise_max": 1.5}, "noise_max"),
        ({"noise_min": 0.03, "noise_max": 0.02}, "noise_min"),
        ({"scale": 60.0}, "scale"),
        ({"kind": "quadratic"}, "kind"),
    ],
)
def test_invalid_schedule_arguments_raise_naming_the_argument(kwargs, name):
    with pytest.raises(DiffCLError, match=name):
        make_schedule(**kwargs)


# ------------------------------------------------------------------ helpers
def test_extract_and_timestep_embedding():
    a = torch.tensor([10.0, 20.0, 30.0])
    out = extract(a, torch.tensor([2, 0]), (2, 5, 7))
    assert out.shape == (2, 1, 1)
    assert out.flatten().tolist() == [30.0, 10.0]
    emb = timestep_embedding(torch.tensor([0, 3]), 8)
    assert emb.shape == (2, 8)
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    assert emb[1, 0].item() == pytest.approx(math.cos(3.0))
    assert emb[1, 4].item() == pytest.approx(math.sin(3.0))
    assert timestep_embedding(torch.tensor([1]), 7).shape == (1, 7)


# ------------------------------------------------------------------ forward process
@pytest.mark.parametrize("device", DEVICES)
def test_q_sample_mean_and_variance(device):
    diff = three_step().to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    x0 = torch.full((200_000, 2), 2.0, device=device)
    x0[:, 1] = -1.0
    xt = diff.q_sample(x0, torch.full((200_000,), 2, device=device), generator=gen)
    assert xt.device.type == device
    # mean sqrt(abar_3) x0, variance 1 - abar_3
    mean, var = xt.mean(0).cpu(), xt.var(0).cpu()
    torch.testing.assert_close(mean, math.sqrt(0.504) * torch.tensor([2.0, -1.0]), atol=0.01, rtol=0)
    torch.testing.assert_close(var, torch.full((2,), 0.496), atol=0.01, rtol=0)


def test_q_step_composition_equals_closed_form():
    diff = three_step()
    gen = torch.Generator().manual_seed(1)
    n = 200_000
    x0 = torch.full((n, 1), 1.5)
    x = x0
    for t in range(3):
        x = diff.q_step(x, torch.full((n,), t), generator=gen)
    closed = diff.q_sample(x0, torch.full((n,), 2), generator=gen)
    assert x.mean().item() == pytest.approx(closed.mean().item(), abs=0.01)
    assert x.var().item() == pytest.approx(closed.var().item(), abs=0.01)
    assert x.mean().item() == pytest.approx(math.sqrt(0.504) * 1.5, abs=0.01)
    # with zero noise the k steps are exactly sqrt(abar_k) x0
    x = x0[:4]
    for t in range(2):
        x = diff.q_step(x, t, noise=torch.zeros_like(x))
    torch.testing.assert_close(x, math.sqrt(0.72) * x0[:4])


def test_posterior_matches_bayes_for_gaussians():
    diff = three_step()
    s = diff.schedule
    x0 = torch.randn(6, 3, dtype=torch.float64)
    xt = torch.randn(6, 3, dtype=torch.float64)
    for t in (1, 2):
        abar_prev, alpha, beta = s.alphas_cumprod[t - 1].item(), s.alphas[t].item(), s.betas[t].item()
        # prior x_{t-1} | x0 ~ N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1}); likelihood x_t | x_{t-1} ~ N(sqrt(a) x_{t-1}, b)
        post_var = 1.0 / (1.0 / (1 - abar_prev) + alpha / beta)
        post_mean = post_var * (math.sqrt(abar_prev) * x0 / (1 - abar_prev) + math.sqrt(alpha) * xt / beta)
        mean, var, log_var = diff.q_posterior_mean_variance(x0, xt, torch.full((6,), t))
        torch.testing.assert_close(mean, post_mean, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(var, torch.full_like(var, post_var), atol=1e-7, rtol=1e-6)
        torch.testing.assert_close(log_var.exp(), var, atol=1e-7, rtol=1e-5)
    # first step: q(x_0 | x_1, x_0) is a point mass at x_0
    mean, var, _ = diff.q_posterior_mean_variance(x0, xt, 0)
    torch.testing.assert_close(mean, x0, atol=1e-7, rtol=1e-6)
    assert (var == 0).all()


# ------------------------------------------------------------------ reverse process
def test_p_sample_deterministic_without_noise():
    torch.manual_seed(0)
    diff = three_step()
    model = Denoiser(4, hidden=16, time_dim=8)
    xt = torch.randn(5, 4)
    t = torch.full((5,), 2)
    a, b = diff.p_sample(model, xt, t), diff.p_sample(model, xt, t)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    mean, _, _, x0_hat = diff.p_mean_variance(model, xt, t)
    # the posterior mean from the betas 0.1, 0.2, 0.3 by hand (t = 2 is the third step):
    # mu = beta_t sqrt(abar_{t-1}) / (1 - abar_t) x0_hat + (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t) x_t
    abar_prev, abar_t, beta_t = 0.9 * 0.8, 0.9 * 0.8 * 0.7, 0.3
    by_hand = (beta_t * abar_prev ** 0.5 / (1 - abar_t)) * x0_hat + ((1 - abar_prev) * (1 - beta_t) ** 0.5 / (1 - abar_t)) * xt
    torch.testing.assert_close(a, by_hand, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mean, by_hand, rtol=1e-5, atol=1e-6)
    gen = torch.Generator().manual_seed(3)
    noisy = diff.p_sample(model, xt, t, noise=True, generator=gen)
    assert not torch.allclose(noisy, a)
    # last step (t = 0): no noise, the sample is x0_hat
    last = diff.p_sample(model, xt, 0, noise=True, generator=gen)
    torch.testing.assert_close(last, model(xt, torch.zeros(5, dtype=torch.long)), atol=1e-6, rtol=1e-6)
    out, traj = diff.p_sample_loop(model, xt, return_trajectory=True)
    assert len(traj) == 4 and traj[0] is xt and traj[-1] is out
    with pytest.raises(DiffCLError, match="steps"):
        diff.p_sample_loop(model, xt, steps=4)
    with pytest.raises(DiffCLError, match="t "):
        diff.q_sample(xt, torch.full((5,), 3))


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread avoids thread contention on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_denoiser_learns_and_loss_decreases(one_thread):
    torch.manual_seed(0)
    diff = GaussianDiffusion(make_schedule("linear-var", steps=5, scale=1.0))
    x0 = torch.randn(64, 8)
    model = Denoiser(8, hidden=64, time_dim=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    t_eval, noise_eval = diff.sample_timesteps(64, "cpu", gen), torch.randn(64, 8, generator=gen)

    def eval_loss() -> float:
        with torch.no_grad():
            return diff.loss(model, x0, t=t_eval, noise=noise_eval).item()

    before = eval_loss()
    for _ in range(200):
        opt.zero_grad()
        diff.loss(model, x0).backward()
        opt.step()
    after = eval_loss()
    assert after < 0.2 * before, (before, after)


def test_gradients_reach_every_denoiser_parameter():
    torch.manual_seed(1)
    diff = three_step()
    for act in ("tanh", "silu"):
        model = Denoiser(6, hidden=12, time_dim=5, n_layers=3, norm_input=True, activation=act)
        diff.loss(model, torch.randn(16, 6), snr_weighted=True).backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_loss_detaches_x0_and_snr_weights():
    torch.manual_seed(2)
    diff = three_step()
    model = Denoiser(4, hidden=8, time_dim=4)
    x0 = torch.randn(3, 4, requires_grad=True)
    t = torch.tensor([0, 1, 2])
    noise = torch.randn(3, 4)
    plain = diff.loss(model, x0, t=t, noise=noise, reduction="none")
    weighted = diff.loss(model, x0, t=t, noise=noise, reduction="none", snr_weighted=True)
    snr = diff.schedule.snr
    # w = [1, SNR(1) - SNR(2), SNR(2) - SNR(3)] / mean
    w = torch.tensor([1.0, (snr[0] - snr[1]).item(), (snr[1] - snr[2]).item()])
    torch.testing.assert_close(weighted, plain * w / w.mean())
    assert plain.shape == (3,)
    torch.testing.assert_close(diff.loss(model, x0, t=t, noise=noise), plain.mean())
    diff.loss(model, x0, t=t, noise=noise).backward()
    assert x0.grad is None
    with pytest.raises(DiffCLError, match="reduction"):
        diff.loss(model, x0, reduction="max")


@pytest.mark.parametrize("device", DEVICES)
def test_generate_view_is_differentiable(device):
    torch.manual_seed(3)
    diff = GaussianDiffusion(make_schedule()).to(device)
    model = Denoiser(8, hidden=16, time_dim=8).to(device)
    x0 = torch.randn(10, 8, device=device, requires_grad=True)
    gen = torch.Generator(device=device).manual_seed(0)
    v1 = diff.generate_view(model, x0, generator=gen)
    v2 = diff.generate_view(model, x0, noise=True, generator=gen)
    assert v1.shape == x0.shape and v1.device.type == device
    assert not torch.allclose(v1, v2)
    (v1 * v2).sum().backward()
    assert x0.grad is not None and x0.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert diff.generate_view(model, x0, steps=0) is x0


# ------------------------------------------------------------------ residual denoiser, standardised views
def test_residual_denoiser_starts_as_the_identity_and_still_learns():
    torch.manual_seed(0)
    den = Denoiser(8, hidden=16, residual=True)
    x = torch.randn(32, 8)
    t = torch.randint(0, 5, (32,))
    # x0_hat = x_t + g(x_t, t), g ~ 0 at initialisation
    assert torch.allclose(den(x, t), x, atol=1e-2)
    plain = Denoiser(8, hidden=16)
    assert not torch.allclose(plain(x, t), x, atol=1e-1)
    (den(x, t) - 2 * x).pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in den.parameters())


def test_untrained_residual_views_keep_the_direction_of_x0():
    from diffcl_lite.views import DiffusionViews, angular_deviation

    torch.manual_seed(0)
    x0 = 5.0 * torch.randn(256, 16)
    plain = DiffusionViews(16, hidden=32)
    res = DiffusionViews(16, hidden=32, residual=True, standardize=True, noise_scale=5.0)
    # DiffMM's untrained x0-MLP: a view is unrelated to x0 (close to orthogonal)
    assert angular_deviation(plain.view(x0), x0) > 1.0
    z1, z2 = res(x0)
    assert 0.05 < angular_deviation(z1, x0) < 0.6
    assert angular_deviation(z1, z2) > 0.05
    # standardised diffusion: scaling x0 scales the view, the turn stays the same
    torch.manual_seed(1)
    a = res.view(x0)
    torch.manual_seed(1)
    b = res.view(10 * x0)
    assert torch.allclose(10 * a, b, rtol=1e-4, atol=1e-3)
