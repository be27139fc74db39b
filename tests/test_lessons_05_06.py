"""Package functions behind notebooks 05-06: view measures, the InfoNCE softmax, alignment reports, plots, widgets."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from diffcl_lite import losses, views  # noqa: E402
from diffcl_lite.lessons.measures import alignment  # noqa: E402
from diffcl_lite.lessons.measures import views as view_measures  # noqa: E402
from diffcl_lite.lessons import viz, widgets  # noqa: E402
from diffcl_lite.data import make_synthetic  # noqa: E402
from diffcl_lite.errors import DiffCLError  # noqa: E402
from diffcl_lite.model import DiffCL, DiffCLConfig  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def clusters(n_per: int = 10, n_topics: int = 3, d: int = 6, spread: float = 0.05, seed: int = 0):
    """Tight clusters around orthogonal directions: every neighbour shares the topic."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(d)[:n_topics] * 3.0
    lab = np.repeat(np.arange(n_topics), n_per)
    x = centres[lab] + spread * torch.randn(len(lab), d, generator=g)
    return x, lab


# ------------------------------------------------------------------ InfoNCE softmax
def test_infonce_weights_rows_are_softmax_and_give_the_loss():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(12, 5, generator=g), torch.randn(12, 5, generator=g)
    p = losses.infonce_weights(z1, z2, 0.3)
    assert p.shape == (12, 12)
    assert torch.allclose(p.sum(1), torch.ones(12), atol=1e-6)
    # InfoNCE = -mean_i log p_ii
    assert float(-p.diagonal().log().mean()) == pytest.approx(float(losses.info_nce(z1, z2, 0.3)), rel=1e-5)
    # brute force for one entry
    s = F.cosine_similarity(z1[3][None], z2, dim=1) / 0.3
    assert float(p[3, 7]) == pytest.approx(float(torch.exp(s[7]) / torch.exp(s).sum()), rel=1e-5)


def test_infonce_weights_temperature_sharpens_and_rejects_bad_input():
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(20, 4, generator=g)
    z2 = z1 + 0.1 * torch.randn(20, 4, generator=g)
    hot, cold = losses.infonce_weights(z1, z2, 2.0), losses.infonce_weights(z1, z2, 0.05)
    assert float(cold.diagonal().mean()) > float(hot.diagonal().mean())
    assert float(cold.max(1).values.mean()) > float(hot.max(1).values.mean())
    with pytest.raises(DiffCLError, match="temperature"):
        losses.infonce_weights(z1, z2, 0.0)
    with pytest.raises(DiffCLError, match="shape"):
        losses.infonce_weights(z1, z2[:5], 0.2)


def test_infonce_temperature_curves_limits():
    g = torch.Generator().manual_seed(2)
    z1 = torch.randn(16, 4, generator=g)
    z2 = z1 + 0.05 * torch.randn(16, 4, generator=g)
    c = viz.infonce_temperature_curves(z1, z2, [0.02, 0.2, 1000.0])
    assert list(c) == ["tau", "p_positive", "loss", "effective_negatives"]
    # very hot: uniform softmax, every negative counts, p(positive) = 1/B
    assert c["effective_negatives"][-1] == pytest.approx(15.0, rel=1e-3)
    assert c["p_positive"][-1] == pytest.approx(1 / 16, rel=1e-2)
    # cold: few negatives carry the push, the positive wins
    assert c["effective_negatives"][0] < 5 and c["p_positive"][0] > 0.9
    assert c["loss"][1] == pytest.approx(float(losses.info_nce(z1, z2, 0.2)), rel=1e-5)


