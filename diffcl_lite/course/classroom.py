"""Classroom mode: hand the notebook series out as assignments and grade a folder of submissions.

``python -m diffcl_lite classroom student [--out DIR] [--verify]`` builds the student copies;
``python -m diffcl_lite classroom grade SUBMISSIONS_DIR --out DIR`` grades them
(see :mod:`diffcl_lite.course.grade`); ``python -m diffcl_lite classroom answer-key --out DIR`` writes
the instructors' answer key (:mod:`diffcl_lite.course.answer_key`).

The exercise convention is described in :mod:`diffcl_lite.course.convention`; master notebooks are
parsed by :mod:`diffcl_lite.course.masters`.
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .convention import (GOLDEN_MARKER, STUDENT_MARK, STUDENT_NOTE_ID, TAG_HIDDEN_CHECK, TAG_INSTRUCTOR, TAG_SOLUTION,
                         cell_tags, source_of)
from .masters import Master, is_student_copy, load_masters

__all__ = ["STUDENT_NOTE", "make_student_copy", "notebook_text", "StudentReport", "build_student_copies",
           "cmd_student", "cmd_grade", "cmd_answer_key", "add_cli"]

log = logging.getLogger(__name__)

STUDENT_NOTE = (
    "> **Student copy.** Fill in the cells that start with a `# TODO:` comment (the *exercise* cells) and "
    "run the self-check cell after each one: it says ✅ correct or ❌ not yet, with a hint.\n"
    ">\n"
    "> For grading, keep the file name and hand in the notebook as it is. The grader runs your exercise "
    "cells and any code cells you add; every other cell is taken from the original notebook, and "
    "hidden checks try your functions on other inputs."
)


# ---------------------------------------------------------------- student copies


def make_student_copy(master: Master) -> Any:
    """The student version of a master notebook (a new notebook; the master is not modified)."""
    nb = copy.deepcopy(master.nb)
    cells = []
    note_at = None
    for cell in nb.cells:
        tags = cell_tags(cell)
        if TAG_SOLUTION in tags or TAG_HIDDEN_CHECK in tags or TAG_INSTRUCTOR in tags:
            continue
        for key in ("execution", "ExecuteTime", "collapsed", "scrolled"):
            cell.get("metadata", {}).pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            src = source_of(cell)
            lines = src.split("\n")
            if lines and lines[0].strip() == GOLDEN_MARKER:
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
    from .grade import GradeConfig, grade

    cfg = GradeConfig(masters=Path(args.masters), timeout_s=args.timeout, memory_mb=args.memory_mb,
                      jobs=args.jobs, fast=not args.full,
                      notebooks=[n.strip() for n in args.notebooks.split(",") if n.strip()] if args.notebooks else None,
                      progress=not args.quiet, resume=args.resume, unsafe=args.unsafe, disk_mb=args.disk_mb,
                      max_processes=args.max_processes, data_dir=Path(args.data) if args.data else None)
    result = grade(args.submissions, args.out, cfg)
    print(result.headline())
    return 0


def cmd_answer_key(args: argparse.Namespace) -> int:
    """``classroom answer-key``: write the instructors' answer key from the master notebooks."""
    from .answer_key import write_answer_key

    report = write_answer_key(args.src, args.out)
    print(f"answer key: {report.exercises} exercises, {report.points:g} points, {len(report.files)} notebooks "
          f"in {report.out_dir}/ (start at {report.out_dir / 'README.md'}); keep it away from learners")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def add_cli(subparsers: Any) -> None:
    """Register ``classroom student``, ``grade`` and ``answer-key`` (called by :mod:`diffcl_lite.cli`)."""
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
    pk = sub.add_parser("answer-key", help="write the instructors' answer key (prompts, solutions, checks, "
                                           "instructor notes) from the master notebooks")
    pk.add_argument("--src", default="notebooks", help="master notebooks [notebooks]")
    pk.add_argument("--out", default="answer_key", help="folder of the key, replaced if it holds a previous key "
                                                          "[answer_key]")
    pk.set_defaults(func=cmd_answer_key)
