"""The instructors' answer key (``python -m diffcl_lite classroom answer-key``), made from the masters."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from diffcl_lite.course.answer_key import KEY_MARK, write_answer_key
from diffcl_lite.course.convention import TAG_INSTRUCTOR, cell_tags, source_of
from diffcl_lite.course.masters import load_masters
from diffcl_lite.errors import DiffCLError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    out = tmp_path_factory.mktemp("key") / "answer_key"
    return write_answer_key(NOTEBOOKS, out)


def test_every_exercise_has_its_prompt_solution_and_checks(key):
    masters = load_masters(NOTEBOOKS)
    assert key.exercises == sum(len(m.exercises) for m in masters)
    assert key.points == sum(m.max_points for m in masters)
    for m in masters:
        text = (key.out_dir / f"{m.path.stem}.md").read_text(encoding="utf-8")
        assert text.startswith(KEY_MARK)
        for ex in m.exercises.values():
            assert f"## Exercise {ex.id} (" in text
            for i in [ex.stub, ex.solution, *ex.check_cells]:
                assert source_of(m.nb.cells[i]).rstrip() in text, (m.name, ex.id, i)
            assert f"**Exercise {ex.id}" in text, f"{m.name} {ex.id}: the prompt is missing"


def test_instructor_notes_are_in_the_key_and_never_in_student_copies(key):
    notes = 0
    for m in load_masters(NOTEBOOKS):
        student = json.loads((ROOT / "student" / m.name).read_text(encoding="utf-8"))
        student_text = "".join(source_of(c) for c in student["cells"])
        for cell in m.nb.cells:
            if TAG_INSTRUCTOR in cell_tags(cell):
                notes += 1
                src = source_of(cell).strip()
                assert src in (key.out_dir / f"{m.path.stem}.md").read_text(encoding="utf-8")
                assert src not in student_text
    assert notes >= 3  # the experimental exercises and the capstone have model answers


def test_the_index_lists_every_notebook_with_its_points(key):
    index = (key.out_dir / "README.md").read_text(encoding="utf-8")
    for m in load_masters(NOTEBOOKS):
        assert f"| [{m.name}]({m.path.stem}.md) | {len(m.exercises)} | {m.max_points:g} |" in index


def test_a_previous_key_is_replaced_and_a_foreign_folder_refused(tmp_path):
    out = tmp_path / "key"
    write_answer_key(NOTEBOOKS, out)
    (out / "00_welcome.md").write_text(KEY_MARK + "\nstale\n", encoding="utf-8")
    write_answer_key(NOTEBOOKS, out)
    assert "stale" not in (out / "00_welcome.md").read_text(encoding="utf-8")
    (out / "grades.csv").write_text("student,points\n", encoding="utf-8")
    with pytest.raises(DiffCLError, match="not part of an answer key.*grades.csv"):
        write_answer_key(NOTEBOOKS, out)
    assert (out / "grades.csv").exists()  # nothing of the user's was touched


def test_student_copies_are_refused_with_the_fix(tmp_path):
    src = tmp_path / "student"
    shutil.copytree(ROOT / "student", src)
    with pytest.raises(DiffCLError, match="student copies.*--src notebooks"):
        write_answer_key(src, tmp_path / "key")
    assert not (tmp_path / "key").exists()


def test_the_command_line_writes_the_key(tmp_path):
    out = tmp_path / "k"
    proc = subprocess.run([sys.executable, "-m", "diffcl_lite", "classroom", "answer-key", "--src", str(NOTEBOOKS),
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "keep it away from learners" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(["README.md"] + [p.stem + ".md" for p in NOTEBOOKS.glob("*.ipynb")])


def test_readme_states_the_exercise_totals(key):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"{key.exercises} exercises, {key.points:g} points over the ten notebooks" in readme
