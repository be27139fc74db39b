"""Seeded experiment tables: per-user metrics, resumable run store, paired tests against DiffCL."""
from __future__ import annotations

import json

import numpy as np
import pytest

from diffcl_lite.data import make_synthetic
from diffcl_lite.errors import DiffCLError
from diffcl_lite.evaluation import evaluate
from diffcl_lite.experiments import (RunSpec, RunStore, per_user_metrics, run_ablation_seeds, run_key, run_seeded,
                                     summarize, summary_table)
from diffcl_lite.model import DiffCLConfig
from diffcl_lite.training import TrainConfig, run_experiment


@pytest.fixture(scope="module")
def small():
    return make_synthetic(n_users=150, n_items=90, n_topics=4, interactions_per_user=10, seed=0)


TINY = TrainConfig(epochs=2, batch_size=256, lr=5e-3, patience=5, progress=False)
CFG = DiffCLConfig(embedding_dim=16, denoiser_hidden=16)


@pytest.mark.parametrize("split", ["valid", "test"])
def test_per_user_metrics_average_to_evaluate(small, split):
    model, _ = run_experiment(small, "lightgcn", CFG, TINY, device="cpu")
    users, per_user = per_user_metrics(model, small, split)
    ref = evaluate(model, small, split)
    held = np.diff(small.interaction_matrix(split).indptr)
    assert np.array_equal(users, np.where(held > 0)[0])
    for name, value in ref.items():
        assert per_user[name].shape == users.shape
        assert per_user[name].mean() == pytest.approx(value, abs=1e-6)
    assert per_user["recall@20"].min() >= 0 and per_user["recall@20"].max() <= 1


def test_run_store_skips_done_runs_and_drops_a_cut_line(small, tmp_path):
    path = tmp_path / "runs.jsonl"
    specs = [RunSpec("LightGCN", "lightgcn", CFG, TINY), RunSpec("MF-BPR", "mf", CFG, TINY)]
    first = run_seeded(small, specs, [0, 1], RunStore(path), device="cpu", progress=False)
    assert len(first) == 4 and len(path.read_text().splitlines()) == 4
    # a crash in the middle of a write leaves a cut line: it is dropped and only that run reruns
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])
    store = RunStore(path)
    assert len(store.records) == 3
    assert len(path.read_text().splitlines()) == 3
    again = run_seeded(small, specs, [0, 1], store, device="cpu", progress=False)
    assert [r["key"] for r in again] == [r["key"] for r in first]
    assert len(path.read_text().splitlines()) == 4
    # same seed -> same numbers (the rerun of the cut run equals the original)
    assert again[3]["result"]["test"] == first[3]["result"]["test"]
    assert again[3]["per_user"] == first[3]["per_user"]
    # a baseline's key ignores DiffCL-only fields; DiffCL's does not
    other = DiffCLConfig(embedding_dim=16, denoiser_hidden=16, lambda_cl=0.3)
    assert run_key(specs[0], 0, small.name) == run_key(RunSpec("LightGCN", "lightgcn", other, TINY), 0, small.name)
    assert run_key(RunSpec("d", "diffcl", CFG, TINY), 0, "x") != run_key(RunSpec("d", "diffcl", other, TINY), 0, "x")
    # the key depends on the seed and the configs, not on the progress bar
    assert run_key(specs[0], 0, small.name) != run_key(specs[0], 1, small.name)
    assert run_key(specs[0], 0, small.name) != run_key(RunSpec("LightGCN", "lightgcn", CFG, TrainConfig(epochs=3)), 0,
                                                       small.name)


def _record(label, seed, test_r20, per_user, users=None):
    users = list(range(len(per_user))) if users is None else users
    test = {"recall@10": test_r20, "recall@20": test_r20, "ndcg@10": 0.1, "ndcg@20": 0.1, "precision@20": 0.01}
    return {"key": f"{label}-{seed}", "label": label, "model": "diffcl", "seed": seed,
            "result": {"test": test, "valid": test, "best_epoch": 1, "epochs_run": 2, "epoch_seconds": 0.1,
                       "eval_seconds": 0.01},
            "per_user": {"users": users, "recall@20": list(per_user), "ndcg@20": list(per_user)}}


def test_summarize_pairs_by_seed_and_user_and_marks_significance():
    rng = np.random.default_rng(0)
    base = rng.random((3, 300))
    records = []
    for s in range(3):
        records.append(_record("diffcl", s, 0.30 + 0.01 * s, base[s]))
        records.append(_record("worse", s, 0.20 + 0.01 * s + 0.001 * (s == 1), np.clip(base[s] - 0.2, 0, 1)))
        records.append(_record("same", s, 0.30 + 0.01 * s + 0.002 * (-1) ** s, base[s][rng.permutation(300)]))
    rows = {r["label"]: r for r in summarize(records, n_boot=2_000)}
    assert rows["diffcl"]["vs_reference"] is None
    worse = rows["worse"]["vs_reference"]
    assert worse["diff"] == pytest.approx(-0.1 + 0.001 / 3)
    assert worse["sig_users"] == "↓" and worse["sig_seeds"] == "↓"
    same = rows["same"]["vs_reference"]
    assert same["sig_seeds"] == "–" and same["bootstrap"]["p_holm"] > 0.05
    # Holm: the adjusted p is never below the raw one
    assert worse["ttest"]["p_holm"] >= worse["ttest"]["p_value"]
    assert rows["worse"]["test_recall@20"]["mean"] == pytest.approx(np.mean([0.20, 0.211, 0.22]))
    text = summary_table(list(rows.values()))
    assert "| worse | 3 |" in text and "users ↓ / seeds ↓" in text


