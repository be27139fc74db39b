"""Package functions behind notebooks 03-04: 2-D toy data, diffusion helpers, diffusion plots and widgets."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from diffcl_lite.lessons import viz, widgets  # noqa: E402
from diffcl_lite.lessons.toys import TOY_2D_NAMES, toy_2d  # noqa: E402
from diffcl_lite.diffusion import Denoiser, GaussianDiffusion, make_schedule  # noqa: E402
from diffcl_lite.errors import DiffCLError  # noqa: E402
from diffcl_lite.lessons.measures.diffusion import (  # noqa: E402
    chain_noise,
    denoise_error_by_t,
    fit_denoiser,
    forward_chain,
    noisy_snapshots,
    view_error_by_steps,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def visible() -> GaussianDiffusion:
    """A schedule whose noise is easy to see: linear-beta, 10 steps, betas 0.01 .. 0.2."""
    return GaussianDiffusion(make_schedule("linear-beta", steps=10, scale=10.0))


class Oracle(torch.nn.Module):
    """A 'denoiser' that returns a fixed x0 whatever it is given (the perfect guess)."""

    def __init__(self, x0: torch.Tensor) -> None:
        super().__init__()
        self.x0 = x0

    def forward(self, x_t, t):
        return self.x0


# ------------------------------------------------------------------ toy_2d
@pytest.mark.parametrize("name", TOY_2D_NAMES)
def test_toy_2d_shapes_scale_and_determinism(name):
    pts, lab = toy_2d(name, n=301, seed=4)
    assert pts.shape == (301, 2) and pts.dtype == np.float32
    assert lab.shape == (301,) and lab.dtype == np.int64
    np.testing.assert_allclose(pts.mean(0), 0.0, atol=1e-5)
    assert np.sqrt((pts.astype(np.float64) ** 2).mean()) == pytest.approx(1.0, rel=1e-4)
    again, lab2 = toy_2d(name, n=301, seed=4)
    np.testing.assert_array_equal(pts, again)
    np.testing.assert_array_equal(lab, lab2)
    assert not np.allclose(toy_2d(name, n=301, seed=5)[0], pts)
    expected_parts = {"moons": 2, "circles": 2, "smiley": 4}[name]
    assert set(np.unique(lab)) == set(range(expected_parts))


def test_toy_2d_shapes_are_what_they_say():
    pts, lab = toy_2d("circles", n=400, seed=0, noise=0.0)
    # fit the common centre c: |x|^2 = 2 c.x + const, then two radii with ratio 0.45
    p64 = pts.astype(np.float64)
    design = np.c_[2 * p64, np.ones(len(p64))]
    sol, *_ = np.linalg.lstsq(design[lab == 0], (p64[lab == 0] ** 2).sum(1), rcond=None)
    r = np.linalg.norm(p64 - sol[:2], axis=1)
    assert np.ptp(r[lab == 0]) < 1e-4 and np.ptp(r[lab == 1]) < 1e-4
    assert r[lab == 1].mean() / r[lab == 0].mean() == pytest.approx(0.45, rel=1e-4)
    moons, mlab = toy_2d("moons", n=400, seed=0, noise=0.0)
    assert moons[mlab == 0, 1].mean() > moons[mlab == 1, 1].mean()  # upper moon above the lower one


@pytest.mark.parametrize("kwargs, word", [({"name": "spiral"}, "name"), ({"n": 3}, "n="), ({"noise": -1.0}, "noise")])
def test_toy_2d_rejects_bad_arguments(kwargs, word):
    with pytest.raises(DiffCLError, match=word):
        toy_2d(**kwargs)


# ------------------------------------------------------------------ forward helpers
def test_noisy_snapshots_share_one_noise_and_match_q_sample():
    diff = visible()
    x0 = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    snaps = noisy_snapshots(x0, diff, [0, 1, 4, 10], seed=7)
    torch.testing.assert_close(snaps[0], x0)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7))
    for t, x_t in zip([1, 4, 10], snaps[1:]):
        torch.testing.assert_close(x_t, diff.q_sample(x0, t - 1, noise=eps))
    # the same noise for every t: (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t) is the same eps
    s = diff.schedule
    recovered = [(x - s.sqrt_alphas_cumprod[t - 1].float() * x0) / s.sqrt_one_minus_alphas_cumprod[t - 1].float()
                 for t, x in zip([1, 4, 10], snaps[1:])]
    torch.testing.assert_close(recovered[0], recovered[2], atol=1e-4, rtol=1e-4)
    with pytest.raises(DiffCLError, match="step NUMBERS"):
        noisy_snapshots(x0, diff, [11])


def test_forward_chain_equals_closed_form_with_the_merged_noise():
    diff = visible()
    x0 = torch.randn(400, 4, generator=torch.Generator().manual_seed(1))
    xs, noises = forward_chain(x0, diff, k=6, seed=3)
    assert len(xs) == 7 and len(noises) == 6
    torch.testing.assert_close(xs[0], x0)
    # x_1 = sqrt(alpha_1) x_0 + sqrt(beta_1) eps_1
    torch.testing.assert_close(xs[1], diff.q_step(x0, 0, noise=noises[0]))
    for k in (1, 3, 6):
        eps = chain_noise(diff, noises[:k])
        torch.testing.assert_close(diff.q_sample(x0, k - 1, noise=eps), xs[k], atol=2e-6, rtol=1e-5)
    # the merged noise is standard normal again (weights' squares sum to 1)
    big = torch.zeros(20000, 2)
    _, many = forward_chain(big, diff, k=10, seed=0)
    eps = chain_noise(diff, many)
    assert eps.mean().item() == pytest.approx(0.0, abs=0.02)
    assert eps.std().item() == pytest.approx(1.0, abs=0.02)
    with pytest.raises(DiffCLError, match="one per forward step"):
        chain_noise(diff, [])


# ------------------------------------------------------------------ reverse helpers
def test_denoise_error_by_t_oracle_and_baselines():
    diff = visible()
    x0 = torch.randn(2000, 3, generator=torch.Generator().manual_seed(2))
    err = denoise_error_by_t(Oracle(x0), diff, x0, seed=0)
    assert set(err) == {"denoiser", "noisy", "rescaled"} and all(len(v) == 10 for v in err.values())
    np.testing.assert_allclose(err["denoiser"], 0.0, atol=1e-12)
    # E (x_t / sqrt(abar) - x0)^2 = (1 - abar) / abar = 1 / SNR(t)
    np.testing.assert_allclose(err["rescaled"], 1 / diff.schedule.snr.numpy(), rtol=0.08)
    assert np.all(np.diff(err["noisy"]) > 0)
    again = denoise_error_by_t(Oracle(x0), diff, x0, seed=0)
    np.testing.assert_array_equal(again["noisy"], err["noisy"])


def test_view_error_by_steps_oracle_and_identity_denoiser():
    diff = visible()
    x0 = torch.randn(300, 3, generator=torch.Generator().manual_seed(3))
    ora = view_error_by_steps(Oracle(x0), diff, x0)
    assert len(ora["view"]) == 11 and ora["view"][0] == 0.0 and ora["noisy"][0] == 0.0
    # a perfect x0-predictor ends every reverse chain exactly at x0 (c1_1 = 1, c2_1 = 0)
    np.testing.assert_allclose(ora["view"], 0.0, atol=1e-10)
    assert np.all(np.diff(ora["noisy"]) > 0)
    ident = view_error_by_steps(lambda x_t, t: x_t, diff, x0)  # "denoiser" that trusts x_t
    assert ident["view"][-1] > 0.1


def test_fit_denoiser_lowers_the_loss_is_deterministic_and_restores_threads():
    x0 = torch.tensor(toy_2d("moons", n=200, seed=0)[0])
    diff = GaussianDiffusion(make_schedule("cosine", steps=10))
    before = torch.get_num_threads()

    def run():
        torch.manual_seed(0)
        model = Denoiser(2, hidden=32, time_dim=8, n_layers=2)
        return model, fit_denoiser(model, diff, x0, steps=120, batch_size=64, lr=1e-2, seed=1)

    m1, l1 = run()
    _, l2 = run()
    assert l1 == l2 and len(l1) == 120
    assert np.mean(l1[-20:]) < 0.8 * np.mean(l1[:20])
    assert torch.get_num_threads() == before
    err = denoise_error_by_t(m1, diff, x0)
    assert err["denoiser"][-1] < err["noisy"][-1]  # at high noise the model beats "do nothing"
    with pytest.raises(DiffCLError, match="steps"):
        fit_denoiser(m1, diff, x0, steps=0)


# ------------------------------------------------------------------ plots
def test_pca_basis_and_project():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 5)) * np.array([5.0, 2.0, 1.0, 0.5, 0.1])
    basis = viz.pca_basis(x)
    xy = viz.pca_project(x, basis)
    np.testing.assert_allclose(np.abs(xy), np.abs(viz.pca_2d(x)), atol=1e-4)
    np.testing.assert_allclose(xy, viz.pca_2d(x), atol=1e-4)
    with pytest.raises(DiffCLError, match="at least 2 columns"):
        viz.pca_basis(np.ones((5, 1)))


def test_scatter_by_label_gives_label_k_colour_k():
    fig, ax = plt.subplots()
    xy = np.arange(12, dtype=float).reshape(6, 2)
    viz.scatter_by_label(ax, xy, np.array([0, 7, 7, 2, 0, 2]), legend=True, label_name="topic")
    cmap = matplotlib.colormaps["tab10"]
    assert len(ax.collections) == 3
    for coll, k in zip(ax.collections, (0, 2, 7)):
        np.testing.assert_allclose(coll.get_facecolor()[0][:3], cmap(k)[:3])
        assert coll.get_label() == f"topic {k}"
    assert ax.get_legend() is not None


def test_plot_schedules_draws_each_schedule():
    sched = {"default": make_schedule(), "cosine": make_schedule("cosine", steps=50)}
    fig = viz.plot_schedules(sched)
    assert len(fig.axes) == 3
    assert all(len(ax.lines) >= 2 for ax in fig.axes)
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), np.r_[1.0, sched["default"].alphas_cumprod.numpy()])
    with pytest.raises(DiffCLError, match="at least one"):
        viz.plot_schedules({})


def test_plot_forward_snapshots_points_and_embeddings():
    pts, lab = toy_2d("smiley", n=120, seed=0)
    diff = visible()
    fig = viz.plot_forward_snapshots(pts, lab, diff, [0, 5, 10], seed=0)
    assert len(fig.axes) == 3
    assert "t = 10" in fig.axes[2].get_title()
    # panel t=0 shows the clean points (2-D input is not projected)
    drawn = np.concatenate([c.get_offsets() for c in fig.axes[0].collections])
    np.testing.assert_allclose(np.sort(drawn[:, 0]), np.sort(pts[:, 0]), atol=1e-6)
    emb = np.random.default_rng(0).standard_normal((80, 6)).astype(np.float32)
    fig2 = viz.plot_forward_snapshots(emb, np.arange(80) % 3, diff, [0, 10], seed=0)
    assert fig2.axes[0].get_xlabel().startswith("PC 1")


def test_plot_forward_noising_changes_with_t_and_clips():
    pts, lab = toy_2d("moons", n=100, seed=0)
    f0 = viz.plot_forward_noising(pts, lab, t=0, steps=20, scale=20.0)
    f1 = viz.plot_forward_noising(pts, lab, t=20, steps=20, scale=20.0)
    off0 = np.concatenate([c.get_offsets() for c in f0.axes[0].collections[1:]])
    off1 = np.concatenate([c.get_offsets() for c in f1.axes[0].collections[1:]])
    assert np.abs(off0 - off1).mean() > 0.1
    assert "t = 0" in f0.axes[0].get_title() and "t = 20" in f1.axes[0].get_title()
    f_big = viz.plot_forward_noising(pts, lab, t=99, steps=20, kind="cosine")
    assert "t = 20" in f_big.axes[0].get_title()
    emb = np.random.default_rng(0).standard_normal((60, 5))
    f_emb = viz.plot_forward_noising(emb, None, t=3, steps=10)
    grey, noisy = f_emb.axes[0].collections[:2]
    # embeddings are drawn on the clean points' two principal axes: covariance eigenvectors as reference
    xc = emb - emb.mean(0)
    ref = xc @ np.linalg.eigh(xc.T @ xc)[1][:, ::-1][:, :2]
    np.testing.assert_allclose(np.abs(grey.get_offsets()), np.abs(ref), atol=1e-4)
    assert noisy.get_offsets().shape == (60, 2) and len(f_emb.axes[0].collections) == 2  # no labels: one colour


def test_plot_reverse_trajectories_and_diffusion_view():
    pts, lab = toy_2d("moons", n=90, seed=0)
    x0 = torch.tensor(pts)
    diff = visible()
    with torch.no_grad():
        end, traj = diff.p_sample_loop(Oracle(x0), torch.randn(90, 2), return_trajectory=True)
    fig = viz.plot_reverse_trajectories(traj, lab, reference=x0, n_paths=5)
    ax = fig.axes[0]
    assert len(ax.lines) == 5
    # every path ends at the oracle's x0
    for line in ax.lines:
        end_xy = np.array([line.get_xdata()[-1], line.get_ydata()[-1]])
        assert np.min(np.linalg.norm(pts - end_xy, axis=1)) < 1e-5
    with pytest.raises(DiffCLError, match="at least a start"):
        viz.plot_reverse_trajectories(traj[:1])
    fig_v = viz.plot_diffusion_view(x0, lab, Oracle(x0), diff, t=10)
    assert "to own $x_0$ 0.000" in fig_v.axes[1].get_title()  # the oracle's view is x0 itself
    assert "t = 10" in fig_v.axes[0].get_title()
    emb = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    fig_e = viz.plot_reverse_trajectories([emb + 1, emb], None, reference=emb)
    ax_e = fig_e.axes[0]
    ref_xy, start_xy, end_xy = (c.get_offsets() for c in ax_e.collections)
    assert len(ax_e.lines) == 30  # n_paths of the 40 points
    # projected on the reference's axes: the end (= the reference) lands on the grey points, and the
    # start x + 1 is the same picture shifted by one constant vector
    np.testing.assert_allclose(end_xy, ref_xy, atol=1e-5)
    shift = np.asarray(start_xy) - np.asarray(end_xy)
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=1e-5)
    assert np.linalg.norm(shift[0]) > 0.01


# ------------------------------------------------------------------ widgets
def test_forward_noising_widget_has_a_t_slider_that_redraws(monkeypatch):
    pytest.importorskip("ipywidgets")
    import ipywidgets

    calls = []

    def fake_plot(**kwargs):
        calls.append(kwargs)
        return None

    monkeypatch.setattr(viz, "plot_forward_noising", fake_plot)
    pts, lab = toy_2d("moons", n=60, seed=0)
    box = widgets.forward_noising_widget(pts, lab, steps=20, t=3)
    t_slider, menu, scale = box.children[0].children
    assert isinstance(t_slider, ipywidgets.IntSlider) and t_slider.description == "t"
    assert (t_slider.min, t_slider.max, t_slider.value) == (0, 20, 3)
    assert "diffcl-control-t" in t_slider._dom_classes
    assert calls[-1]["t"] == 3 and calls[-1]["steps"] == 20 and calls[-1]["points"] is pts
    t_slider.value = 15
    assert calls[-1]["t"] == 15
    menu.value = "cosine"
    scale.value = 1.0
    assert calls[-1] == {**calls[-1], "t": 15, "kind": "cosine", "scale": 1.0}


def test_diffusion_view_widget_controls(monkeypatch):
    pytest.importorskip("ipywidgets")
    pts, lab = toy_2d("moons", n=50, seed=0)
    x0 = torch.tensor(pts)
    diff = visible()
    calls = []
    monkeypatch.setattr(viz, "plot_diffusion_view", lambda **kw: calls.append(kw))
    box = widgets.diffusion_view_widget(x0, lab, Oracle(x0), diff, t=4)
    t_slider, noise_box = box.children[0].children
    assert t_slider.description == "t" and t_slider.max == 10
    assert calls[-1]["t"] == 4 and calls[-1]["sampling_noise"] is False
    t_slider.value = 8
    noise_box.value = True
    assert calls[-1]["t"] == 8 and calls[-1]["sampling_noise"] is True
