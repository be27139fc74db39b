"""Stripping tools agree: a contributor who strips with nbstripout (as a git filter or by hand) does
not break the tests, the project's own clean filter restores the committed form, and
``nbtools check`` says exactly what is wrong."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from diffcl_lite.course import nbtools

REPO = Path(__file__).resolve().parents[1]
LESSON = REPO / "notebooks" / "03_forward_diffusion.ipynb"

pytest.importorskip("nbstripout")


def _nbstripout(path: Path, *flags: str) -> None:
    """nbstripout as a contributor runs it: default options (outputs and counts cleared, keep_output honoured)."""
    subprocess.run([sys.executable, "-m", "nbstripout", *flags, str(path)], check=True, capture_output=True, text=True)


def test_nbstripout_keeps_golden_outputs_but_clears_counts(tmp_path):
    path = tmp_path / LESSON.name
    shutil.copy(LESSON, path)
    _nbstripout(path)
    nb = json.loads(path.read_text())
    golden = [c for c in nb["cells"] if nbtools.is_golden(c)]
    assert golden and all(c["outputs"] for c in golden), "keep_output tag: nbstripout keeps golden outputs"
    assert all(c["execution_count"] is None for c in golden)
    problems = nbtools.check_notebook(path)
    assert any("lost its execution count" in p and "nbtools strip" in p for p in problems), problems


def _without_ids(text: str) -> dict:
    nb = json.loads(text)
    for cell in nb["cells"]:
        cell.pop("id", None)
    return nb


def test_clean_filter_restores_the_committed_notebook(tmp_path):
    path = tmp_path / LESSON.name
    shutil.copy(LESSON, path)
    _nbstripout(path, "--keep-id")
    out = io.StringIO()
    nbtools.clean_filter(io.StringIO(path.read_text()), out)
    assert out.getvalue() == LESSON.read_text(), "strip(nbstripout --keep-id NB) must equal NB byte for byte"
    # without --keep-id nbstripout renumbers the cell ids ("0", "1", ...); everything else comes back
    shutil.copy(LESSON, path)
    _nbstripout(path)
    out = io.StringIO()
    nbtools.clean_filter(io.StringIO(path.read_text()), out)
    assert _without_ids(out.getvalue()) == _without_ids(LESSON.read_text())
    # the filter passes non-JSON (a merge conflict) through untouched
    out = io.StringIO()
    nbtools.clean_filter(io.StringIO("<<<<<<< HEAD\n"), out)
    assert out.getvalue() == "<<<<<<< HEAD\n"


def test_clean_filter_command_line(tmp_path):
    text = LESSON.read_text()
    nb = json.loads(text)
    nb["cells"][2]["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["noise\n"]}]
    nb["cells"][2]["execution_count"] = 9
    run = subprocess.run([sys.executable, "-m", "diffcl_lite.course.nbtools", "clean"], input=json.dumps(nb),
                         capture_output=True, text=True, check=True)
    assert run.stdout == text


def test_gitattributes_routes_lesson_notebooks_through_the_filter():
    attrs = (REPO / ".gitattributes").read_text()
    assert "notebooks/*.ipynb filter=diffcl-strip" in attrs
    assert "nbtools clean" in (REPO / "Makefile").read_text(), "make install must configure the clean filter"


def _tiny_notebook(path: Path, printed: str, recorded: str) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(f"{nbtools.GOLDEN_MARKER}\nprint({printed!r})", execution_count=None)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=recorded + "\n")]
    cell.metadata["tags"] = [nbtools.KEEP_OUTPUT_TAG]
    nb.cells = [cell]
    nbformat.write(nb, path)


def _nbval(folder: Path) -> subprocess.CompletedProcess:
    (folder / "conftest.py").write_text(textwrap.dedent("""
        from diffcl_lite.course.nbtools import compare_golden_without_counts

        def pytest_collection_modifyitems(config, items):
            compare_golden_without_counts(items)
    """))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-current-env", "--rootdir", str(folder), str(folder)],
                          cwd=folder, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_nbval_compares_golden_cells_without_counts(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    _tiny_notebook(good / "nb.ipynb", "same", "same")
    _tiny_notebook(bad / "nb.ipynb", "printed", "recorded")
    ok = _nbval(good)
    assert ok.returncode == 0, ok.stdout[-3000:]
    failed = _nbval(bad)
    assert failed.returncode != 0 and "recorded" in failed.stdout, "the golden output must really be compared"
