"""Classroom mode: hand the notebook series out as assignments and grade a folder of submissions.

``python -m diffcl_lite classroom student [--out DIR] [--verify]`` builds the student copies;
``python -m diffcl_lite classroom grade SUBMISSIONS_DIR --out DIR`` grades them
(see :mod:`diffcl_lite.classroom_grade`).

The exercise convention of the master notebooks (``notebooks/*.ipynb``) is cell tags plus one
metadata entry, ``{"diffcl": {"exercise": "NN.k", "points": P}}``:

==============  ==========================================================================
tag             cell
==============  ==========================================================================
``exercise``    stub: defines the function(s) the learner writes, returning a placeholder
                of the right type and shape (``# TODO:``), so the notebook runs unfilled
``solution``    right after its stub, same id: the same function(s), correct
``self-check``  same id: ``check(...)``/``run_check(...)`` from :mod:`diffcl_lite.checks`;
                the learner runs it ("correct" / "not yet: ..." with a hint)
``hidden-check`` same id, optional: more checks on other inputs, run by the grader only
``no-grade``    heavy cells (UMAP, widgets, long training) that no check needs
==============  ==========================================================================

Student copies (``student/``, committed; ``make test`` runs ``--verify``): ``solution`` and
``hidden-check`` cells removed, outputs and execution counts cleared, the ``# NBVAL_CHECK_OUTPUT``
marker line dropped (there is no committed output left to compare), one note for the learner
added after the goals cell; every other cell, tag, metadata entry and cell id is kept (the
grader matches a submission's cells to the master's by exercise id and cell id).
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DataFormatError, DiffCLError

log = logging.getLogger(__name__)

TAG_EXERCISE = "exercise"
TAG_SOLUTION = "solution"
TAG_SELF_CHECK = "self-check"
TAG_HIDDEN_CHECK = "hidden-check"
TAG_NO_GRADE = "no-grade"
TAG_PARAMETERS = "parameters"
EXERCISE_TAGS = (TAG_EXERCISE, TAG_SOLUTION, TAG_SELF_CHECK, TAG_HIDDEN_CHECK)
GOLDEN_MARK = "# NBVAL_CHECK_OUTPUT"
STUDENT_NOTE_ID = "diffcl-student-note"
STUDENT_NOTE = (
    "> **Student copy.** Fill in the cells that start with a `# TODO:` comment (the *exercise* cells) and "
    "run the self-check cell after each one: it says ✅ correct or ❌ not yet, with a hint.\n"
    ">\n"
    "> For grading, keep the file name and hand in the notebook as it is. The grader runs your exercise "
    "cells and any code cells you add; every other cell is taken from the original notebook, and "
    "hidden checks try your functions on other inputs."
)
#: notebook-level metadata marking a generated student copy
STUDENT_MARK = {"student_copy": True}


def cell_tags(cell: Any) -> list[str]:
    """The cell's tags (``metadata.tags``), [] when none or malformed."""
    tags = cell.get("metadata", {}).get("tags", [])
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def cell_exercise(cell: Any) -> tuple[str | None, float | None]:
    """``(exercise id, points)`` from ``metadata.diffcl``, ``(None, None)`` when absent."""
    meta = cell.get("metadata", {}).get("diffcl", {})
    if not isinstance(meta, dict):
        return None, None
    ex, pts = meta.get("exercise"), meta.get("points")
    try:
        pts = float(pts) if pts is not None else None
    except (TypeError, ValueError):
        pts = None
    return (str(ex) if ex is not None else None), pts


def source_of(cell: Any) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def top_level_names(source: str) -> set[str]:
    """Names a cell binds at top level (defs, classes, assignments, imports); empty if it does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for sub in ast.walk(t):
                    if isinstance(sub, ast.Name):
                        names.add(sub.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
    return names


def defined_functions(source: str) -> set[str]:
    """Top-level ``def`` names of a cell."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


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


# ---------------------------------------------------------------- student copies


def make_student_copy(master: Master) -> Any:
    """The student version of a master notebook (a new notebook; the master is not modified)."""
    nb = copy.deepcopy(master.nb)
    cells = []
    note_at = None
    for cell in nb.cells:
        tags = cell_tags(cell)
        if TAG_SOLUTION in tags or TAG_HIDDEN_CHECK in tags:
            continue
        for key in ("execution", "ExecuteTime", "collapsed", "scrolled"):
            cell.get("metadata", {}).pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            src = source_of(cell)
            lines = src.split("\n")
            if lines and lines[0].strip() == GOLDEN_MARK:
                cell.source = "\n".join(lines[1:])
            else:
                cell.source = src
        if note_at is None and "goals" in tags:
            note_at = len(cells) + 1
        cells.append(cell)
    import nbformat

    note = nbformat.v4.new_markdown_cell(STUDENT_NOTE)
    note.id = STUDENT_NOTE_ID
    cells.insert(note_at if note_at is not None else 0, note)
    nb.cells = cells
    nb.metadata.pop("widgets", None)
    nb.metadata.setdefault("diffcl", {}).update(STUDENT_MARK)
    return nb


def notebook_text(nb: Any) -> str:
    """Deterministic serialisation (what is written to disk and compared by ``--verify``)."""
    import nbformat

    return nbformat.writes(nb) + "\n"


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
        raise DiffCLError(f"{len(errors)} exercise-convention error(s) in {src} (see diffcl_lite/classroom.py "
                          f"for the convention; fix the notebook cells):\n  {listing}")
    return masters


