"""Package functions behind notebooks 07-08: purity, topic centroids, atlas and ablation plots,
widgets, best variant, valid/test curves and the one-user ranking."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from diffcl_lite import evaluation, experiments  # noqa: E402
from diffcl_lite.lessons import viz  # noqa: E402
from diffcl_lite.data import make_synthetic  # noqa: E402
from diffcl_lite.errors import DiffCLError  # noqa: E402
from diffcl_lite.training import TrainConfig, TrainResult, run_experiment  # noqa: E402


@pytest.fixture(scope="module")
def small():
    return make_synthetic(n_users=80, n_items=60, n_topics=3, interactions_per_user=8, seed=5)


def _result(label: str, r20: float, epoch: int = 1) -> tuple[str, TrainResult]:
    metrics = {"recall@10": r20 / 2, "recall@20": r20, "ndcg@10": r20 / 3, "ndcg@20": r20 / 2.5, "precision@20": r20 / 10}
    return label, TrainResult(model=label, dataset="d", best_epoch=epoch, valid=dict(metrics), test=dict(metrics))


# ------------------------------------------------------------------ purity and centroids
def test_purity_per_point_matches_brute_force_and_averages_to_purity():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 50)
    x = rng.standard_normal((50, 6)) + 1.5 * np.eye(6)[labels]
    per = viz.purity_per_point(x, labels, k=4)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = u @ u.T
    np.fill_diagonal(cos, -np.inf)
    nn = np.argsort(-cos, axis=1)[:, :4]
    expected = (labels[nn] == labels[:, None]).mean(1)
    np.testing.assert_allclose(per, expected)
    assert per.mean() == pytest.approx(viz.neighbourhood_purity(x, labels, k=4))
    with pytest.raises(DiffCLError, match="one label per row"):
        viz.purity_per_point(x, labels[:-1])


def test_chance_purity():
    assert viz.chance_purity([0, 0, 1, 1]) == pytest.approx(0.5)
    assert viz.chance_purity(["a", "a", "a", "b"]) == pytest.approx(0.75**2 + 0.25**2)


def test_topic_centroid_similarity_unit_rows_and_missing_topics():
    x = np.array([[1.0, 0.0], [10.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 1.0]])
    labels = np.array([0, 0, 1, 1, 2])
    c = viz.topic_centroid_similarity(x, labels, n_topics=4)
    assert c.shape == (4, 4)
    np.testing.assert_allclose(c[:3, :3], [[1, 0, 2**-0.5], [0, 1, 2**-0.5], [2**-0.5, 2**-0.5, 1]], atol=1e-12)
    assert np.isnan(c[3]).all()
    # row scale does not matter (popular items with long vectors do not dominate)
    np.testing.assert_allclose(viz.topic_centroid_similarity(x * np.arange(1, 6)[:, None], labels), c[:3, :3])
    with pytest.raises(DiffCLError, match="one label per row"):
        viz.topic_centroid_similarity(x, labels[:3])


# ------------------------------------------------------------------ figures and widgets
def test_plot_atlas_categorical_numeric_and_errors():
    rng = np.random.default_rng(1)
    maps = {"A": rng.standard_normal((40, 2)), "B": rng.standard_normal((40, 2))}
    colours = {"topic": rng.integers(0, 4, 40), "degree": np.arange(40) ** 2,
               "noisy": np.array(["clean"] * 30 + ["image"] * 6 + ["text"] * 4, dtype=object)}
    fig = viz.plot_atlas(maps, colours, "topic", titles={"A": "model A"})
    assert [ax.get_title() for ax in fig.axes[:2]] == ["model A", "B"]
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 4
    plt.close(fig)
    fig = viz.plot_atlas(maps, colours, "noisy")
    assert sorted(t.get_text() for t in fig.legends[0].get_texts()) == ["clean (30)", "image (6)", "text (4)"]
    plt.close(fig)
    fig = viz.plot_atlas(maps, colours, "degree")
    assert len(fig.axes) == 3  # two maps and a colour bar
    plt.close(fig)
    with pytest.raises(DiffCLError, match="colour_by"):
        viz.plot_atlas(maps, colours, "size")
    with pytest.raises(DiffCLError, match="has 40 values"):
        viz.plot_atlas({"A": np.zeros((3, 2))}, colours, "topic")


def test_plot_ablation_histories_and_selection():
    rows = [_result("diffcl", 0.3), _result("w/o CL", 0.25), _result("LightGCN", 0.2), _result("MF-BPR", 0.1)]
    fig = viz.plot_ablation(rows, "recall@20")
    ax = fig.axes[0]
    ticks = sorted(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels())), reverse=True)
    assert [label for _, label in ticks] == ["diffcl", "w/o CL", "LightGCN", "MF-BPR"]  # first row on top
    assert [round(p.get_width(), 3) for p in ax.patches] == [0.3, 0.25, 0.2, 0.1]
    plt.close(fig)
    with pytest.raises(DiffCLError, match="not in the test results"):
        viz.plot_ablation(rows, "recall@50")
    hist = {"a": [{"epoch": 1, "loss_total": 1.0}, {"epoch": 2, "loss_total": 0.5}], "b": [{"epoch": 1}]}
    fig = viz.plot_histories(hist, "loss_total")
    assert len(fig.axes[0].lines) == 1
    plt.close(fig)
    curve = [{"epoch": e, "valid_recall@20": v, "test_recall@20": t}
             for e, v, t in [(1, 0.1, 0.12), (2, 0.3, 0.2), (3, 0.2, 0.25)]]
    fig = viz.plot_selection(curve)
    assert len(fig.axes[0].lines) == 4  # valid, test, square, star
    plt.close(fig)
    other = [dict(r, **{"test_recall@20": r["test_recall@20"] + 0.1}) for r in curve]
    fig = viz.plot_selection({"a": curve, "b": other})
    lines = fig.axes[0].lines
    assert len(lines) == 6
    assert list(lines[-1].get_ydata()) == [0.35]  # the star: best test over both runs
    plt.close(fig)


def test_widgets_wrap_pure_plots():
    pytest.importorskip("ipywidgets")
    from diffcl_lite.lessons import widgets

    maps = {"A": np.random.default_rng(2).standard_normal((20, 2))}
    box = widgets.atlas_explorer(maps, {"topic": np.arange(20) % 3, "degree": np.arange(20)})
    dropdown = box.children[0].children[0]
    assert dropdown.value == "topic" and list(dropdown.options) == ["topic", "degree"]
    dropdown.value = "degree"  # redraws through plot_atlas without error
    box = widgets.history_explorer({"a": [{"epoch": 1, "x": 1.0}]}, ["x", "y"])
    assert box.children[0].children[0].value == "x"
    plt.close("all")


# ------------------------------------------------------------------ experiments and evaluation
def test_best_variant_first_on_tie_and_errors():
    rows = [_result("a", 0.2), _result("b", 0.3), _result("c", 0.3)]
    assert experiments.best_variant(rows) == "b"
    assert experiments.best_variant(rows, "ndcg@10") == "b"
    assert experiments.best_variant([_result("x", 0.1)], split="valid") == "x"
    with pytest.raises(DiffCLError, match="no rows"):
        experiments.best_variant([])
    with pytest.raises(DiffCLError, match="has no test"):
        experiments.best_variant(rows, "recall@50")


@pytest.fixture
def one_thread():
    """One intra-op thread for the test; the global thread count is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_valid_test_curves_replay_an_uninterrupted_run(small, one_thread):
    tcfg = TrainConfig(epochs=3, batch_size=256, seed=1, progress=False)
    _, res = run_experiment(small, "mf", train_config=tcfg, device="cpu")
    curve = experiments.valid_test_curves(small, "mf", train_config=tcfg, device="cpu")
    assert [r["epoch"] for r in curve] == [1, 2, 3]
    for r, h in zip(curve, res.history):
        assert r["valid_recall@20"] == h["valid_recall@20"]
        assert r["loss_total"] == pytest.approx(h["loss_total"])
    best = next(r for r in curve if r["epoch"] == res.best_epoch)
    assert best["test_recall@20"] == pytest.approx(res.test["recall@20"], abs=1e-6)
    s = experiments.selection_summary(curve)
    assert s["valid_selected_epoch"] == res.best_epoch
    assert s["best_test"] == max(r["test_recall@20"] for r in curve)
    assert s["optimism"] == pytest.approx(s["best_test"] - s["valid_selected_test"]) and s["optimism"] >= 0