# ------------------------------------------------------------------ views
def test_simgcl_perturb_matches_random_noise_views_and_keeps_the_orthant():
    x = torch.randn(30, 8, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(11)
    z_pkg = views.RandomNoiseViews(0.3).view(x)
    z_rel = views.RandomNoiseViews(0.3, relative=True).view(x)
    torch.manual_seed(11)
    u = torch.rand_like(x)
    u2 = torch.rand_like(x)
    # SimGCL's formula written out in numpy: z = x + eps sign(x) u / ||u|| (relative: times ||x||)
    xn, un, un2 = x.double().numpy(), u.double().numpy(), u2.double().numpy()
    ref = xn + 0.3 * np.sign(xn) * un / np.linalg.norm(un, axis=1, keepdims=True)
    ref_rel = xn + 0.3 * np.linalg.norm(xn, axis=1, keepdims=True) * np.sign(xn) * un2 / np.linalg.norm(
        un2, axis=1, keepdims=True)
    np.testing.assert_allclose(z_pkg.double().numpy(), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z_rel.double().numpy(), ref_rel, rtol=1e-5, atol=1e-6)
    z = views.simgcl_perturb(x, u, 0.3)
    assert torch.allclose(z, z_pkg)
    assert torch.allclose((z - x).norm(dim=1), torch.full((30,), 0.3), atol=1e-6)
    assert torch.equal(torch.sign(z), torch.sign(x))
    with pytest.raises(DiffCLError, match="shape"):
        views.simgcl_perturb(x, u[:, :3], 0.1)
    with pytest.raises(DiffCLError, match="eps"):
        views.simgcl_perturb(x, u, -1.0)


def test_angular_deviation_values():
    x = torch.randn(10, 5, generator=torch.Generator().manual_seed(4))
    assert views.angular_deviation(x, x) == pytest.approx(0.0, abs=1e-6)
    assert views.angular_deviation(3.0 * x, x) == pytest.approx(0.0, abs=1e-6)
    assert views.angular_deviation(-x, x) == pytest.approx(2.0, rel=1e-6)
    e = torch.eye(4)
    assert views.angular_deviation(e[[1, 0, 3, 2]], e) == pytest.approx(math.sqrt(2), rel=1e-6)
    with pytest.raises(DiffCLError, match="same shape"):
        views.angular_deviation(x[:3], x)


def test_matched_random_views_hits_the_target_deterministically():
    x = torch.randn(40, 16, generator=torch.Generator().manual_seed(5))
    z1, z2, eps = view_measures.matched_random_views(x, 0.2, seed=3)
    assert views.angular_deviation(z1, x) == pytest.approx(0.2, abs=1e-4)
    assert eps > 0 and not torch.equal(z1, z2)
    again = view_measures.matched_random_views(x, 0.2, seed=3)
    assert torch.equal(again[0], z1) and again[2] == eps
    with pytest.raises(DiffCLError, match="beyond"):
        view_measures.matched_random_views(x, 1.4)
    far = view_measures.matched_random_views(x, 1.4, clip=True)
    assert 0.5 < views.angular_deviation(far[0], x) < 1.4


def test_topic_purity_clusters_masks_and_brute_force():
    x, lab = clusters()
    assert view_measures.topic_purity(x, lab, k=5) == pytest.approx(1.0)
    shuffled = np.roll(lab, 1)
    assert view_measures.topic_purity(x, shuffled, k=5) < 1.0
    # brute force on random data, restricted to a mask: float64 cosine distances, one row at a time
    g = torch.Generator().manual_seed(6)
    r = torch.randn(25, 4, generator=g)
    rl = np.arange(25) % 3
    mask = np.arange(25) % 2 == 0
    a = r.double().numpy()
    hits = []
    for i in np.flatnonzero(mask):
        dist = [1 - a[i] @ a[j] / (np.linalg.norm(a[i]) * np.linalg.norm(a[j])) for j in range(25)]
        others = sorted((d, j) for j, d in enumerate(dist) if j != i)[:4]
        hits += [rl[j] == rl[i] for _, j in others]
    expect = float(np.mean(hits))
    assert view_measures.topic_purity(r, rl, k=4, mask=mask) == pytest.approx(expect, abs=1e-6)  # 6 significant digits
    assert math.isnan(view_measures.topic_purity(r, rl, k=4, mask=np.zeros(25, bool)))
    with pytest.raises(DiffCLError, match="labels"):
        view_measures.topic_purity(r, rl[:5])
    with pytest.raises(DiffCLError, match="k="):
        view_measures.topic_purity(r, rl, k=25)


def test_compare_views_rows():
    x, lab = clusters()
    noisy = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    rows = view_measures.compare_views(x, {"same": (x, x), "noisy": (noisy, x)}, lab, {"all": None, "first": lab == 0}, k=3)
    assert [r["view"] for r in rows] == ["same", "noisy"]
    same, nz = rows
    assert same["deviation"] == pytest.approx(0.0, abs=1e-6) and same["alignment"] == pytest.approx(0.0, abs=1e-6)
    assert same["purity[all]"] == pytest.approx(1.0) and same["purity[first]"] == pytest.approx(1.0)
    assert nz["deviation"] > 0 and nz["alignment"] > 0
    assert same["infonce"] == pytest.approx(float(losses.info_nce(x, x, 0.2)), rel=1e-5)
    assert set(same) == {"view", "deviation", "purity[all]", "purity[first]", "alignment", "uniformity", "infonce"}


def test_view_noise_sweep_matches_magnitudes_and_is_deterministic():
    x, lab = clusters(n_per=12, d=8)
    kw = dict(noise_scales=[0.1, 20.0], groups={"all": None}, denoiser_steps=200, hidden=16, k=3, seed=0)
    rows = view_measures.view_noise_sweep(x, lab, **kw)
    assert [(r["kind"], r["noise_scale"]) for r in rows] == [("diffusion", 0.1), ("random", 0.1),
                                                              ("diffusion", 20.0), ("random", 20.0)]
    for d, r in zip(rows[::2], rows[1::2]):
        # matched, or as far as SimGCL noise reaches (clipped) when the diffusion view is further off
        assert r["deviation"] == pytest.approx(d["deviation"], abs=2e-3) or r["deviation"] < d["deviation"]
        assert r["eps"] > 0 and math.isnan(d["eps"])
    assert rows[1]["deviation"] == pytest.approx(rows[0]["deviation"], abs=2e-3)
    assert rows[0]["abar_T"] == pytest.approx(0.998, abs=1e-4) and rows[2]["abar_T"] == pytest.approx(0.6, abs=1e-4)
    again = view_measures.view_noise_sweep(x, lab, **kw)
    assert [r["purity[all]"] for r in again] == [r["purity[all]"] for r in rows]
    assert [r["alignment"] for r in again] == [r["alignment"] for r in rows]


# ------------------------------------------------------------------ alignment
def test_alignment_report_instance_vs_distribution():
    a = torch.randn(50, 6, generator=torch.Generator().manual_seed(8))
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(9))
    rows = alignment.alignment_report({"id": a, "copy": a.clone(), "shuffled": a[perm]})
    copy, shuffled = rows
    assert copy["view"] == "copy" and copy["matched_pair_rank"] == 1.0
    assert copy["anchor_agreement"] == pytest.approx(1.0) and copy["moment_distance"] == pytest.approx(0.0, abs=1e-6)
    # same rows in another order: identical moments, no instance-level match
    assert shuffled["moment_distance"] == pytest.approx(0.0, abs=1e-6)
    assert shuffled["matched_pair_rank"] < 0.2
    with pytest.raises(DiffCLError, match="anchor"):
        alignment.alignment_report({"image": a}, anchor="id")