def test_summarize_refuses_rows_on_different_users():
    recs = [_record("diffcl", 0, 0.3, [0.1, 0.2]), _record("diffcl", 1, 0.3, [0.1, 0.2]),
            _record("x", 0, 0.2, [0.1, 0.2], users=[5, 6]), _record("x", 1, 0.2, [0.1, 0.2], users=[5, 6])]
    with pytest.raises(DiffCLError, match="different test users"):
        summarize(recs, n_boot=200)


def test_run_ablation_seeds_writes_tables(small, tmp_path):
    rows = run_ablation_seeds(small, CFG, TrainConfig(epochs=1, batch_size=512, progress=False, max_batches=2),
                              seeds=[0, 1], out_dir=tmp_path, include_baselines=False, device="cpu",
                              command="python -m diffcl_lite ablate --seeds 2", n_boot=200, progress=False)
    assert rows[0]["label"] == "diffcl" and len(rows) >= 5
    md = (tmp_path / f"ablation_{small.name}.md").read_text()
    payload = json.loads((tmp_path / f"ablation_{small.name}.json").read_text())
    assert "python -m diffcl_lite ablate --seeds 2" in md and "p users (Holm)" in md
    assert len(payload["runs"]) == 2 * len(rows) and payload["rows"][1]["vs_reference"]["bootstrap"] is not None
    lines = (tmp_path / f"ablation_{small.name}.runs.jsonl").read_text().splitlines()
    assert len(lines) == 2 * len(rows) and "per_user" in json.loads(lines[0])
    # a report of an unfinished table: only the runs that are there, nothing trained
    (tmp_path / f"ablation_{small.name}.runs.jsonl").write_text("\n".join(lines[: len(rows) + 2]) + "\n")
    part = run_ablation_seeds(small, CFG, TrainConfig(epochs=1, batch_size=512, progress=False, max_batches=2),
                              seeds=[0, 1], out_dir=tmp_path, include_baselines=False, device="cpu", n_boot=200,
                              progress=False, train_missing=False)
    assert [len(r["seeds"]) for r in part] == [2, 2] + [1] * (len(rows) - 2)
    assert len((tmp_path / f"ablation_{small.name}.runs.jsonl").read_text().splitlines()) == len(rows) + 2


def test_run_records_hold_item_group_recall_and_paired_tests_use_only_users_with_items(tmp_path):
    from diffcl_lite.evaluation import item_groups
    from diffcl_lite.experiments import GROUP_METRICS, run_one

    data = make_synthetic(n_users=120, n_items=80, n_topics=4, interactions_per_user=8, cold_item_fraction=0.2,
                          cold_item_train_keep=1, seed=0, name="groups")
    groups = item_groups(data)
    assert groups["cold"].sum() > 0  # the generator's cold_item_train_keep is read
    recs = [run_one(data, RunSpec(lab, name, CFG, TINY), s) for s in (0, 1) for lab, name in
            (("diffcl", "lightgcn"), ("MF-BPR", "mf"))]
    rec = recs[0]
    assert rec["item_groups"] == {g: int(m.sum()) for g, m in groups.items()}
    test = data.interaction_matrix("test")
    for m in GROUP_METRICS:
        g = m.split("[")[1].rstrip("]")
        vals = rec["per_user"][m]
        assert len(vals) == len(rec["per_user"]["users"])
        for u, v in zip(rec["per_user"]["users"], vals):  # None exactly where the user has no test item of the group
            has = groups[g][test.indices[test.indptr[u]:test.indptr[u + 1]]].any()
            assert (v is None) == (not has)
        finite = [v for v in vals if v is not None]
        assert rec["result"]["test"][m] == pytest.approx(np.mean(finite), abs=1e-5)
    rows = {r["label"]: r for r in summarize(recs, metric=GROUP_METRICS[0], n_boot=200)}
    boot = rows["MF-BPR"]["vs_reference"]["bootstrap"]
    n_cold_users = sum(v is not None for v in rec["per_user"][GROUP_METRICS[0]])
    assert boot["n"] == n_cold_users
    json.dumps(recs, allow_nan=False)  # JSON-safe: no NaN


def test_short_name_lives_in_experiments_and_tuning_reexports_it():
    from diffcl_lite import experiments, tuning

    assert tuning.short_name is experiments.short_name
    specs = experiments.ablation_specs(CFG, TINY)
    assert [experiments.short_name(s) for s in specs] == ["diffcl", "random-views", "no-cl", "no-align",
                                                          "no-item-graph", "lightgcn", "mf"]
