import json
import subprocess
import sys

import pytest

from diffcl_lite.cli import build_parser, main, model_config_from_args


def test_every_config_field_has_a_flag_and_aliases_work():
    args = build_parser().parse_args(["train", "--lambda-cl", "0.3", "--no-align", "--random-views", "--no-use-item-graph",
                                      "--item-graph-weights", "image=0.2,text=0.8", "--view-steps", "3"])
    cfg = model_config_from_args(args)
    assert cfg.lambda_cl == 0.3 and not cfg.use_align and cfg.view_kind == "random" and not cfg.use_item_graph
    assert cfg.item_graph_weights == {"image": 0.2, "text": 0.8} and cfg.view_steps == 3


def test_train_writes_json_contract(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["train", "--model", "lightgcn", "--epochs", "2", "--quiet", "--json", str(out), "--batch-size", "4096"])
    assert rc == 0
    table = capsys.readouterr().out
    assert "R@20" in table and "lightgcn" in table
    js = json.loads(out.read_text())
    assert js["model"] == "lightgcn" and js["dataset"] == "synthetic"
    assert set(js["test"]) >= {"recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@20"}
    assert js["best_epoch"] in (1, 2) and js["seconds"] > 0 and "epoch_seconds" in js


def test_bad_argument_gives_clean_error(capsys):
    rc = main(["train", "--epochs", "0", "--quiet"])
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