@pytest.fixture(scope="module")
def tiny_model():
    ds = make_synthetic(n_users=40, n_items=30, n_topics=3, interactions_per_user=6, seed=0)
    torch.manual_seed(0)
    return DiffCL(ds, DiffCLConfig(embedding_dim=8, use_item_graph=False, use_cl=False))


@pytest.mark.parametrize("kind", ["infonce", "moments"])
def test_alignment_gradients_stop_gradient(tiny_model, kind):
    sg = alignment.alignment_gradients(tiny_model, kind=kind)
    assert sg["id"] == 0.0 and sg["modality"] > 0 and sg["loss"] > 0
    no_sg = alignment.alignment_gradients(tiny_model, kind=kind, stop_gradient=False)
    assert no_sg["id"] > 0 and no_sg["loss"] == pytest.approx(sg["loss"], rel=1e-6)
    assert all(p.grad is None for p in tiny_model.parameters())
    with pytest.raises(DiffCLError, match="kind"):
        alignment.alignment_gradients(tiny_model, kind="cosine")


# ------------------------------------------------------------------ plots
def test_plot_infonce_temperature():
    g = torch.Generator().manual_seed(10)
    z1 = torch.randn(30, 4, generator=g)
    fig = viz.plot_infonce_temperature(z1, z1 + 0.1 * torch.randn(30, 4, generator=g), temperature=0.1, anchor=4, n_show=10)
    ax = fig.axes[0]
    assert len(ax.patches) == 10 and "τ = 0.1" in ax.get_title()
    # the positive (red) bar is among the candidates shown
    assert any(p.get_facecolor()[:3] == matplotlib.colors.to_rgb("tab:red") for p in ax.patches)
    with pytest.raises(DiffCLError, match="anchor"):
        viz.plot_infonce_temperature(z1, z1, anchor=30)
    # with labels, the anchor's topic-mates are coloured and their total weight is in the legend
    lab = np.arange(30) % 3
    fig = viz.plot_infonce_temperature(z1, z1, temperature=0.5, anchor=3, n_show=30, labels=lab)
    ax = fig.axes[0]
    orange = [p for p in ax.patches if p.get_facecolor()[:3] == matplotlib.colors.to_rgb("tab:orange")]
    assert len(orange) == 9
    p = losses.infonce_weights(z1, z1, 0.5)[3]
    share = float(p[(lab == 0) & (np.arange(30) != 3)].sum())
    assert f"total p = {share:.3f}" in ax.get_legend().get_texts()[1].get_text()


