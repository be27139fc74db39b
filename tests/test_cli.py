import json
import os
import re
import subprocess
import sys

import pytest

from diffcl_lite import cli
from diffcl_lite.cli import build_parser, main, model_config_from_args


def test_every_config_field_has_a_flag_and_aliases_work():
    args = build_parser().parse_args(["train", "--lambda-cl", "0.3", "--no-align", "--random-views", "--no-use-item-graph",
                                      "--item-graph-weights", "image=0.2,text=0.8", "--view-steps", "3"])
    cfg = model_config_from_args(args)
    assert cfg.lambda_cl == 0.3 and not cfg.use_align and cfg.view_kind == "random" and not cfg.use_item_graph
    assert cfg.item_graph_weights == {"image": 0.2, "text": 0.8} and cfg.view_steps == 3


def test_train_writes_json_contract(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["train", "--model", "lightgcn", "--epochs", "2", "--quiet", "--json", str(out), "--batch-size", "4096",
               "--no-run-dir"])
    assert rc == 0
    table = capsys.readouterr().out
    assert "R@20" in table and "lightgcn" in table
    js = json.loads(out.read_text())
    assert js["model"] == "lightgcn" and js["dataset"] == "synthetic"
    assert set(js["test"]) >= {"recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@20"}
    assert js["best_epoch"] in (1, 2) and js["seconds"] > 0 and "epoch_seconds" in js


def test_bad_argument_gives_clean_error(capsys):
    rc = main(["train", "--epochs", "0", "--quiet", "--no-run-dir"])
    assert rc == 2
    assert "epochs" in capsys.readouterr().err


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "diffcl_lite", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "train" in proc.stdout


def test_training_defaults_depend_on_the_dataset():
    from diffcl_lite.cli import train_config_from_args

    parser = build_parser()
    small = train_config_from_args(parser.parse_args(["train"]))
    assert (small.batch_size, small.lr, small.epochs) == (1024, 5e-3, 30)
    real = train_config_from_args(parser.parse_args(["train", "--dataset", "tiktok"]))
    assert (real.batch_size, real.lr, real.epochs, real.patience) == (2048, 1e-3, 100, 20)
    given = train_config_from_args(parser.parse_args(["train", "--batch-size", "64", "--lr", "0.1"]))
    assert (given.batch_size, given.lr) == (64, 0.1)


# ---------------------------------------------------------------------- fast start, portable flags
QUICK = ["--model", "mf", "--epochs", "1", "--max-batches", "2", "--embedding-dim", "8", "--quiet"]


def test_importing_the_cli_imports_neither_torch_nor_scipy():
    code = ("import sys, diffcl_lite.cli as c\n"
            "heavy = [m for m in ('torch', 'numpy', 'scipy', 'pandas', 'matplotlib') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "try:\n    c.main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "assert c.main(['data', 'list']) == 0\n"
            "assert 'torch' not in sys.modules and 'scipy' not in sys.modules, 'help/data list imported torch'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "tiktok" in proc.stdout and "train" in proc.stdout


def test_device_flag_accepts_cuda_with_an_index(capsys):
    parser = build_parser()
    for device in ("cuda:1", "CUDA:0", "cpu", "mps", "auto", "cuda"):
        assert parser.parse_args(["train", "--device", device]).device == device.lower()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["train", "--device", "tpu"])
    assert exc.value.code == 2
    assert "argument --device: 'tpu' is not a device; use auto, cpu, cuda, cuda:N" in capsys.readouterr().err


def test_log_level_before_or_after_the_subcommand(capsys):
    parser = build_parser()
    assert parser.parse_args(["--log-level", "info", "train"]).log_level == "INFO"
    assert parser.parse_args(["train", "--log-level", "debug"]).log_level == "DEBUG"
    assert parser.parse_args(["data", "list", "--log-level", "error"]).log_level == "ERROR"
    assert parser.parse_args(["train"]).log_level == "WARNING"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--log-level", "loud"])
    assert "--log-level: 'loud' is not a log level; use one of DEBUG, INFO, WARNING, ERROR" in capsys.readouterr().err