@dataclass
class StudentReport:
    """What ``build_student_copies`` wrote (or, with ``verify``, found stale)."""

    out: Path
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.stale


def build_student_copies(src: str | os.PathLike = "notebooks", out: str | os.PathLike = "student", *,
                         verify: bool = False) -> StudentReport:
    """Write the student copy of every master in ``src`` to ``out`` (or, with ``verify``, only compare).

    Copies of masters that no longer exist (``.ipynb`` files in ``out`` marked as student copies) are
    removed; with ``verify`` every missing, different or orphaned copy is listed in ``stale``.
    """
    src, out = Path(src), Path(out)
    masters = [] if verify and not src.exists() else load_masters(src)
    report = StudentReport(out)
    expected = {m.name: notebook_text(make_student_copy(m)) for m in masters}
    if not masters:
        log.warning("no master notebooks (*.ipynb) in %s; nothing to build", src)
    for name, text in expected.items():
        target = out / name
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if current == text:
            report.unchanged.append(name)
        elif verify:
            why = "missing" if current is None else f"differs from its master {src / name}"
            report.stale.append(f"{target}: {why}")
        else:
            out.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".ipynb.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
            report.written.append(name)
    if out.is_dir():
        for path in sorted(out.glob("*.ipynb")):
            if path.name not in expected and is_student_copy(path):
                if verify:
                    report.stale.append(f"{path}: its master {src / path.name} no longer exists")
                else:
                    path.unlink()
                    report.removed.append(path.name)
    return report


# ---------------------------------------------------------------- command line


def cmd_student(args: argparse.Namespace) -> int:
    """``classroom student``: build (or ``--verify``) the student copies."""
    report = build_student_copies(args.src, args.out, verify=args.verify)
    if args.verify:
        if report.stale:
            print(f"student copies in {args.out}/ are stale:\n  " + "\n  ".join(report.stale)
                  + f"\nfix: python -m diffcl_lite classroom student --src {args.src} --out {args.out} "
                    f"(or `make student`), then commit {args.out}/", flush=True)
            return 1
        print(f"student copies in {args.out}/ are up to date ({len(report.unchanged)} notebooks)")
        return 0
    print(f"{args.out}/: {len(report.written)} written, {len(report.unchanged)} unchanged, "
          f"{len(report.removed)} removed" + (f" ({', '.join(report.removed)})" if report.removed else ""))
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    """``classroom grade``: grade a folder of submissions."""
    from .classroom_grade import GradeConfig, grade

    cfg = GradeConfig(masters=Path(args.masters), timeout_s=args.timeout, memory_mb=args.memory_mb,
                      jobs=args.jobs, fast=not args.full,
                      notebooks=[n.strip() for n in args.notebooks.split(",") if n.strip()] if args.notebooks else None,
                      progress=not args.quiet, resume=args.resume, unsafe=args.unsafe, disk_mb=args.disk_mb,
                      max_processes=args.max_processes, data_dir=Path(args.data) if args.data else None)
    result = grade(args.submissions, args.out, cfg)
    print(result.headline())
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def add_cli(subparsers: Any) -> None:
    """Register ``classroom student`` and ``classroom grade`` (called by :mod:`diffcl_lite.cli`)."""
    p = subparsers.add_parser("classroom", help="hand out student copies of the notebooks and grade submissions")
    sub = p.add_subparsers(dest="classroom_command", required=True)
    ps = sub.add_parser("student", help="build student copies (solutions, hidden checks and outputs removed)")
    ps.add_argument("--src", default="notebooks", help="master notebooks [notebooks]")
    ps.add_argument("--out", default="student", help="folder of the student copies [student]")
    ps.add_argument("--verify", action="store_true", help="write nothing; exit 1 when the copies are stale")
    ps.set_defaults(func=cmd_student)
    pg = sub.add_parser("grade", help="grade SUBMISSIONS_DIR/<student>/<notebook>.ipynb; writes grades.csv, "
                                      "grades_wide.csv, summary.md, feedback/ and answers/")
    pg.add_argument("submissions", help="folder with one sub-folder per student")
    pg.add_argument("--out", required=True, help="output folder (grades.csv, summary.md, runs/)")
    pg.add_argument("--masters", default="notebooks", help="master notebooks [notebooks]")
    pg.add_argument("--jobs", type=_positive_int, default=None, help="submissions graded in parallel [number of cores]")
    pg.add_argument("--timeout", type=float, default=120.0, help="seconds of cell execution per submission [120]")
    pg.add_argument("--memory-mb", type=_positive_int, default=2048, help="memory limit per submission kernel [2048]")
    pg.add_argument("--notebooks", default=None,
                    help="comma-separated notebook file names to grade [every master notebook someone submitted]")
    pg.add_argument("--full", action="store_true", help="full mode instead of fast mode (DIFFCL_FAST=1)")
    pg.add_argument("--resume", action="store_true",
                    help="keep the results of a previous (interrupted) run in --out and grade only the rest")
    pg.add_argument("--disk-mb", type=_positive_int, default=512, help="private disk (tmpfs) per submission [512]")
    pg.add_argument("--max-processes", type=_positive_int, default=256,
                    help="processes and threads per submission [256]")
    pg.add_argument("--data", default=None, help="a data folder the notebooks may read (read-only, as $DIFFCL_DATA)")
    pg.add_argument("--unsafe", action="store_true",
                    help="grade without isolation where this machine has no user namespaces (submissions then run "
                         "with your rights)")
    pg.add_argument("--quiet", action="store_true", help="no progress bar")
    pg.set_defaults(func=cmd_grade)
