"""The verdict grid: claims read from paired tests, a tiny grid end to end, the committed results file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffcl_lite.errors import DiffCLError
from diffcl_lite.verdict import (CLAIMS, REGIMES, claim_status, claims_markdown, claims_table, load_verdict,
                                 regime_data, run_verdict)

ROOT = Path(__file__).resolve().parents[1]


def _vr(diff, p):
    return {"diff": diff, "bootstrap": {"p_value": p, "p_holm": p}, "ttest": {"p_value": 0.5, "p_holm": 0.5}}


@pytest.mark.parametrize("diff,p,status", [(-0.01, 0.01, "holds"), (0.01, 0.01, "reversed (significant)"),
                                           (-0.01, 0.2, "does not hold"), (0.02, 0.05, "does not hold")])
def test_claim_status_reads_the_sign_and_the_adjusted_p(diff, p, status):
    assert claim_status(_vr(diff, p)) == status


def test_claim_status_without_evidence_and_bad_test():
    assert claim_status(None) == "not measured"
    assert claim_status({"diff": 0.1, "bootstrap": None, "ttest": None}) == "not measured"
    with pytest.raises(DiffCLError, match="test"):
        claim_status(_vr(0.1, 0.01), test="wilcoxon")


def test_claims_table_per_regime_group_and_extra_rows():
    rows = [{"label": "diffcl", "vs_reference": None}, {"label": "w/o alignment", "vs_reference": _vr(-0.02, 0.001)},
            {"label": "LightGCN", "vs_reference": _vr(0.03, 0.002)}]
    grows = {"cold": [{"label": "diffcl", "vs_reference": None},
                      {"label": "w/o alignment", "vs_reference": _vr(0.05, 0.01)}]}
    payload = {"regimes": {"r1": {"rows": rows, "group_rows": grows}}}
    claims = claims_table(payload, extra_rows={"tiktok-dev": rows[:2]})
    by = {(c["claim"], c["regime"]): c for c in claims}
    assert set(by) == {("b", "r1"), ("vs", "r1"), ("b", "tiktok-dev")}  # rows that are missing are not claimed
    assert by[("b", "r1")]["status"] == "holds" and by[("b", "r1")]["diff"] == -0.02
    assert by[("b", "r1")]["groups"]["cold"]["status"] == "reversed (significant)"
    assert by[("vs", "r1")]["status"] == "reversed (significant)"
    md = claims_markdown(claims)
    assert "cold: reversed (significant) (+0.0500, p 0.010)" in md and "not measured" in md


def test_regimes_cross_two_factors():
    sparse = {k for k, v in REGIMES.items() if v.get("cold_item_fraction")}
    misleading = {k for k, v in REGIMES.items() if v.get("boilerplate_fraction")}
    assert sparse == {"sparse-isotropic", "sparse-misleading"}
    assert misleading == {"dense-misleading", "sparse-misleading"}
    d = regime_data("sparse-misleading", n_users=120, n_items=90)
    assert d.name == "verdict-sparse-misleading" and d.summary()["cold_items_in_train"] >= 0
    with pytest.raises(DiffCLError, match="unknown regime"):
        regime_data("medium")


def test_tiny_grid_end_to_end_and_resume(tmp_path):
    kw = dict(seeds=(0, 1), regimes=["sparse-misleading"], lr_grid=(0.01,), n_users=90, n_items=70, epochs=1,
              n_boot=200, progress=False, command="python -m diffcl_lite verdict (tiny)")
    payload = run_verdict(tmp_path, **kw)
    entry = payload["regimes"]["sparse-misleading"]
    assert entry["complete"] and len(entry["rows"]) == 7
    assert set(entry["group_rows"]) == {"cold", "tail", "head"}
    assert {c["claim"] for c in payload["claims"]} == {k for k, _, _ in CLAIMS}
    n_runs = len((tmp_path / "verdict.runs.jsonl").read_text().splitlines())
    assert n_runs == 7 * 2
    again = run_verdict(tmp_path, **dict(kw, n_boot=200), train_missing=False)  # nothing retrained
    assert len((tmp_path / "verdict.runs.jsonl").read_text().splitlines()) == n_runs
    assert again["claims"] == payload["claims"]
    md = (tmp_path / "verdict.md").read_text()
    assert md.rstrip().endswith("```") and "python -m diffcl_lite verdict (tiny)" in md
    assert claims_markdown(payload["claims"]) in md
    assert load_verdict(tmp_path / "verdict.json")["regimes"]["sparse-misleading"]["complete"]


def test_load_verdict_errors(tmp_path):
    with pytest.raises(DiffCLError, match="no verdict results"):
        load_verdict(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DiffCLError, match="not valid JSON"):
        load_verdict(tmp_path / "bad.json")


def test_committed_claims_table_is_generated_from_the_committed_rows():
    payload = json.loads((ROOT / "results" / "verdict.json").read_text())
    assert payload["claims"] == json.loads(json.dumps(claims_table(payload)))
    assert claims_markdown(payload["claims"]) in (ROOT / "results" / "verdict.md").read_text()


def test_architecture_diagram_draws_every_box_and_arrow():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    from diffcl_lite.lessons.viz.architecture import ARCHITECTURE_ARROWS, ARCHITECTURE_BOXES, plot_architecture

    fig = plot_architecture()
    ax = fig.axes[0]
    assert sum(isinstance(p, FancyBboxPatch) for p in ax.patches) == len(ARCHITECTURE_BOXES)
    assert sum(isinstance(p, FancyArrowPatch) for p in ax.patches) == len(ARCHITECTURE_ARROWS)
    texts = " ".join(t.get_text() for t in ax.texts)
    for word in ("LightGCN", "kNN", "denoiser", "InfoNCE", "alignment", "BPR"):
        assert word in texts
    assert {s for s, _, _ in ARCHITECTURE_ARROWS} | {d for _, d, _ in ARCHITECTURE_ARROWS} == set(ARCHITECTURE_BOXES)


def test_readme_verdict_sentence_agrees_with_the_committed_claims():
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    payload = json.loads((ROOT / "results" / "verdict.json").read_text())
    sentence = "No table measured so far shows DiffCL as reconstructed here significantly better than a LightGCN"
    assert sentence in readme, "the README's verdict sentence changed: update this test with it"
    wins = [c["regime"] for c in payload["claims"] if c["claim"] == "vs" and c["status"] == "holds"]
    assert not wins, f"README says DiffCL never beats LightGCN significantly, but the claims table says it does in {wins}"
