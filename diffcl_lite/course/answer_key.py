"""The instructors' answer key, generated from the master notebooks: ``python -m diffcl_lite classroom answer-key``.

For every master notebook one Markdown file ``OUT/NN_name.md``: per exercise its id, points and
section, the prompt (the markdown cells between the previous code cell and the stub), the stub the
learners get, the solution, the self-checks, the hidden checks that only the grader runs, and the
instructor notes (markdown cells tagged ``instructor``: model answers to the written parts, which
student copies never contain). ``OUT/README.md`` lists the notebooks with their points.

Nothing is executed: the key is a view of the masters, so it is current whenever they are. The
folder is written to a temporary sibling first and then moved into place, so an error never leaves
a half-written key; a folder ``OUT`` that holds anything but a previous key is refused.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DiffCLError
from .convention import TAG_INSTRUCTOR, cell_tags, source_of
from .masters import Exercise, Master, find_masters, is_student_copy, load_masters

__all__ = ["KEY_MARK", "exercise_section", "exercise_markdown", "notebook_key", "write_answer_key"]

log = logging.getLogger(__name__)

#: first line of every file of a generated key (how a previous key is recognised and replaced)
KEY_MARK = "<!-- diffcl_lite answer key: generated from the master notebooks; do not edit -->"


def _heading(cells: list[Any], before: int) -> str:
    """The last ``##`` heading at or above cell ``before`` ("" if none)."""
    for cell in reversed(cells[: before + 1]):
        if cell.cell_type == "markdown":
            for line in reversed(source_of(cell).splitlines()):
                if line.startswith("## "):
                    return line[3:].strip()
    return ""


def _prompt(cells: list[Any], stub: int) -> str:
    """The markdown cells right above the stub, back to the previous code cell; only the exercise's part."""
    parts = []
    i = stub - 1
    while i >= 0 and cells[i].cell_type == "markdown":
        parts.insert(0, source_of(cells[i]))
        i -= 1
    text = "\n\n".join(parts)
    # a long section often ends with the prompt: start at the paragraph that names the exercise
    marker = text.find("**Exercise")
    return (text[marker:] if marker >= 0 else text).strip()


def _notes(cells: list[Any], ex: Exercise) -> list[str]:
    """Instructor notes of the exercise: ``instructor`` cells after its last check, before the next code cell."""
    out = []
    i = max([ex.stub, ex.solution or 0, *ex.check_cells]) + 1
    while i < len(cells) and cells[i].cell_type != "code":
        if TAG_INSTRUCTOR in cell_tags(cells[i]):
            out.append(source_of(cells[i]).strip())
        i += 1
    return out


def _code(title: str, source: str) -> list[str]:
    return [f"**{title}**", "", "```python", source.rstrip(), "```", ""]


def exercise_section(master: Master, ex: Exercise) -> str:
    """The notebook section (its ``##`` heading) the exercise sits in."""
    return _heading(master.nb.cells, ex.stub)


def exercise_markdown(master: Master, ex: Exercise) -> str:
    """One exercise of the key, as Markdown."""
    cells = master.nb.cells
    points = f"{ex.points:g} point" + ("" if ex.points == 1 else "s")
    lines = [f"## Exercise {ex.id} ({points})", "", f"*Section:* {exercise_section(master, ex) or '(none)'}; "
             f"*functions graded:* {', '.join(f'`{f}`' for f in sorted(ex.functions)) or '(none)'}", ""]
    prompt = _prompt(cells, ex.stub)
    if prompt:
        lines += ["> " + line if line else ">" for line in prompt.splitlines()] + [""]
    lines += _code("Stub (what the learners get)", source_of(cells[ex.stub]))
    if ex.solution is not None:
        lines += _code("Solution", source_of(cells[ex.solution]))
    for i in ex.self_checks:
        lines += _code("Self-check (in the student copy)", source_of(cells[i]))
    for i in ex.hidden_checks:
        lines += _code("Hidden check (grader only)", source_of(cells[i]))
    for note in _notes(cells, ex):
        lines += ["**Instructor notes**", "", note, ""]
    return "\n".join(lines)


def notebook_key(master: Master) -> str:
    """The key of one master notebook, as Markdown."""
    lines = [KEY_MARK, "", f"# Answer key — {master.name}", "",
             f"{len(master.exercises)} exercises, {master.max_points:g} points. Generated from "
             f"`notebooks/{master.name}` by `python -m diffcl_lite classroom answer-key`; keep it away from learners.",
             ""]
    if master.exercises:
        lines += ["| exercise | points | section |", "|---|---|---|"]
        lines += [f"| {e.id} | {e.points:g} | {exercise_section(master, e)} |" for e in master.exercises.values()]
        lines.append("")
    return "\n".join(lines + [exercise_markdown(master, e) for e in master.exercises.values()])


@dataclass
class AnswerKeyReport:
    out_dir: Path
    files: list[Path]
    exercises: int
    points: float


def _check_out(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise DiffCLError(f"--out {out} is a file; pass a folder for the answer key (it is created).")
    foreign = []
    for p in out.iterdir():
        try:
            ok = p.suffix == ".md" and p.is_file() and p.read_text(encoding="utf-8").startswith(KEY_MARK)
        except (OSError, UnicodeDecodeError):
            ok = False
        if not ok:
            foreign.append(p.name)
    if foreign:
        raise DiffCLError(f"--out {out} holds files that are not part of an answer key ({', '.join(sorted(foreign)[:5])}); "
                          f"pass an empty or new folder, or a previous key's folder.")


def write_answer_key(src: str | os.PathLike = "notebooks", out: str | os.PathLike = "answer_key") -> AnswerKeyReport:
    """Write the answer key of the master notebooks in ``src`` into ``out`` (replacing a previous key there)."""
    src, out = Path(src), Path(out)
    students = [p.name for p in find_masters(src) if is_student_copy(p)] if src.is_dir() else []
    if students:
        raise DiffCLError(f"{src} holds student copies ({', '.join(students[:3])}), which have no solutions; "
                          f"pass the master notebooks (--src notebooks).")
    masters = load_masters(src)
    if not masters:
        raise DiffCLError(f"{src} holds no notebooks (*.ipynb); pass the master notebook folder (--src notebooks).")
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        files = []
        for m in masters:
            path = tmp / f"{m.path.stem}.md"
            path.write_text(notebook_key(m), encoding="utf-8")
            files.append(out / path.name)
        rows = [f"| [{m.name}]({m.path.stem}.md) | {len(m.exercises)} | {m.max_points:g} |" for m in masters]
        total = sum(m.max_points for m in masters)
        n_ex = sum(len(m.exercises) for m in masters)
        (tmp / "README.md").write_text("\n".join([
            KEY_MARK, "", "# Answer key", "",
            f"{n_ex} exercises, {total:g} points, generated from the master notebooks in `{src}`. Learners get the "
            "student copies (`student/`), which hold neither solutions, hidden checks nor instructor notes.", "",
            "| notebook | exercises | points |", "|---|---|---|", *rows, ""]), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("answer key: %d files in %s", len(files) + 1, out)
    return AnswerKeyReport(out, files, n_ex, total)
