"""The epoch loop of :func:`diffcl_lite.training.train`: early stopping, evaluation schedule, batch cap,
model selection, the weights the model ends with, and the logged losses.

Most tests script the validation curve: ``training.evaluate`` is replaced by a stand-in that returns
given metrics (and records the model's weights at each evaluation), so the expected best epoch and
stopping epoch follow from the protocol alone, not from the code under test.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import diffcl_lite.training as training
from diffcl_lite.data import make_synthetic
from diffcl_lite.errors import DiffCLError
from diffcl_lite.evaluation import evaluate
from diffcl_lite.model import build_model
from diffcl_lite.training import BPRSampler, TrainConfig, train
from diffcl_lite.utils import seed_everything

KS = (10, 20)


@pytest.fixture(scope="module")
def tiny():
    return make_synthetic(n_users=60, n_items=40, n_topics=3, interactions_per_user=8, seed=0)


@pytest.fixture
def one_thread():
    """One intra-op thread for the test; the global thread count is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def metrics(recall20: float, ndcg10: float | None = None) -> dict[str, float]:
    """A full metric dict for ks=(10, 20) whose recall@20 and ndcg@10 are the given values."""
    ndcg10 = recall20 if ndcg10 is None else ndcg10
    return {"recall@10": recall20 / 2, "recall@20": recall20, "ndcg@10": ndcg10, "ndcg@20": ndcg10,
            "precision@10": recall20 / 10, "precision@20": recall20 / 20}


class ScriptedEvaluate:
    """Stands in for ``training.evaluate``: the n-th valid evaluation returns ``curve[n]``.

    A test evaluation returns metrics whose recall@20 is ``1000 + n`` (n of the valid evaluation
    just before it), so the reported test metrics name the evaluation they come from. Each valid
    call records a copy of the model's weights.
    """

    def __init__(self, curve: list[dict[str, float]]) -> None:
        self.curve = curve
        self.valid_calls = 0
        self.test_calls: list[int] = []
        self.states: list[dict[str, torch.Tensor]] = []

    def __call__(self, model, data, split="valid", ks=KS, batch_size=1024):
        if split == "valid":
            self.states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            out = self.curve[self.valid_calls]
            self.valid_calls += 1
            return dict(out)
        self.test_calls.append(self.valid_calls - 1)
        return metrics(1000.0 + self.valid_calls - 1)


def run_scripted(monkeypatch, data, curve, **cfg):
    fake = ScriptedEvaluate(curve)
    monkeypatch.setattr(training, "evaluate", fake)
    seed_everything(0)
    model = build_model("mf", data)
    res = train(model, data, TrainConfig(progress=False, batch_size=64, diagnostics=False, ks=KS, **cfg))
    return model, res, fake


def evaluated_epochs(res) -> list[int]:
    return [row["epoch"] for row in res.history if "valid_recall@20" in row]


# ---------------------------------------------------------------------- early stopping and patience
def test_training_stops_after_patience_evaluations_without_improvement(tiny, monkeypatch, one_thread):
    # best at epoch 2, then three evaluations below it (a partial recovery to 0.29 does not count)
    curve = [metrics(v) for v in (0.1, 0.3, 0.2, 0.25, 0.29, 0.5, 0.6, 0.7, 0.8, 0.9)]
    _, res, fake = run_scripted(monkeypatch, tiny, curve, epochs=10, patience=3)
    assert res.best_epoch == 2
    assert res.epochs_run == 5 and [r["epoch"] for r in res.history] == [1, 2, 3, 4, 5]
    assert res.stopped_early is True
    assert fake.valid_calls == 5
    assert res.valid["recall@20"] == pytest.approx(0.3)
    # the test metrics reported are those evaluated right after the best valid evaluation (the 2nd)
    assert res.test["recall@20"] == pytest.approx(1001.0)
    assert fake.test_calls == [0, 1]  # the test split is evaluated only when valid improves
    assert res.to_json()["stopped_early"] is True