def test_plot_view_maps_and_sweep():
    x, lab = clusters()
    hl = np.zeros(len(lab), bool)
    hl[:3] = True
    fig = viz.plot_view_maps(x, {"view A": x * 2, "view B": -x}, lab, highlight=hl, k=5)
    assert len(fig.axes) == 3
    assert "purity 1.000" in fig.axes[1].get_title() and "noisy image 1.000" in fig.axes[1].get_title()
    rows = view_measures.view_noise_sweep(x, lab, [0.1, 5.0], {"all": None, "first": lab == 0}, denoiser_steps=3, hidden=8, k=3)
    fig2 = viz.plot_view_sweep(rows, groups=("all", "first"))
    assert len(fig2.axes) == 3
    assert len(fig2.axes[0].lines) == 4 and len(fig2.axes[1].lines) == 2


def test_joint_embed_links_and_alignment_maps():
    x, lab = clusters(n_per=8)
    coords = viz.joint_embed_2d({"id": x, "image": x * 5, "text": -x}, method="pca")
    assert set(coords) == {"id", "image", "text"} and coords["id"].shape == (24, 2)
    # normalised first: a rescaled copy lands on the same points
    assert np.allclose(coords["id"], coords["image"], atol=1e-5)
    ll = viz.link_lengths(coords)
    assert ll["image"] == pytest.approx(0.0, abs=1e-4) and ll["text"] > 0.5
    # the reference is the median distance of random pairs of the whole map
    far = {"id": np.zeros((10, 2)), "image": np.ones((10, 2))}
    assert viz.link_lengths(far)["image"] == pytest.approx(1.0)  # most random pairs are cross pairs (9/19 same)
    with pytest.raises(DiffCLError, match="rows"):
        viz.joint_embed_2d({"id": x, "image": x[:5]}, method="pca")
    ax = viz.plot_modality_links(coords, lab, [0, 5, 9], title="t")
    assert len(ax.lines) == 3 and ax.get_title() == "t"
    fig = viz.plot_alignment_maps({"a": coords, "b": coords}, lab, n_links=6, seed=1)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 6
    assert "text–id" in fig.axes[1].get_title()


# ------------------------------------------------------------------ widgets
def test_infonce_temperature_widget_redraws(monkeypatch):
    pytest.importorskip("ipywidgets")
    calls = []
    monkeypatch.setattr(viz, "plot_infonce_temperature", lambda *a, **kw: calls.append((a, kw)))
    z = torch.randn(12, 3)
    box = widgets.infonce_temperature_widget(z, z, temperature=0.2, anchor=2)
    tau, anchor = box.children[0].children
    assert "diffcl-control-temperature" in tau._dom_classes and anchor.max == 11
    assert calls[-1][1] == {"temperature": pytest.approx(0.2), "anchor": 2, "labels": None} and calls[-1][0][0] is z
    tau.value = 0.05
    anchor.value = 7
    assert calls[-1][1] == {"temperature": pytest.approx(0.05), "anchor": 7, "labels": None}


def test_alignment_maps_widget_redraws(monkeypatch):
    pytest.importorskip("ipywidgets")
    calls = []
    monkeypatch.setattr(viz, "plot_alignment_maps", lambda *a, **kw: calls.append(kw))
    lab = np.arange(40) % 4
    box = widgets.alignment_maps_widget({"a": {}}, lab, n_links=20)
    links, seed, show_all = box.children[0].children
    assert links.max == 40 and calls[-1] == {"n_links": 20, "seed": 0, "show_all": True}
    links.value = 35
    show_all.value = False
    assert calls[-1] == {"n_links": 35, "seed": 0, "show_all": False}
