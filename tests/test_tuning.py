"""The tuning protocol: same budget per model, seeded trials, pruning that resumes exactly, restartable."""
from __future__ import annotations

import json

import pytest

from diffcl_lite.data import make_synthetic
from diffcl_lite.errors import DiffCLError
from diffcl_lite.experiments import RunSpec, ablation_specs
from diffcl_lite.model import DiffCLConfig
from diffcl_lite.training import TrainConfig, run_experiment
from diffcl_lite.experiments import short_name
from diffcl_lite.tuning import apply_params, run_trial, sample_trials, search_space, tune


@pytest.fixture(scope="module")
def small():
    return make_synthetic(n_users=150, n_items=90, n_topics=4, interactions_per_user=10, seed=0)


TINY = TrainConfig(epochs=3, batch_size=256, lr=5e-3, patience=5, progress=False)
CFG = DiffCLConfig(embedding_dim=16, denoiser_hidden=16)


def test_every_row_gets_its_own_knobs_and_the_same_number_of_trials():
    specs = {short_name(s): s for s in ablation_specs(CFG, TINY)}
    assert set(specs) == {"diffcl", "random-views", "no-cl", "no-align", "no-item-graph", "lightgcn", "mf"}
    assert "n_layers" not in search_space(specs["mf"]) and "lr" in search_space(specs["mf"])
    assert "lambda_cl" not in search_space(specs["no-cl"]) and "lambda_align" in search_space(specs["no-cl"])
    assert "random_eps" in search_space(specs["random-views"]) and "noise_scale" not in search_space(specs["random-views"])
    assert "noise_scale" in search_space(specs["diffcl"]) and "lambda_align" not in search_space(specs["no-align"])
    assert "item_graph_target" not in search_space(specs["no-item-graph"])
    # the noise grids follow the view kind: relative noise needs larger values than absolute noise
    fixed = RunSpec("diffcl", "diffcl", DiffCLConfig(diffusion_standardize=True, denoiser_residual=True), TINY)
    assert min(search_space(fixed)["noise_scale"]) > max(search_space(specs["diffcl"])["noise_scale"])
    rel = RunSpec("r", "diffcl", DiffCLConfig(view_kind="random", random_relative=True), TINY)
    assert min(search_space(rel)["random_eps"]) > min(search_space(specs["random-views"])["random_eps"])
    for name, spec in specs.items():
        trials = sample_trials(spec, 6, seed=0)
        assert len(trials) == 6 and trials[0] == {}
        assert len({json.dumps(t, sort_keys=True) for t in trials}) == 6
        assert all(set(t) <= set(search_space(spec)) for t in trials)
        assert trials == sample_trials(spec, 6, seed=0)            # same draw on a restart
        assert trials[:4] == sample_trials(spec, 4, seed=0)        # a larger budget extends it
    assert sample_trials(specs["diffcl"], 6, seed=1) != sample_trials(specs["diffcl"], 6, seed=0)


def test_apply_params_routes_train_and_model_fields():
    spec = RunSpec("diffcl", "diffcl", CFG, TINY)
    out = apply_params(spec, {"lr": 0.01, "lambda_cl": 0.2})
    assert out.train.lr == 0.01 and out.config.lambda_cl == 0.2 and spec.train.lr == TINY.lr
    with pytest.raises(DiffCLError, match="unknown knobs"):
        apply_params(spec, {"learning_rate": 0.1})


def test_a_trial_that_survives_pruning_is_the_uninterrupted_run(small):
    spec = RunSpec("LightGCN", "lightgcn", CFG, TINY)
    out = run_trial(small, spec, 1, {"lr": 0.01}, prune_epoch=1, rung_scores=[], device="cpu")
    _, ref = run_experiment(small, "lightgcn", CFG, TrainConfig(**{**TINY.__dict__, "lr": 0.01}), device="cpu")
    rec = out.record
    assert rec["status"] == "complete" and rec["result"]["epochs_run"] == ref.epochs_run
    assert rec["result"]["valid"] == ref.valid and rec["result"]["test"] == ref.test
    assert [h["loss_total"] for h in rec["result"]["history"]] == [h["loss_total"] for h in ref.history]
    assert len(rec["per_user"]["recall@20"]) == len(rec["per_user"]["users"]) > 0


def test_a_trial_below_the_median_is_pruned(small):
    spec = RunSpec("MF-BPR", "mf", CFG, TINY)
    out = run_trial(small, spec, 2, {}, prune_epoch=1, rung_scores=[0.9, 0.95, 1.0], device="cpu")
    assert out.record["status"] == "pruned" and out.record["result"]["epochs_run"] == 1
    assert out.record["per_user"] == {}
    # with fewer than two earlier trials nothing is pruned
    assert run_trial(small, spec, 2, {}, prune_epoch=1, rung_scores=[1.0], device="cpu").record["status"] == "complete"


def test_tune_is_restartable_and_writes_tables(small, tmp_path):
    kw = dict(base=CFG, train_config=TINY, n_trials=2, seeds=[0, 1], models=["lightgcn", "mf"], prune_epoch=1,
              out_dir=tmp_path, device="cpu", command="python -m diffcl_lite tune --trials 2", n_boot=200,
              progress=False)
    first = tune(small, **kw)
    runs = tmp_path / f"tune_{small.name}.runs.jsonl"
    lines = runs.read_text().splitlines()
    assert len(lines) == 2 * 2 + 2           # 2 trials each, plus seed 1 of each finalist (seed 0 is the trial)
    assert set(first["finalists"]) == {"LightGCN", "MF-BPR"}
    md = (tmp_path / f"tune_{small.name}.md").read_text()
    assert "## Every trial" in md and "python -m diffcl_lite tune --trials 2" in md
    payload = json.loads((tmp_path / f"tune_{small.name}.json").read_text())
    assert len(payload["trials"]) == 4 and payload["rows"][0]["label"] == "LightGCN"
    # a restart does no work; dropping a line reruns exactly that run, with the same numbers
    again = tune(small, **kw)
    assert runs.read_text().splitlines() == lines
    assert again["finalists"] == first["finalists"]
    runs.write_text("\n".join(lines[:-1]) + "\n")
    third = tune(small, **kw)
    new = runs.read_text().splitlines()
    assert len(new) == len(lines) and json.loads(new[-1])["result"]["test"] == json.loads(lines[-1])["result"]["test"]
    assert [r["label"] for r in third["rows"]] == ["LightGCN", "MF-BPR"]
    with pytest.raises(DiffCLError, match="unknown models"):
        tune(small, **{**kw, "models": ["svd"]})


def test_cli_tune_and_ablate_seeds(tmp_path, capsys):
    from diffcl_lite.cli import main

    rc = main(["tune", "--dataset", "synthetic", "--models", "mf", "--trials", "2", "--seeds", "2",
               "--epochs", "2", "--max-batches", "1", "--quiet", "--n-boot", "200", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "MF-BPR: trial" in out and "LightGCN" not in out
    assert "--models mf" in (tmp_path / "tune_synthetic.md").read_text()
    assert main(["tune", "--dataset", "synthetic", "--models", "svd", "--quiet", "--out", str(tmp_path)]) == 2
    assert main(["ablate", "--dataset", "synthetic", "--seeds", "0", "--quiet", "--out", str(tmp_path)]) == 2