def test_a_run_that_keeps_improving_is_not_stopped_early(tiny, monkeypatch, one_thread):
    curve = [metrics(v) for v in (0.1, 0.2, 0.3, 0.4)]
    _, res, fake = run_scripted(monkeypatch, tiny, curve, epochs=4, patience=2)
    assert res.stopped_early is False and res.epochs_run == 4 and res.best_epoch == 4
    assert fake.test_calls == [0, 1, 2, 3]


def test_an_equal_score_is_not_an_improvement(tiny, monkeypatch, one_thread):
    # improvement means strictly greater: a plateau uses up the patience and keeps the first epoch
    curve = [metrics(v) for v in (0.3, 0.3, 0.3, 0.9)]
    _, res, _ = run_scripted(monkeypatch, tiny, curve, epochs=4, patience=2)
    assert res.best_epoch == 1 and res.epochs_run == 3 and res.stopped_early


# ---------------------------------------------------------------------- eval_every
def test_eval_every_evaluates_every_nth_epoch_and_the_last(tiny, monkeypatch, one_thread):
    curve = [metrics(v) for v in (0.1, 0.2, 0.3)]
    _, res, fake = run_scripted(monkeypatch, tiny, curve, epochs=7, eval_every=3, patience=10)
    assert evaluated_epochs(res) == [3, 6, 7]
    assert fake.valid_calls == 3 and res.epochs_run == 7
    assert res.best_epoch == 7
    # rows of epochs without evaluation carry the losses only
    assert all("loss_total" in r for r in res.history)
    assert not any(k.startswith("valid_") for r in res.history if r["epoch"] in (1, 2, 4, 5) for k in r)


def test_patience_counts_evaluations_not_epochs(tiny, monkeypatch, one_thread):
    # evaluations at epochs 2, 4, 6, 8...: best at 2, worse at 4 and 6 -> patience 2 is used up after epoch 6
    curve = [metrics(v) for v in (0.5, 0.4, 0.3, 0.9, 0.9)]
    _, res, _ = run_scripted(monkeypatch, tiny, curve, epochs=10, eval_every=2, patience=2)
    assert evaluated_epochs(res) == [2, 4, 6]
    assert res.epochs_run == 6 and res.best_epoch == 2 and res.stopped_early


# ---------------------------------------------------------------------- select_metric
def test_select_metric_chooses_the_epoch_by_that_metric(tiny, monkeypatch, one_thread):
    # recall@20 peaks at epoch 2, ndcg@10 at epoch 4: the two selections disagree
    curve = [metrics(0.1, 0.1), metrics(0.5, 0.2), metrics(0.3, 0.3), metrics(0.2, 0.6), metrics(0.1, 0.4)]
    _, by_recall, _ = run_scripted(monkeypatch, tiny, curve, epochs=5, patience=10)
    _, by_ndcg, _ = run_scripted(monkeypatch, tiny, curve, epochs=5, patience=10, select_metric="ndcg@10")
    assert by_recall.best_epoch == 2 and by_recall.valid["recall@20"] == pytest.approx(0.5)
    assert by_ndcg.best_epoch == 4 and by_ndcg.valid["ndcg@10"] == pytest.approx(0.6)
    assert by_ndcg.test["recall@20"] == pytest.approx(1003.0)  # test metrics of the 4th evaluation


def test_select_metric_needs_its_k_among_the_ks():
    with pytest.raises(DiffCLError, match="select_metric"):
        TrainConfig(ks=(10, 20), select_metric="ndcg@5")


# ---------------------------------------------------------------------- the weights the model ends with
def test_the_model_ends_with_the_best_valid_epochs_weights(tiny, monkeypatch, one_thread):
    curve = [metrics(v) for v in (0.1, 0.4, 0.2, 0.3, 0.1)]
    model, res, fake = run_scripted(monkeypatch, tiny, curve, epochs=5, patience=10)
    assert res.best_epoch == 2 and res.epochs_run == 5
    final = model.state_dict()
    best, last = fake.states[1], fake.states[4]
    for name in final:
        assert torch.equal(final[name], best[name]), name
    # and that is a real change: the weights after the last epoch were different
    assert any(not torch.equal(final[n], last[n]) for n in final)


