"""Numbers quoted in the lessons' prose agree with the committed full-mode results file.

A marked number in a markdown cell, ``0.590<!-- full:07.lightgcn_all -->``, must equal the value
that ``python scripts/lesson_numbers.py record`` stored in ``results/lessons_full.json``, in the
format of ``SPEC``.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("lesson_numbers", ROOT / "scripts" / "lesson_numbers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ln = _module()


def test_every_marked_number_agrees_with_the_results_file():
    problems = ln.check()
    assert not problems, "\n".join(problems)


def test_every_recorded_notebook_quotes_its_numbers_through_markers():
    data = ln.load()
    quoted = {key for _, _, key, _ in ln.markers()}
    for nb_id in data["notebooks"]:
        assert any(k.startswith(nb_id + ".") for k in quoted), f"notebook {nb_id}: recorded but no marked number"
    # every marker names a key of SPEC (a typo would otherwise only show as 'no recorded value')
    spec_keys = {f"{nb}.{k}" for nb, keys in ln.SPEC.items() for k in keys}
    assert quoted <= spec_keys, sorted(quoted - spec_keys)


def test_results_file_records_full_mode_and_its_command():
    data = ln.load()
    assert data["command"].startswith("python scripts/lesson_numbers.py record")
    for nb_id, meta in data["notebooks"].items():
        assert meta["mode"] == "full", (nb_id, meta)
        expected = {f"{nb_id}.{k}" for k in ln.SPEC[nb_id]}
        assert expected <= set(data["values"]), sorted(expected - set(data["values"]))


def test_check_reports_a_number_that_disagrees(tmp_path):
    """The check can fail: change one marked number in a copy of the notebooks."""
    name, i, key, num = ln.markers()[0]
    for p in (ROOT / "notebooks").glob("0[0-8]_*.ipynb"):
        shutil.copy(p, tmp_path / p.name)
    path = tmp_path / name
    nb = json.loads(path.read_text(encoding="utf-8"))
    src = "".join(nb["cells"][i]["source"])
    wrong = "9" + num if not num.startswith("9") else "1" + num
    nb["cells"][i]["source"] = [src.replace(f"{num}<!-- full:{key} -->", f"{wrong}<!-- full:{key} -->", 1)]
    path.write_text(json.dumps(nb), encoding="utf-8")
    problems = ln.check(notebooks=tmp_path)
    assert len(problems) == 1 and key in problems[0] and wrong in problems[0]
    assert ln.check(notebooks=ROOT / "notebooks") == []


def test_marker_regex_and_unknown_key(tmp_path):
    m = ln.MARKER.search("purity 0.590<!-- full:07.lightgcn_all --> and")
    assert m and (m["num"], m["key"]) == ("0.590", "07.lightgcn_all")
    nb = {"cells": [{"cell_type": "markdown", "source": ["x 1.0<!-- full:07.no_such_key -->"]}]}
    (tmp_path / "07_x.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    problems = ln.check(notebooks=tmp_path)
    assert len(problems) == 1 and "no recorded value" in problems[0]


def test_missing_results_file_names_the_command(tmp_path):
    with pytest.raises(SystemExit, match="lesson_numbers.py record"):
        ln.load(tmp_path / "lessons_full.json")
