"""Checkpoints that check what they resume, run folders, runs compare, the config schema."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from diffcl_lite import runs
from diffcl_lite.configspec import config_fields, model_names
from diffcl_lite.data import make_synthetic
from diffcl_lite.errors import DiffCLError
from diffcl_lite.model import MODELS, DiffCLConfig, build_model
from diffcl_lite.training import CHECKPOINT_NAME, TrainConfig, accumulation_dtype, load_checkpoint, run_experiment, train


@pytest.fixture(scope="module")
def small():
    return make_synthetic(n_users=60, n_items=40, n_topics=3, interactions_per_user=8, seed=0)


@pytest.fixture(scope="module")
def other():
    return make_synthetic(n_users=60, n_items=40, n_topics=3, interactions_per_user=8, seed=1)


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=128, progress=False, lr=5e-3)
    base.update(kw)
    return TrainConfig(**base)


MCFG = DiffCLConfig(embedding_dim=8)


def first_run(data, ck: Path, **kw):
    return run_experiment(data, "mf", MCFG, cfg(checkpoint_dir=str(ck), **kw), device="cpu")[1]


# ---------------------------------------------------------------------- resume checks what it resumes
def test_resume_with_another_lr_lists_the_difference_and_both_fixes(small, tmp_path):
    first_run(small, tmp_path)
    with pytest.raises(DiffCLError) as err:
        run_experiment(small, "mf", MCFG, cfg(epochs=3, lr=0.5, checkpoint_dir=str(tmp_path), resume=True), device="cpu")
    msg = str(err.value)
    assert str(tmp_path / CHECKPOINT_NAME) in msg and "train.lr: 0.005 in the checkpoint, 0.5 now (--lr)" in msg
    assert "drop --resume" in msg and "--resume-override lr" in msg
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["epoch"] == 2  # untouched


def test_resume_override_really_applies_the_new_lr(small, tmp_path):
    first_run(small, tmp_path)
    res = run_experiment(small, "mf", MCFG, cfg(epochs=3, lr=0.5, checkpoint_dir=str(tmp_path), resume=True,
                                                 resume_override=("lr",)), device="cpu")[1]
    ck = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert ck["epoch"] == 3 and [h["epoch"] for h in res.history] == [1, 2, 3]
    assert ck["train_config"]["lr"] == 0.5
    assert all(g["lr"] == 0.5 for g in ck["optimizer"]["param_groups"])  # the optimiser ran at the recorded lr


def test_seed_cannot_change_on_resume_even_with_an_override(small, tmp_path):
    first_run(small, tmp_path)
    with pytest.raises(DiffCLError, match=r"(?s)train\.seed: 0 in the checkpoint, 3 now \(--seed\).*pass the checkpoint's value"):
        run_experiment(small, "mf", MCFG, cfg(epochs=3, seed=3, checkpoint_dir=str(tmp_path), resume=True,
                                              resume_override=("seed",)), device="cpu")


def test_model_config_change_is_listed(small, tmp_path):
    run_experiment(small, "mf", MCFG, cfg(checkpoint_dir=str(tmp_path)), device="cpu")
    with pytest.raises(DiffCLError, match=r"model\.lambda_reg: 0\.0001 in the checkpoint, 0\.1 now \(--lambda-reg\)"):
        run_experiment(small, "mf", dataclasses.replace(MCFG, lambda_reg=0.1),
                       cfg(epochs=3, checkpoint_dir=str(tmp_path), resume=True), device="cpu")


def test_more_epochs_and_patience_may_change_freely(small, tmp_path):
    first_run(small, tmp_path)
    res = run_experiment(small, "mf", MCFG, cfg(epochs=3, patience=50, checkpoint_dir=str(tmp_path), resume=True),
                         device="cpu")[1]
    assert [h["epoch"] for h in res.history] == [1, 2, 3]


def test_checkpoint_of_another_dataset_is_refused_before_loading_weights(small, tmp_path):
    big = make_synthetic(n_users=70, n_items=45, n_topics=3, interactions_per_user=8, seed=0)
    first_run(small, tmp_path)
    with pytest.raises(DiffCLError) as err:
        run_experiment(big, "mf", MCFG, cfg(epochs=3, checkpoint_dir=str(tmp_path), resume=True), device="cpu")
    msg = str(err.value)
    assert "trained on another dataset" in msg and "60 users, 40 items" in msg and "70 users, 45 items" in msg
    assert "size mismatch" not in msg and "--dataset" in msg and "drop --resume" in msg


def test_same_sizes_other_content_is_another_dataset(small, other, tmp_path):
    first_run(small, tmp_path)
    with pytest.raises(DiffCLError, match="trained on another dataset"):
        run_experiment(other, "mf", MCFG, cfg(epochs=3, checkpoint_dir=str(tmp_path), resume=True), device="cpu")


def test_corrupt_checkpoint_gets_our_message(small, tmp_path):
    first_run(small, tmp_path)
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.raises(DiffCLError) as err:
        run_experiment(small, "mf", MCFG, cfg(epochs=3, checkpoint_dir=str(tmp_path), resume=True), device="cpu")
    msg = str(err.value)
    assert str(path) in msg and "damaged" in msg and "Fix: delete it" in msg and "without --resume" in msg
    assert "weights_only" not in msg and "torch.load" not in msg
    torch.save({"something": 1}, path)  # readable, but not ours
    with pytest.raises(DiffCLError, match="not a diffcl_lite checkpoint"):
        load_checkpoint(path)


def test_checkpoint_without_fingerprint_is_refused(small, tmp_path):
    first_run(small, tmp_path)
    path = tmp_path / CHECKPOINT_NAME
    ck = load_checkpoint(path)
    del ck["format"], ck["dataset"]
    torch.save(ck, path)
    with pytest.raises(DiffCLError, match="older diffcl_lite .* cannot be checked. Fix: start again without --resume"):
        run_experiment(small, "mf", MCFG, cfg(epochs=3, checkpoint_dir=str(tmp_path), resume=True), device="cpu")


def test_stale_temporary_files_are_removed_at_start(small, tmp_path, caplog):
    tmp_path.mkdir(exist_ok=True)
    stale = [tmp_path / ".checkpoint.pt.abc123.tmp", tmp_path / ".checkpoint.pt.x.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    first_run(small, tmp_path)
    assert not any(p.exists() for p in stale) and keep.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME, "notes.txt"]


def test_unusable_checkpoint_folder_fails_before_any_epoch(small, tmp_path, monkeypatch):
    model = build_model("mf", small)

    def never(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(model, "loss", never)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(DiffCLError, match=r"--checkpoint-dir .*a-file: this is a file, not a folder\. Fix:"):
        train(model, small, cfg(checkpoint_dir=str(tmp_path / "a-file")))
    with pytest.raises(DiffCLError, match=r"--checkpoint-dir .*cannot create the folder .*Fix: pass a folder you can write"):
        train(model, small, cfg(checkpoint_dir=str(tmp_path / "a-file" / "ck")))

    def read_only(*a, **k):
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr(runs.tempfile, "mkstemp", read_only)
    with pytest.raises(DiffCLError, match=r"--checkpoint-dir .*not writable \(Read-only file system\)\. Fix:"):
        train(model, small, cfg(checkpoint_dir=str(tmp_path / "ro")))


def test_too_few_items_for_the_metrics_names_a_real_flag():
    tiny = make_synthetic(n_users=30, n_items=15, n_topics=2, interactions_per_user=5, min_interactions=4, seed=0)
    with pytest.raises(DiffCLError, match=r"15 items, fewer than K=20 .*--ks 10 --select-metric recall@10"):
        run_experiment(tiny, "mf", None, cfg(epochs=1), device="cpu")
    res = run_experiment(tiny, "mf", None, cfg(epochs=1, ks=(5, 10), select_metric="recall@10"), device="cpu")[1]
    assert set(res.test) >= {"recall@5", "recall@10"}


def test_loss_sums_are_float32_only_on_mps():
    assert accumulation_dtype(torch.device("mps")) == torch.float32
    assert accumulation_dtype(torch.device("cpu")) == torch.float64
    assert accumulation_dtype(torch.device("cuda", 1)) == torch.float64


def test_on_epoch_and_label(small, monkeypatch):
    import diffcl_lite.training as training

    seen_desc = []
    real = training.tqdm

    def recording_tqdm(*a, **k):
        seen_desc.append(k.get("desc"))
        return real(*a, **k)

    monkeypatch.setattr(training, "tqdm", recording_tqdm)
    calls = []
    run_experiment(small, "mf", MCFG, cfg(epochs=3), device="cpu", label="w/o CL",
                   on_epoch=lambda row, hist: calls.append((row["epoch"], len(hist))))
    assert calls == [(1, 1), (2, 2), (3, 3)] and seen_desc == ["w/o CL"]


# ---------------------------------------------------------------------- run folders
def test_run_log_writes_every_file_and_keeps_varying_columns(tmp_path):
    history = [{"epoch": 1, "loss_total": 0.7, "train_seconds": 0.1},
               {"epoch": 2, "loss_total": 0.6, "valid_recall@20": 0.2, "diag_image_dev_x0": 0.5}]
    with runs.RunLog(tmp_path / "run", title="t") as rl:
        rl.write_config({"model": {"a": 1}, "train": {"lr": 0.1}, "run": {"dataset": "d"}})
        for i, row in enumerate(history):
            rl.log_epoch(row, history[: i + 1])
            if i == 0:  # written after every epoch, not only at the end
                assert (tmp_path / "run" / "history.csv").read_text().splitlines() == ["epoch,loss_total,train_seconds",
                                                                                       "1,0.7,0.1"]
        rl.finish({"model": "m", "dataset": "d", "best_epoch": 2, "valid": {"recall@20": 0.2}, "test": {"recall@20": 0.3},
                   "history": history})
    lines = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss_total,train_seconds,valid_recall@20,diag_image_dev_x0"
    assert lines[1] == "1,0.7,0.1,," and lines[2] == "2,0.6,,0.2,0.5"
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["config.json", "curve.png", "history.csv", "log.txt", "result.json"]
    assert (tmp_path / "run" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tensorboard_missing_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "tensorboard_available", lambda: False)
    with pytest.raises(DiffCLError, match=r"--tensorboard needs the tensorboard package.*pip install tensorboard"):
        runs.RunLog(tmp_path / "r", tensorboard=True, log_to_file=False)


@pytest.mark.skipif(not runs.tensorboard_available(), reason="tensorboard is not installed")
def test_tensorboard_event_files(tmp_path):
    with runs.RunLog(tmp_path / "r", tensorboard=True, log_to_file=False) as rl:
        rl.log_epoch({"epoch": 1, "loss_total": 0.5}, [{"epoch": 1, "loss_total": 0.5}])
    assert list((tmp_path / "r" / "tb").glob("events.out.tfevents.*"))


def test_new_run_dirs_never_collide(tmp_path):
    import datetime as dt

    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    a = runs.new_run_dir("mmrec:/data/tiktok-dev/", "diffcl", root=tmp_path, now=now)
    b = runs.new_run_dir("mmrec:/data/tiktok-dev/", "diffcl", root=tmp_path, now=now)
    assert (a.name, b.name) == ("tiktok-dev-diffcl-20260102-030405", "tiktok-dev-diffcl-20260102-030405-2")


def test_dataset_fingerprint(small, other):
    again = make_synthetic(n_users=60, n_items=40, n_topics=3, interactions_per_user=8, seed=0)
    assert runs.dataset_fingerprint(small) == runs.dataset_fingerprint(again)
    assert runs.dataset_fingerprint(small)["sha256"] != runs.dataset_fingerprint(other)["sha256"]
    moved = dataclasses.replace(again, test=again.valid, valid=again.test)
    assert runs.dataset_fingerprint(moved)["sha256"] != runs.dataset_fingerprint(small)["sha256"]


def test_compare_runs_done_incomplete_and_bad(tmp_path):
    done = tmp_path / "a"
    with runs.RunLog(done, log_to_file=False) as rl:
        rl.write_config({"model": {"lambda_cl": 0.1}, "train": {"lr": 0.01}, "run": {"dataset": "d", "model": "diffcl"}})
        rl.finish({"model": "diffcl", "dataset": "d", "best_epoch": 3, "epochs_run": 5, "valid": {"recall@20": 0.25},
                   "test": {"recall@20": 0.3, "recall@10": 0.2}, "epoch_seconds": 1.5, "history": []})
    partial = tmp_path / "b"
    with runs.RunLog(partial, log_to_file=False) as rl:
        rl.write_config({"model": {"lambda_cl": 0.2}, "train": {"lr": 0.01}, "run": {"dataset": "d", "model": "diffcl"}})
        hist = [{"epoch": 1, "valid_recall@20": 0.1}, {"epoch": 2, "valid_recall@20": 0.15}]
        rl.log_epoch(hist[-1], hist)
    rows = runs.compare_runs([done, partial])
    assert [(r["run"], r["status"], r["best_epoch"]) for r in rows] == [("a", "done", 3), ("b", "incomplete", 2)]
    text = runs.format_runs(rows)
    assert "0.3000" in text and "incomplete" in text
    assert "model.lambda_cl: a=0.1, b=0.2" in text and "train.lr" not in text
    assert runs.format_runs(rows, fmt="markdown").startswith("| run | model |")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DiffCLError, match=r"empty: no run found .*Fix: pass run folders written by `train` or `ablate`"):
        runs.compare_runs([tmp_path / "empty"])


# ---------------------------------------------------------------------- the config schema read from source
def test_configspec_matches_the_dataclass():
    spec = config_fields()
    real = dataclasses.fields(DiffCLConfig)
    assert [f.name for f in spec] == [f.name for f in real]
    assert [f.default for f in spec] == [f.default for f in real]
    kinds = {bool: "bool", int: "int", float: "float", str: "str"}
    for f in spec:
        value = getattr(DiffCLConfig(), f.name)
        if value is not None and f.kind != "weights":
            assert kinds[type(value)] == f.kind, f.name
    assert model_names() == tuple(MODELS)


def test_every_text_field_lists_exactly_the_values_the_config_accepts():
    with_choices = {f.name: f for f in config_fields() if f.choices}
    assert {"view_kind", "align_kind", "fusion", "schedule"} <= set(with_choices)
    for f in with_choices.values():
        for value in f.choices:
            DiffCLConfig(**{f.name: value})  # accepted
        if f.name == "schedule":
            from diffcl_lite.diffusion import make_schedule

            with pytest.raises(DiffCLError):
                make_schedule("bogus", 5)
        else:
            with pytest.raises(DiffCLError, match=f.name):
                DiffCLConfig(**{f.name: "bogus"})
    assert all(f.choices is None for f in config_fields() if f.kind != "str")
    assert "SimGCL" in next(f.help for f in config_fields() if f.name == "view_kind")


def test_history_rows_are_plain_json(small):
    res = run_experiment(small, "mf", None, cfg(epochs=1), device="cpu")[1]
    json.dumps(res.history)
    assert np.isfinite(res.history[0]["loss_total"])