def test_the_final_models_valid_metrics_are_the_reported_best(tiny, one_thread):
    # real evaluation: re-evaluating the returned model reproduces the best epoch's valid metrics
    seed_everything(0)
    model = build_model("mf", tiny)
    res = train(model, tiny, TrainConfig(epochs=6, batch_size=64, lr=0.05, progress=False, ks=KS, patience=10))
    again = evaluate(model, tiny, "valid", KS)
    assert res.valid == pytest.approx({k: round(v, 6) for k, v in again.items()}, abs=1e-6)
    best_row = next(r for r in res.history if r["epoch"] == res.best_epoch)
    assert best_row["valid_recall@20"] == max(r["valid_recall@20"] for r in res.history)
    assert again["recall@20"] == pytest.approx(best_row["valid_recall@20"], abs=1e-6)


# ---------------------------------------------------------------------- max_batches and the logged loss
class LossRecorder:
    """Wraps ``model.loss`` and keeps the float value of every term of every batch."""

    def __init__(self, model) -> None:
        self.inner = model.loss
        self.calls: list[dict[str, float]] = []
        self.sizes: list[int] = []
        model.loss = self

    def __call__(self, users, pos, neg):
        terms = self.inner(users, pos, neg)
        self.calls.append({k: float(v.detach()) for k, v in terms.items()})
        self.sizes.append(len(users))
        return terms


def recorded_run(data, model_name="mf", **cfg):
    seed_everything(0)
    model = build_model(model_name, data)
    rec = LossRecorder(model)
    res = train(model, data, TrainConfig(progress=False, ks=KS, diagnostics=False, patience=50, **cfg))
    return res, rec


def test_max_batches_caps_the_batches_of_every_epoch(tiny, one_thread):
    n_pairs = len(np.unique(tiny.train, axis=0))
    assert math.ceil(n_pairs / 32) > 3  # the cap is below the epoch's natural length
    res, rec = recorded_run(tiny, epochs=3, batch_size=32, max_batches=3)
    assert len(rec.calls) == 3 * 3 and set(rec.sizes) == {32}
    # a cap above the epoch's length changes nothing: every pair is seen once per epoch
    res, rec = recorded_run(tiny, epochs=2, batch_size=32, max_batches=10_000)
    assert len(rec.calls) == 2 * math.ceil(n_pairs / 32)
    assert sum(rec.sizes) == 2 * n_pairs


def test_the_logged_epoch_loss_is_the_mean_of_its_batch_losses(tiny, one_thread):
    res, rec = recorded_run(tiny, epochs=3, batch_size=50)
    per_epoch = len(rec.calls) // 3
    assert per_epoch == math.ceil(len(np.unique(tiny.train, axis=0)) / 50)
    for e, row in enumerate(res.history):
        batches = rec.calls[e * per_epoch : (e + 1) * per_epoch]
        for term in ("total", "bpr", "reg"):
            assert row[f"loss_{term}"] == pytest.approx(np.mean([b[term] for b in batches]), rel=1e-9), (e, term)


def test_the_logged_loss_of_a_capped_epoch_is_the_mean_over_the_batches_run(tiny, one_thread):
    res, rec = recorded_run(tiny, "diffcl", epochs=2, batch_size=40, max_batches=2)
    assert len(rec.calls) == 4
    for e, row in enumerate(res.history):
        batches = rec.calls[2 * e : 2 * e + 2]
        for term in ("total", "bpr", "cl", "diff", "align", "reg"):
            assert row[f"loss_{term}"] == pytest.approx(np.mean([b[term] for b in batches]), rel=1e-9), (e, term)


def test_sampler_length_is_the_number_of_batches_it_yields(tiny):
    s = BPRSampler(tiny, batch_size=64, seed=0)
    batches = list(s.epoch())
    assert len(batches) == len(s) == math.ceil(len(np.unique(tiny.train, axis=0)) / 64)
    pairs = np.concatenate([np.stack([u, p], 1) for u, p, _ in batches])
    # one epoch is a permutation of the unique train pairs
    assert sorted(map(tuple, pairs)) == sorted(map(tuple, np.unique(tiny.train, axis=0)))