def test_version(capsys):
    from diffcl_lite import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"diffcl_lite {__version__}"


def test_enum_flags_have_choices_and_the_comments_as_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--view-kind {diffusion,random}" in help_text and "(SimGCL baseline) [diffusion]" in help_text
    assert "--schedule {linear-var,linear-beta,cosine}" in help_text
    with pytest.raises(SystemExit) as exc:
        main(["train", "--align-kind", "cosine"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "argument --align-kind: invalid choice: 'cosine' (choose from" in err
    assert "'infonce'" in err and len(err.splitlines()) <= 3  # a short usage line, not 60 flags


def test_bad_config_value_names_the_flag_without_dumping_the_config(capsys):
    rc = main(["train", "--edge-prune", "1.5", "--no-run-dir"])
    err = capsys.readouterr().err
    assert rc == 2 and "edge_prune must lie in [0, 1)" in err and "--edge-prune 1.5" in err
    assert "DiffCLConfig(embedding_dim" not in err


# ---------------------------------------------------------------------- run folders, --config, runs compare
def test_train_writes_a_run_folder_and_runs_compare_reads_it(tmp_path, capsys):
    run = tmp_path / "run"
    out = tmp_path / "r.json"
    assert main(["train", *QUICK, "--epochs", "2", "--run-dir", str(run), "--json", str(out)]) == 0
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "curve.png", "history.csv", "log.txt", "result.json"]
    js = json.loads(out.read_text())
    assert json.loads((run / "result.json").read_text())["test"] == js["test"] and js["run_dir"] == str(run)
    assert js["config"]["run"]["model"] == "mf" and js["config"]["train"]["epochs"] == 2
    assert json.loads((run / "config.json").read_text()) == js["config"]
    lines = (run / "history.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,loss_bpr") and [ln.split(",")[0] for ln in lines[1:]] == ["1", "2"]
    assert "INFO diffcl_lite.training: epoch 2" in (run / "log.txt").read_text()  # at INFO whatever the console shows
    capsys.readouterr()
    assert main(["runs", "compare", str(run)]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].startswith("run ") and "run  " in table and "mf" in table and "done" in table
    assert main(["train", *QUICK, "--run-dir", str(run)]) == 2
    assert f"--run-dir {run}: already holds a run" in capsys.readouterr().err
    assert main(["runs", "compare", str(tmp_path / "nothing")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_default_run_folder_goes_under_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIFFCL_RUNS", raising=False)
    assert main(["train", *QUICK]) == 0
    (folder,) = (tmp_path / "runs").iterdir()
    assert re.fullmatch(r"synthetic-mf-\d{8}-\d{6}", folder.name) and (folder / "result.json").is_file()
    assert main(["train", *QUICK, "--no-run-dir"]) == 0
    assert len(list((tmp_path / "runs").iterdir())) == 1


def test_config_file_replays_a_run_and_flags_win(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["train", *QUICK, "--lr", "0.02", "--lambda-reg", "0.001", "--seed", "4", "--fusion", "mean",
                 "--no-run-dir", "--json", str(out)]) == 0
    parser = build_parser()
    args = cli._parse(parser, ["train", "--config", str(out), "--seed", "5"])
    mcfg, tcfg = model_config_from_args(args), cli.train_config_from_args(args)
    assert (mcfg.embedding_dim, mcfg.lambda_reg, mcfg.fusion) == (8, 0.001, "mean")
    assert (tcfg.lr, tcfg.epochs, tcfg.max_batches, tcfg.seed) == (0.02, 1, 2, 5)  # --seed given: it wins
    assert args.model == "mf" and args.dataset == "synthetic"
    run = tmp_path / "run"
    assert main(["train", "--config", str(out), "--run-dir", str(run), "--quiet"]) == 0
    again = cli._parse(build_parser(), ["train", "--config", str(run)])  # a run folder works too
    assert model_config_from_args(again).fusion == "mean" and cli.train_config_from_args(again).seed == 4


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["model"].update(view_kind="gaussian"), r"model\.view_kind='gaussian' is not allowed; allowed values: diffusion, random \(--view-kind\)"),
    (lambda c: c["model"].update(nope=1), r"model\.nope is not a DiffCLConfig field\. Fix: remove it"),
    (lambda c: c["model"].update(use_cl="yes"), r"model\.use_cl='yes' must be true or false \(--use-cl\)"),
    (lambda c: c["model"].update(embedding_dim=1.5), r"model\.embedding_dim=1\.5 must be an integer"),
    (lambda c: c["train"].update(learning_rate=1), r"train\.learning_rate is not a TrainConfig field"),
    (lambda c: c["run"].update(model="gpt"), r"run\.model='gpt' is not allowed; allowed values: diffcl, lightgcn, mf"),
])
def test_bad_config_file_names_the_file_and_the_field(tmp_path, capsys, edit, message):
    from diffcl_lite.model import DiffCLConfig

    block = {"model": DiffCLConfig().to_dict(), "train": {"lr": 0.01}, "run": {"dataset": "synthetic", "model": "mf"}}
    edit(block)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(block))
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"--config {path}" in err and re.search(message, err), err


