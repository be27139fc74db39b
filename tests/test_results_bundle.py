"""The results copy shipped for notebook 09 is a projection of results/, and is found where the repository is not."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffcl_lite.errors import DiffCLError
from diffcl_lite.lessons import results_bundle as rb

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_copy_equals_the_projection_of_results():
    fresh = rb.bundle_payloads(ROOT / "results")
    assert set(fresh) == set(rb.BUNDLED), "results/ lacks a file the bundle holds"
    for name, payload in fresh.items():
        shipped = json.loads((rb.BUNDLE_DIR / name).read_text(encoding="utf-8"))
        assert shipped == json.loads(json.dumps(payload)), (
            f"{rb.BUNDLE_DIR / name} is stale; fix: python -m diffcl_lite.lessons.results_bundle")
    assert rb.main(["--results", str(ROOT / "results"), "--check"]) == 0


def test_the_copy_holds_what_notebook_09_reads_and_no_runs():
    verdict = json.loads((rb.BUNDLE_DIR / "verdict.json").read_text(encoding="utf-8"))
    assert "runs" not in verdict and {"regimes", "claims", "seeds", "lr_grid"} <= set(verdict)
    assert len(verdict["regimes"]) == 4 and all(e["rows"] for e in verdict["regimes"].values())
    for name in ("tune_synthetic.json", "tune_synthetic-hard.json"):  # section 7: the tuned weight at the grid's edge
        tune = json.loads((rb.BUNDLE_DIR / name).read_text(encoding="utf-8"))
        assert set(tune) == {"command", "finalists"} and "lambda_cl" in tune["finalists"]["diffcl"]["params"]


def test_find_results_prefers_the_repository_then_the_package(tmp_path):
    assert rb.find_results(ROOT / "notebooks") == ROOT / "results"
    assert rb.find_results(tmp_path) == rb.BUNDLE_DIR  # no results/ above a temporary folder
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "verdict.json").write_text("{}")
    sub = tmp_path / "sub"
    sub.mkdir()
    assert rb.find_results(sub) == tmp_path / "results"


def test_write_bundle_and_check_on_a_small_folder(tmp_path):
    src, dst = tmp_path / "results", tmp_path / "bundle"
    src.mkdir()
    (src / "verdict.json").write_text(json.dumps({"regimes": {}, "claims": [], "runs": [1, 2, 3]}))
    (src / "anchors.json").write_text(json.dumps({"a": 1}))
    paths = rb.write_bundle(src, dst)
    assert sorted(p.name for p in paths) == ["anchors.json", "verdict.json"]
    assert json.loads((dst / "verdict.json").read_text()) == {"regimes": {}, "claims": []}
    (src / "verdict.json").write_text("{not json")
    with pytest.raises(DiffCLError, match="verdict.json: not valid JSON"):
        rb.bundle_payloads(src)
    (src / "verdict.json").unlink()
    with pytest.raises(DiffCLError, match="no verdict.json"):
        rb.bundle_payloads(src)
