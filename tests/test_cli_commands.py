"""The ``ablate`` and ``data list | card`` commands, run in-process through :func:`diffcl_lite.cli.main`."""
from __future__ import annotations

import json
import math
import re

import pytest

from diffcl_lite.cli import main

ABLATION_ROWS = ["diffcl", "w/o diffusion (random views)", "w/o CL", "w/o alignment", "w/o item-item graph",
                 "LightGCN", "MF-BPR"]


def md_rows(text: str) -> dict[str, list[str]]:
    """The cells of a markdown table, by the first cell."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) > 2 and not set(cells[1]) <= set("-: "):
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture
def tiny_dataset(monkeypatch):
    """The commands load a small synthetic dataset (named "synthetic", as the default one) instead."""
    import diffcl_lite.cli as cli
    from diffcl_lite.data import make_synthetic

    data = make_synthetic(n_users=60, n_items=40, n_topics=3, interactions_per_user=8, seed=0)
    monkeypatch.setattr(cli, "_load_dataset", lambda args: data)
    return data


def test_ablate_writes_every_row_to_markdown_and_json(tmp_path, capsys, tiny_dataset):
    out = tmp_path / "figs"
    assert main(["ablate", "--epochs", "1", "--max-batches", "2", "--embedding-dim", "8", "--quiet",
                 "--no-run-dir", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    md = (out / "ablation_synthetic.md").read_text()
    js = json.loads((out / "ablation_synthetic.json").read_text())
    assert [r["label"] for r in js] == ABLATION_ROWS
    assert [r["model"] for r in js] == ["diffcl"] * 5 + ["lightgcn", "mf"]
    table = md_rows(md)
    header = next(cells for first, cells in table.items() if first.lower() == "model")
    col = header.index("R@20")
    for row in js:
        assert row["epochs_run"] == 1 and row["best_epoch"] == 1 and row["dataset"] == "synthetic"
        assert len(row["history"]) == 1 and math.isfinite(row["history"][0]["loss_total"])
        # the markdown row shows the JSON row's test Recall@20 (4 decimals)
        assert float(table[row["label"]][col]) == pytest.approx(row["test"]["recall@20"], abs=6e-5), row["label"]
        assert row["label"] in printed
    assert "up to 1 epochs" in md


def test_ablate_without_baselines_has_only_the_diffcl_rows(tmp_path, capsys, monkeypatch, tiny_dataset):
    import diffcl_lite.training as training

    calls = []
    real = training.run_experiment

    def counted(data, name, cfg, tcfg, **kw):
        calls.append((kw.get("label"), name, tcfg.max_batches, tcfg.epochs))
        return real(data, name, cfg, tcfg, **kw)

    monkeypatch.setattr(training, "run_experiment", counted)
    out = tmp_path / "figs"
    assert main(["ablate", "--epochs", "1", "--max-batches", "1", "--embedding-dim", "8", "--quiet",
                 "--no-run-dir", "--no-baselines", "--out", str(out)]) == 0
    assert calls == [(label, "diffcl", 1, 1) for label in ABLATION_ROWS[:5]]
    js = json.loads((out / "ablation_synthetic.json").read_text())
    assert [r["label"] for r in js] == ABLATION_ROWS[:5]
    assert set(md_rows((out / "ablation_synthetic.md").read_text())) >= set(ABLATION_ROWS[:5])
    assert "LightGCN" not in (out / "ablation_synthetic.md").read_text()


def test_data_list_names_every_dataset(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    for name in ("synthetic", "synthetic-sparse", "synthetic-hard", "synthetic-baby", "synthetic-tiktok", "tiktok",
                 "baby", "mmrec:<folder>", "diffmm:<folder>", "<folder>"):
        assert name in names, name
    tiktok = next(line for line in out.splitlines() if line.startswith("tiktok "))
    assert "9,308 users" in tiktok and "6,710 items" in tiktok


@pytest.mark.parametrize("name, facts", [
    ("tiktok", ["HKUDS/DiffMM", "fae20e642aeeaad4284be6f7fb3432ebb551da8e", "9,308", "never ships or redistributes"]),
    ("synthetic", ["make_synthetic", "1,200", "800"]),
    ("synthetic-hard", ["This variant: `synthetic-hard`", "make_synthetic("]),
])
def test_data_card_shows_the_cards_sections_and_facts(capsys, name, facts):
    assert main(["data", "card", name]) == 0
    out = capsys.readouterr().out
    for section in ("## Source", "## Terms", "## Size", "## Citation"):
        assert re.search(rf"^{section}\b", out, re.M), (name, section)
    for fact in facts:
        assert fact in out, (name, fact)


def test_data_card_of_an_unknown_dataset_is_a_clear_error(capsys):
    assert main(["data", "card", "no-such-data"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'no-such-data'" in err and "synthetic" in err
    assert main(["data", "card"]) == 2
    assert "needs a dataset name" in capsys.readouterr().err