def test_missing_config_file(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "no.json")]) == 2
    assert "no such file. Fix: pass the config.json of a run folder" in capsys.readouterr().err


def test_outputs_are_checked_before_the_data_is_loaded(tmp_path, monkeypatch, capsys):
    import diffcl_lite.datasets as datasets

    def never(*a, **k):
        raise AssertionError("the dataset was loaded")

    monkeypatch.setattr(datasets, "load", never)
    (tmp_path / "f").write_text("x")
    cases = [
        (["--checkpoint-dir", str(tmp_path / "f")], "--checkpoint-dir"),
        (["--checkpoint-dir", str(tmp_path / "f" / "ck")], "cannot create the folder"),
        (["--json", str(tmp_path)], "--json"),
        (["--run-dir", str(tmp_path / "f")], "--run-dir"),
    ]
    for extra, needle in cases:
        assert main(["train", *QUICK, *extra]) == 2
        err = capsys.readouterr().err
        assert needle in err and ("Fix:" in err or "pass a file name" in err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # nothing written


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root can write read-only folders")
def test_read_only_checkpoint_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["train", *QUICK, "--no-run-dir", "--checkpoint-dir", str(ro)]) == 2
        assert f"--checkpoint-dir {ro}: the folder is not writable" in capsys.readouterr().err
    finally:
        ro.chmod(0o755)


def test_ablation_rows_are_labelled_and_get_their_own_folders(tmp_path, monkeypatch, capsys):
    import diffcl_lite.training as training

    labels = []
    real = training.tqdm
    monkeypatch.setattr(training, "tqdm", lambda *a, **k: labels.append(k.get("desc")) or real(*a, **k))
    run = tmp_path / "abl"
    assert main(["ablate", "--epochs", "1", "--max-batches", "1", "--embedding-dim", "8", "--quiet",
                 "--out", str(tmp_path / "figs"), "--run-dir", str(run), "--no-baselines",
                 "--checkpoint-dir", str(tmp_path / "ck")]) == 0
    from diffcl_lite.model import ABLATIONS

    assert labels == list(ABLATIONS)
    subs = sorted(p.name for p in run.iterdir() if p.is_dir())
    assert len(subs) == len(ABLATIONS) and subs[0] == "01-diffcl"
    assert {"config.json", "results.json", "results.md", "log.txt"} <= {p.name for p in run.iterdir()}
    assert len(list((tmp_path / "ck").iterdir())) == len(ABLATIONS)  # one checkpoint folder per row
    capsys.readouterr()
    assert main(["runs", "compare", str(run)]) == 0
    assert "w/o CL" in capsys.readouterr().out