def test_selection_summary_ties_and_errors():
    curve = [{"epoch": e, "valid_recall@20": v, "test_recall@20": t}
             for e, v, t in [(1, 0.2, 0.1), (2, 0.2, 0.3), (3, 0.1, 0.3)]]
    s = experiments.selection_summary(curve)
    assert (s["valid_selected_epoch"], s["valid_selected_test"], s["best_test_epoch"]) == (1, 0.1, 2)
    assert (s["valid_selected_index"], s["best_test_index"]) == (0, 1)
    assert s["optimism"] == pytest.approx(0.2)
    two_runs = curve + [{"epoch": 1, "valid_recall@20": 0.25, "test_recall@20": 0.2}]
    s = experiments.selection_summary(two_runs)
    assert (s["valid_selected_index"], s["valid_selected_test"], s["optimism"]) == (3, 0.2, pytest.approx(0.1))
    with pytest.raises(DiffCLError, match="empty"):
        experiments.selection_summary([])
    with pytest.raises(DiffCLError, match="rows need"):
        experiments.selection_summary(curve, "ndcg@20")


def test_user_topk_agrees_with_evaluate_embeddings(small):
    g = torch.Generator().manual_seed(0)
    u, i = torch.randn(small.n_users, 8, generator=g), torch.randn(small.n_items, 8, generator=g)
    users = np.unique(small.test[:, 0])
    recalls = []
    for user in users:
        ranked, relevant = evaluation.user_topk(u, i, small, int(user), "test", k=20)
        assert len(ranked) == 20 and len(set(ranked)) == 20
        seen = set(small.train[small.train[:, 0] == user, 1]) | set(small.valid[small.valid[:, 0] == user, 1])
        assert not seen & set(ranked.tolist())
        assert relevant.tolist() == sorted(small.test[small.test[:, 0] == user, 1].tolist())
        hits = torch.as_tensor(np.isin(ranked, relevant))[None]
        recalls.append(float(evaluation.ranking_metrics(hits, torch.tensor([len(relevant)]), (20,))["recall@20"][0]))
    full = evaluation.evaluate_embeddings(u, i, small, "test", ks=(20,))
    assert np.mean(recalls) == pytest.approx(full["recall@20"], rel=1e-6)
    with pytest.raises(DiffCLError, match="split"):
        evaluation.user_topk(u, i, small, 0, "train")
    with pytest.raises(DiffCLError, match="user="):
        evaluation.user_topk(u, i, small, small.n_users)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_resume_on_cuda_restores_cpu_rng_state(small, tmp_path):
    # load_checkpoint(map_location="cuda") moves the saved RNG byte tensors to the GPU; resuming must still work
    full = TrainConfig(epochs=2, batch_size=256, seed=2, progress=False)
    _, straight = run_experiment(small, "mf", train_config=full, device="cuda")
    first = TrainConfig(epochs=1, batch_size=256, seed=2, progress=False, checkpoint_dir=str(tmp_path))
    run_experiment(small, "mf", train_config=first, device="cuda")
    again = TrainConfig(epochs=2, batch_size=256, seed=2, progress=False, checkpoint_dir=str(tmp_path), resume=True)
    _, resumed = run_experiment(small, "mf", train_config=again, device="cuda")
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.history[-1]["loss_total"] == pytest.approx(straight.history[-1]["loss_total"], rel=1e-5)
