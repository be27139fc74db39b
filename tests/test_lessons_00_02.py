"""Lesson measures and figures of notebooks 00-02: graph summaries, over-smoothing, topic agreement, kNN purity."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

from diffcl_lite import graphs  # noqa: E402
from diffcl_lite.lessons import viz  # noqa: E402
from diffcl_lite.lessons.measures import graphs as measures  # noqa: E402
from diffcl_lite.data import make_synthetic  # noqa: E402
from diffcl_lite.errors import DiffCLError  # noqa: E402


@pytest.fixture(scope="module")
def small():
    return make_synthetic(n_users=120, n_items=90, n_topics=4, interactions_per_user=10, seed=3)


def _brute_cos(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.linalg.norm(x, axis=1) > 0]
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    return u @ u.T


# ------------------------------------------------------------------ over-smoothing measures
def test_mean_pairwise_cosine_matches_brute_force_and_ignores_zero_rows():
    x = np.random.default_rng(0).standard_normal((25, 6))
    c = _brute_cos(x)
    off = ~np.eye(len(c), dtype=bool)
    assert measures.mean_pairwise_cosine(x) == pytest.approx(c[off].mean(), rel=1e-5)
    with_zero = np.vstack([x, np.zeros((3, 6))])
    assert measures.mean_pairwise_cosine(torch.tensor(with_zero)) == pytest.approx(c[off].mean(), rel=1e-5)
    same = np.tile([[1.0, 2.0, -1.0]], (5, 1)) * np.arange(1, 6)[:, None]
    assert measures.mean_pairwise_cosine(same) == pytest.approx(1.0)
    with pytest.raises(DiffCLError, match="at least 2"):
        measures.mean_pairwise_cosine(np.ones((1, 3)))


def test_topic_separation_matches_brute_force():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 30)
    x = rng.standard_normal((30, 5)) + 2.0 * np.eye(5)[labels]
    c = _brute_cos(x)
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(30, dtype=bool)
    expected = c[same & off].mean() - c[~same].mean()
    assert expected > 0.1
    assert measures.topic_separation(x, labels) == pytest.approx(expected, rel=1e-5)
    assert measures.topic_separation(rng.standard_normal((400, 8)), rng.integers(0, 4, 400)) == pytest.approx(0, abs=0.03)
    with pytest.raises(DiffCLError, match="one label per row"):
        measures.topic_separation(x, labels[:-1])
    with pytest.raises(DiffCLError, match="different-topic pair"):
        measures.topic_separation(x, np.zeros(30, int))


def test_oversmoothing_curve_layers_and_collapse(small):
    adj = graphs.bipartite_adjacency(small.n_users, small.n_items, small.train)
    x = torch.randn(small.n_users + small.n_items, 8, generator=torch.Generator().manual_seed(0))
    items = slice(small.n_users, None)
    curve = measures.oversmoothing_curve(adj, x, 20, nodes=items)
    assert len(curve) == 21
    assert curve[0] == pytest.approx(measures.mean_pairwise_cosine(x[items]), rel=1e-6)
    layers = graphs.propagate_layers(adj, x, 3)
    assert curve[3] == pytest.approx(measures.mean_pairwise_cosine(layers[3][items]), rel=1e-6)
    # deep propagation makes every item embedding point the same way
    assert curve[0] < 0.2 and curve[-1] > 0.99
    mean_curve = measures.oversmoothing_curve(adj, x, 20, nodes=items, readout="mean")
    assert mean_curve[2] == pytest.approx(measures.mean_pairwise_cosine(torch.stack(layers[:3]).mean(0)[items]), rel=1e-6)
    assert mean_curve[-1] < curve[-1]
    sep = measures.oversmoothing_curve(adj, x, 20, nodes=np.arange(small.n_users, small.n_users + small.n_items),
                                     measure="separation", labels=small.item_labels)
    assert max(sep) > sep[0] + 0.02 and sep[-1] < max(sep) / 5
    with pytest.raises(DiffCLError, match="needs labels"):
        measures.oversmoothing_curve(adj, x, 2, measure="separation")
    with pytest.raises(DiffCLError, match="readout"):
        measures.oversmoothing_curve(adj, x, 2, readout="sum")


# 3 users, 3 items. User 2 has no interaction (isolated); (0, 1) appears twice.
N_USERS, N_ITEMS = 3, 3
TRAIN = np.array([[0, 0], [0, 1], [0, 1], [1, 1], [1, 2]], dtype=np.int64)


# ------------------------------------------------------------------ graph summaries and the one kNN purity
def test_graph_summary_bipartite_hand_case():
    s = measures.graph_summary(graphs.bipartite_adjacency(N_USERS, N_ITEMS, TRAIN), n_users=N_USERS)
    assert s["nodes"] == 6 and s["users"] == 3 and s["items"] == 3
    assert s["edges"] == 4 and s["symmetric"] is True
    assert s["density"] == pytest.approx(4 / 9, rel=1e-5)
    assert s["isolated"] == 1 and s["isolated_users"] == 1 and s["isolated_items"] == 0
    # user degrees [2, 2, 0], item degrees [1, 2, 1]
    assert s["user_degree"] == {"min": 0.0, "25%": 1.0, "median": 2.0, "75%": 2.0, "90%": 2.0, "max": 2.0,
                                "mean": 1.33333}
    assert s["item_degree"]["median"] == 1.0 and s["item_degree"]["max"] == 2.0
    assert s["degree"]["mean"] == pytest.approx(8 / 6, rel=1e-5)
    assert s == measures.graph_summary(graphs.bipartite_adjacency(N_USERS, N_ITEMS, TRAIN, layout="coo"), n_users=N_USERS)


def test_graph_summary_directed_and_undirected():
    # path 0-1-2 plus isolated node 3 (symmetric)
    a = np.zeros((4, 4))
    a[0, 1] = a[1, 0] = a[1, 2] = a[2, 1] = 0.5
    s = measures.graph_summary(a)
    assert s["edges"] == 2 and s["symmetric"] and s["isolated"] == 1
    assert s["density"] == pytest.approx(2 / 6, rel=1e-5)
    assert s["degree"]["max"] == 2.0 and s["degree"]["min"] == 0.0
    # directed kNN-like graph
    d = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 0], [1, 0, 0]], dtype=float))
    s2 = measures.graph_summary(d)
    assert s2["edges"] == 3 and not s2["symmetric"]
    assert s2["density"] == pytest.approx(0.5)
    assert s2["in_degree"]["max"] == 2.0


def test_neighbour_topic_agreement():
    idx = np.array([[1, 2], [0, 3], [3, 0], [2, 1]])
    labels = np.array([0, 0, 1, 1])
    # row 0: 1 of 2 agree; row 1: 1/2; row 2: 1/2; row 3: 1/2
    assert measures.neighbour_topic_agreement(idx, labels) == pytest.approx(0.5)
    assert measures.neighbour_topic_agreement(torch.tensor([[1], [0], [3], [2]]), torch.tensor(labels)) == 1.0
    with pytest.raises(DiffCLError):
        measures.neighbour_topic_agreement(idx, labels[:3])


def test_neighbour_purity_by_hand_and_rows():
    # 5 items, labels a a b b b; neighbour lists written out, purity counted by hand
    idx = np.array([[1, 2, 3], [0, 4, 2], [3, 4, 0], [2, 1, 0], [0, 1, 2]])
    labels = np.array(["a", "a", "b", "b", "b"])
    # item 0: {a, b, b} -> 1/3; item 1: {a, b, b} -> 1/3; item 2: {b, b, a} -> 2/3; item 3: {b, a, a} -> 1/3;
    # item 4: {a, a, b} -> 1/3
    np.testing.assert_allclose(measures.neighbour_purity(idx, labels), [1 / 3, 1 / 3, 2 / 3, 1 / 3, 1 / 3])
    assert measures.neighbour_topic_agreement(idx, labels) == pytest.approx(6 / 15, abs=1e-6)
    # rows as a mask or as indices: items 2 and 3 -> (2/3 + 1/3) / 2
    assert measures.neighbour_topic_agreement(idx, labels, rows=np.array([0, 0, 1, 1, 0], bool)) == pytest.approx(0.5)
    assert measures.neighbour_topic_agreement(idx, labels, rows=[2, 3]) == pytest.approx(0.5)
    assert np.isnan(measures.neighbour_topic_agreement(idx, labels, rows=np.zeros(5, bool)))
    with pytest.raises(DiffCLError, match="rows mask"):
        measures.neighbour_topic_agreement(idx, labels, rows=np.ones(4, bool))
    with pytest.raises(DiffCLError, match="outside"):
        measures.neighbour_purity(idx + 1, labels)


# ------------------------------------------------------------------ item-item graph quality
def test_graph_topic_agreement_weighted_and_rows():
    labels = np.array([0, 0, 1, 1])
    s = np.zeros((4, 4))
    s[0, 1], s[0, 2], s[1, 0], s[2, 3], s[3, 0] = 3.0, 1.0, 1.0, 2.0, 2.0
    # same-topic weight: 3 (0->1) + 1 (1->0) + 2 (2->3) = 6 of 9
    assert measures.graph_topic_agreement(s, labels) == pytest.approx(6 / 9)
    assert measures.graph_topic_agreement(torch.tensor(s).to_sparse(), labels, rows=[0]) == pytest.approx(3 / 4)
    assert measures.graph_topic_agreement(s, labels, rows=np.array([False, False, True, True])) == pytest.approx(0.5)
    with pytest.raises(DiffCLError, match="no edges"):
        measures.graph_topic_agreement(np.zeros((4, 4)), labels)


def test_knn_graph_agreement_equals_neighbour_agreement(small):
    x = small.features["text"]
    idx, _ = graphs.knn_indices(x, 5)
    expected = measures.neighbour_topic_agreement(idx, small.item_labels)
    assert measures.graph_topic_agreement(graphs.knn_graph(x, 5), small.item_labels) == pytest.approx(expected, rel=1e-5)
    assert measures.fused_topic_agreement(small.features, small.item_labels, 5, image_weight=0.0) == pytest.approx(
        expected, rel=1e-5)
    assert measures.fused_topic_agreement(small.features, small.item_labels, 5, image_weight=0.0, fuse="similarity") == \
        pytest.approx(expected, rel=1e-5)


def test_fused_knn_indices_is_topk_of_weighted_cosine(small):
    feats = small.features
    idx, sim = measures.fused_knn_indices(feats, k=4, weights={"image": 0.3, "text": 0.7})
    fused = 0.3 * _brute_cos(feats["image"]) + 0.7 * _brute_cos(feats["text"])
    np.fill_diagonal(fused, -np.inf)
    ref = np.argsort(-fused, axis=1)[:, :4]
    assert (idx.numpy() == ref).all()
    np.testing.assert_allclose(sim.numpy(), np.take_along_axis(fused, ref, 1), atol=1e-5)


def test_fused_topic_agreement_rows_and_errors(small):
    lab, noisy = small.item_labels, small.meta["noisy_modality"]
    img_noisy = noisy == "image"
    assert img_noisy.sum() > 0
    # items whose image was replaced by noise: their image neighbours are close to chance,
    # their text neighbours are not
    by_image = measures.fused_topic_agreement(small.features, lab, 5, image_weight=1.0, rows=img_noisy)
    by_text = measures.fused_topic_agreement(small.features, lab, 5, image_weight=0.0, rows=img_noisy)
    assert by_text > by_image + 0.3
    # similarity fusion at image weight 1 is the image kNN graph: count its same-topic neighbours one by one
    idx, _ = graphs.knn_indices(small.features["image"], 5)
    same = total = 0
    for i in np.flatnonzero(img_noisy):
        for j in idx[i].tolist():
            same += int(lab[j] == lab[i])
            total += 1
    manual = same / total
    assert measures.fused_topic_agreement(small.features, lab, 5, 1.0, rows=img_noisy, fuse="similarity") == \
        pytest.approx(manual, rel=1e-5)
    with pytest.raises(DiffCLError, match="image_weight"):
        measures.fused_topic_agreement(small.features, lab, 5, image_weight=1.5)
    with pytest.raises(DiffCLError, match="not both"):
        measures.fused_topic_agreement(small.features, lab, 5, image_weight=0.5, weights={"image": 1, "text": 1})
    with pytest.raises(DiffCLError, match="fuse"):
        measures.fused_topic_agreement(small.features, lab, 5, fuse="late")
    with pytest.raises(DiffCLError, match="exactly two modalities"):
        measures.fused_topic_agreement({"audio": small.features["text"]}, lab, 5, image_weight=0.5)


@pytest.mark.parametrize("fuse", ["graph", "similarity"])
def test_topic_agreement_sweep_equals_single_calls(small, fuse):
    noisy = small.meta["noisy_modality"]
    groups = {"all": None, "noisy image": noisy == "image", "none": np.zeros(small.n_items, bool)}
    weights = (0.0, 0.25, 1.0)
    out = measures.topic_agreement_sweep(small.features, small.item_labels, 6, weights, groups, fuse=fuse)
    for w_pos, w in enumerate(weights):
        for g in ("all", "noisy image"):
            single = measures.fused_topic_agreement(small.features, small.item_labels, 6, w, rows=groups[g], fuse=fuse)
            assert out[g][w_pos] == pytest.approx(single, rel=1e-5)
    assert all(np.isnan(v) for v in out["none"])


def test_knn_overlap_by_hand():
    a = np.array([[1, 2, 3], [0, 2, 3]])
    b = np.array([[3, 1, 0], [4, 5, 1]])
    np.testing.assert_allclose(measures.knn_overlap(a, torch.tensor(b)), [2 / 3, 0.0])
    with pytest.raises(DiffCLError, match="same shape"):
        measures.knn_overlap(a, b[:, :2])


# ------------------------------------------------------------------ plots (pure functions)
def test_plot_oversmoothing_draws_the_package_curves(small):
    adj = graphs.bipartite_adjacency(small.n_users, small.n_items, small.train)
    x = torch.randn(small.n_users + small.n_items, 8, generator=torch.Generator().manual_seed(1))
    fig = viz.plot_oversmoothing(adj, x, n_layers=2, labels=small.item_labels, n_users=small.n_users, max_layers=6)
    assert len(fig.axes) == 3 and fig.axes[2].get_title() == "all item pairs at L = 2"
    drawn = fig.axes[0].lines[0].get_ydata()
    expected = measures.oversmoothing_curve(adj, x, 6, nodes=slice(small.n_users, None))
    np.testing.assert_allclose(drawn, expected)
    plt.close(fig)
    fig = viz.plot_oversmoothing(adj, x, n_layers=9, n_users=small.n_users, max_layers=4)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines[0].get_xdata()) == 10
    plt.close(fig)


def test_plot_topic_agreement_draws_the_sweep(small):
    fig = viz.plot_topic_agreement(small.features, small.item_labels, k=5, image_weight=0.3,
                                   noisy_modality=small.meta["noisy_modality"], n_grid=3)
    ax = fig.axes[0]
    sweep = measures.topic_agreement_sweep(small.features, small.item_labels, 5, (0.0, 0.3, 0.5, 1.0))
    np.testing.assert_allclose(ax.lines[0].get_ydata(), sweep["all"])
    assert "k = 5" in ax.get_title() and "w = 0.30" in fig.axes[1].get_title()
    plt.close(fig)
    with pytest.raises(DiffCLError, match="two modalities"):
        viz.plot_topic_agreement({"text": small.features["text"]}, small.item_labels)


def test_plot_degrees(small):
    fig = viz.plot_degrees(small.user_degrees(), small.item_degrees())
    assert len(fig.axes) == 3 and "long tail" in fig.axes[2].get_title()
    plt.close(fig)
