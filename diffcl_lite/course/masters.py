"""Master notebooks: their exercises (stub, solution, checks) and every violation of the convention.

The convention itself is in :mod:`diffcl_lite.course.convention`; the student copies
(:mod:`diffcl_lite.course.classroom`) and the grader (:mod:`diffcl_lite.course.grade`) read masters here.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataFormatError, DiffCLError
from .convention import (EXERCISE_TAGS, TAG_EXERCISE, TAG_HIDDEN_CHECK, TAG_NO_GRADE, TAG_SELF_CHECK, TAG_SOLUTION,
                         cell_exercise, cell_tags, defined_functions, source_of, top_level_names)

__all__ = ["Problem", "Exercise", "Master", "read_notebook", "parse_master", "find_masters", "is_student_copy",
           "load_masters"]

log = logging.getLogger(__name__)


@dataclass
class Problem:
    """A violation of the exercise convention (``severity``: ``error`` or ``warning``)."""

    path: str
    cell: int | None
    message: str
    severity: str = "error"
    cell_id: str | None = None

    def __str__(self) -> str:
        where = f" cell {self.cell}" if self.cell is not None else ""
        cid = f" (id {self.cell_id})" if self.cell_id else ""
        return f"{self.path}{where}{cid}: {self.message}"


@dataclass
class Exercise:
    """One exercise of a master notebook: cell indices of its stub, solution and checks."""

    id: str
    points: float
    stub: int
    solution: int | None = None
    self_checks: list[int] = field(default_factory=list)
    hidden_checks: list[int] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)

    @property
    def check_cells(self) -> list[int]:
        return sorted(self.self_checks + self.hidden_checks)


@dataclass
class Master:
    """A parsed master notebook."""

    path: Path
    nb: Any
    exercises: dict[str, Exercise]
    problems: list[Problem]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def max_points(self) -> float:
        return sum(e.points for e in self.exercises.values())


def read_notebook(path: str | os.PathLike) -> Any:
    """Read a notebook (nbformat 4); raise :class:`DataFormatError` naming the file when it is not one."""
    import nbformat

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: cannot read the file ({exc}).") from exc
    if not text.strip():
        raise DataFormatError(f"{path}: the file is empty; it should be a Jupyter notebook (.ipynb JSON).")
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # json errors, nbformat validation/conversion errors
        raise DataFormatError(f"{path}: not a Jupyter notebook ({type(exc).__name__}: {str(exc)[:200]}).") from exc
    if not isinstance(nb.get("cells"), list):
        raise DataFormatError(f"{path}: not a Jupyter notebook (no list of cells).")
    return nb


def parse_master(path: str | os.PathLike, nb: Any | None = None) -> Master:
    """Find the exercises of a master notebook and every violation of the convention (never raises for those)."""
    path = Path(path)
    nb = read_notebook(path) if nb is None else nb
    shown = str(path)
    problems: list[Problem] = []
    exercises: dict[str, Exercise] = {}
    cells = nb.cells

    def problem(i: int | None, msg: str, severity: str = "error") -> None:
        cid = cells[i].get("id") if i is not None else None
        problems.append(Problem(shown, i, msg, severity, cid))

    for i, cell in enumerate(cells):
        tags = cell_tags(cell)
        roles = [t for t in EXERCISE_TAGS if t in tags]
        if not roles:
            continue
        if len(roles) > 1:
            problem(i, f"has several exercise tags {roles}; use exactly one of {list(EXERCISE_TAGS)}")
            continue
        role = roles[0]
        if cell.cell_type != "code":
            problem(i, f"is a {cell.cell_type} cell tagged {role!r}; exercise cells must be code cells")
            continue
        if TAG_NO_GRADE in tags:
            problem(i, f"is tagged both {role!r} and 'no-grade'; the grader would skip it")
        ex_id, points = cell_exercise(cell)
        if not ex_id:
            problem(i, f"is tagged {role!r} but has no metadata {{\"diffcl\": {{\"exercise\": \"NN.k\"}}}}")
            continue
        src = source_of(cell)
        if role == TAG_EXERCISE:
            if ex_id in exercises:
                problem(i, f"exercise {ex_id} has a second stub cell (first: cell {exercises[ex_id].stub}); "
                           f"ids must be unique")
                continue
            if points is None or points <= 0:
                problem(i, f"exercise {ex_id} needs positive \"points\" in its metadata \"diffcl\"")
                points = 0.0
            ex = Exercise(ex_id, float(points), i, names=top_level_names(src), functions=defined_functions(src))
            if not ex.functions:
                problem(i, f"the stub of exercise {ex_id} defines no function; a stub defines the function "
                           f"the learner writes",
                        "warning")
            exercises[ex_id] = ex
            nxt = cells[i + 1] if i + 1 < len(cells) else None
            if nxt is None or TAG_SOLUTION not in cell_tags(nxt) or cell_exercise(nxt)[0] != ex_id:
                problem(i, f"the stub of exercise {ex_id} must be followed right away by its solution cell "
                           f"(tag 'solution', same exercise id)")
            continue
        ex = exercises.get(ex_id)
        if ex is None:
            problem(i, f"{role} cell for exercise {ex_id} comes before (or without) the stub cell of {ex_id}")
            continue
        if role == TAG_SOLUTION:
            if ex.solution is not None:
                problem(i, f"exercise {ex_id} has a second solution cell (first: cell {ex.solution})")
                continue
            ex.solution = i
            ex.names |= top_level_names(src)
            missing = ex.functions - defined_functions(src)
            if missing:
                problem(i, f"the solution of {ex_id} does not redefine {sorted(missing)} from its stub", "warning")
        elif role == TAG_SELF_CHECK:
            ex.self_checks.append(i)
        else:
            ex.hidden_checks.append(i)
        if role in (TAG_SELF_CHECK, TAG_HIDDEN_CHECK) and "check(" not in src:
            problem(i, f"{role} cell of {ex_id} calls neither check(...) nor run_check(...)", "warning")
    for ex in exercises.values():
        if ex.solution is None:
            problem(ex.stub, f"exercise {ex.id} has no solution cell")
        if not ex.self_checks:
            problem(ex.stub, f"exercise {ex.id} has no self-check cell (tag 'self-check', same id)")
    if len(exercises) < 2:
        problem(None, f"has {len(exercises)} exercise(s); the series asks for at least 2 per notebook", "warning")
    return Master(path, nb, exercises, problems)


def find_masters(src: str | os.PathLike) -> list[Path]:
    """The master notebooks of a folder (``*.ipynb``, sorted)."""
    return sorted(p for p in Path(src).glob("*.ipynb") if p.is_file())


def is_student_copy(path: Path) -> bool:
    try:
        meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(meta.get("diffcl"), dict) and bool(meta["diffcl"].get("student_copy"))


def load_masters(src: str | os.PathLike, *, strict: bool = True) -> list[Master]:
    """Parse every master notebook in ``src``.

    With ``strict``, raise one :class:`DiffCLError` listing every convention error (warnings are logged).
    """
    src = Path(src)
    if not src.is_dir():
        raise DiffCLError(f"master notebook folder {src} does not exist; run from the repository root or pass "
                          f"--src/--masters DIR")
    masters = [parse_master(p) for p in find_masters(src)]
    for m in masters:
        for p in m.problems:
            if p.severity == "warning":
                log.warning("%s", p)
    errors = [p for m in masters for p in m.errors]
    if strict and errors:
        listing = "\n  ".join(str(p) for p in errors)
        raise DiffCLError(f"{len(errors)} exercise-convention error(s) in {src} (see diffcl_lite/course/convention.py "
                          f"for the convention; fix the notebook cells):\n  {listing}")
    return masters