def test_log_lines_do_not_break_progress_bars(tmp_path, capsys):
    assert main(["train", "--model", "mf", "--epochs", "2", "--max-batches", "2", "--embedding-dim", "8",
                 "--no-run-dir", "--log-level", "INFO"]) == 0
    err = capsys.readouterr().err
    pieces = [p.strip() for p in re.split(r"[\r\n]", err) if "INFO diffcl_lite.training: epoch" in p]
    assert len(pieces) == 2 and all(p.startswith("INFO diffcl_lite.training: epoch") for p in pieces), pieces


# ---------------------------------------------------------------------- data commands
def test_data_download_rehash_and_timeout(tmp_path, capsys):
    from diffcl_lite import datasets
    from diffcl_lite.datasets import DatasetSpec, RemoteFile
    from diffcl_lite.datasets.formats import save_diffmm

    try:
        from fixtures_data import git_blob_sha1, tiny_dataset
        from http_mirrors import Mirror
    except ImportError:
        from tests.fixtures_data import git_blob_sha1, tiny_dataset
        from tests.http_mirrors import Mirror

    src = tmp_path / "src"
    save_diffmm(tiny_dataset(), src)
    files = {p.name: p.read_bytes() for p in src.iterdir()}
    with Mirror({f"/d/{k}": v for k, v in files.items()}) as mirror:
        spec = DatasetSpec(name="cli-fake", kind="remote", description="x", card="# x\n", base_url=mirror.url + "/d",
                           files=tuple(RemoteFile(k, git_blob_sha1(v), len(v)) for k, v in files.items()))
        datasets.register(spec)
        try:
            root = ["--data-root", str(tmp_path / "cache")]
            mirror.trickle["/d/trnMat.pkl"] = 0.05
            assert main(["data", "download", "cli-fake", *root, "--timeout", "0.5", "--quiet"]) == 2
            err = capsys.readouterr().err
            assert "0.5 s deadline" in err and "--timeout" in err and "/d/trnMat.pkl" in err
            del mirror.trickle["/d/trnMat.pkl"]
            assert main(["data", "download", "cli-fake", *root, "--quiet"]) == 0
            assert json.loads(capsys.readouterr().out)["users"] == 30
            feat = tmp_path / "cache" / "cli-fake" / "image_feat.npy"
            st = feat.stat()
            data = bytearray(feat.read_bytes())
            data[-1] ^= 1
            feat.write_bytes(bytes(data))
            os.utime(feat, ns=(st.st_atime_ns, st.st_mtime_ns))
            n = len(mirror.requests)
            assert main(["data", "download", "cli-fake", *root, "--rehash", "--quiet"]) == 0
            assert mirror.requests[n:] == ["/d/image_feat.npy"] and feat.read_bytes() == files["image_feat.npy"]
        finally:
            datasets.unregister("cli-fake")


def test_data_remap_and_summary_flags(tmp_path, capsys):
    from diffcl_lite.datasets.formats import save_mmrec

    try:
        from fixtures_data import tiny_dataset
    except ImportError:
        from tests.fixtures_data import tiny_dataset
    ds = tiny_dataset()
    inter = save_mmrec(ds, tmp_path / "raw", name="raw")
    lines = inter.read_text().splitlines()
    u, i, k = lines[1].split("\t")
    lines[1] = f"{int(u) + 70_000_000}\t{i}\t{k}"
    inter.write_text("\n".join(lines) + "\n")
    assert main(["data", "summary", f"mmrec:{tmp_path / 'raw'}"]) == 2
    err = capsys.readouterr().err
    assert "data remap" in err and "70,000,0" in err
    assert main(["data", "remap", str(tmp_path / "raw"), str(tmp_path / "fixed")]) == 0
    capsys.readouterr()
    assert main(["data", "summary", f"mmrec:{tmp_path / 'fixed'}"]) == 0
    assert json.loads(capsys.readouterr().out)["users"] == ds.n_users + 1
    assert main(["data", "summary", "mmrec:"]) == 2
    assert "the folder after 'mmrec:' is empty" in capsys.readouterr().err


def test_output_closed_by_the_reader_ends_quietly():
    """`python -m diffcl_lite data list | head -1` must not end in a BrokenPipeError traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "diffcl_lite", "data", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader goes away before the first line
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
