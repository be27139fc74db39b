"""The notebook convention shared by every course tool: cell tags, golden cells, the kernel.

The exercise convention of the master notebooks (``notebooks/*.ipynb``) is cell tags plus one
metadata entry, ``{"diffcl": {"exercise": "NN.k", "points": P}}``:

==============  ==========================================================================
tag             cell
==============  ==========================================================================
``exercise``    stub: defines the function(s) the learner writes, returning a placeholder
                of the right type and shape (``# TODO:``), so the notebook runs unfilled
``solution``    right after its stub, same id: the same function(s), correct
``self-check``  same id: ``check(...)``/``run_check(...)`` from :mod:`diffcl_lite.lessons.checks`;
                the learner runs it ("correct" / "not yet: ..." with a hint)
``hidden-check`` same id, optional: more checks on other inputs, run by the grader only
``no-grade``    heavy cells (UMAP, widgets, long training) that no check needs
``instructor``  markdown after an exercise's checks: notes and model answers for the written
                part, shown in the answer key (:mod:`diffcl_lite.course.answer_key`) only
==============  ==========================================================================

Student copies (``student/``, committed; ``make test`` runs ``--verify``): ``solution``,
``hidden-check`` and ``instructor`` cells removed, outputs and execution counts cleared, the ``# NBVAL_CHECK_OUTPUT``
marker line dropped (there is no committed output left to compare), one note for the learner
added after the goals cell; every other cell, tag, metadata entry and cell id is kept (the
grader matches a submission's cells to the master's by exercise id and cell id).

Golden cells (first line ``# NBVAL_CHECK_OUTPUT``, tag ``keep_output``) keep their committed outputs,
which nbval compares; every notebook runs on the ``diffcl-lite`` kernel.
"""
from __future__ import annotations

import ast
from typing import Any

__all__ = ["TAG_EXERCISE", "TAG_SOLUTION", "TAG_SELF_CHECK", "TAG_HIDDEN_CHECK", "TAG_NO_GRADE", "TAG_PARAMETERS", "TAG_INSTRUCTOR",
           "EXERCISE_TAGS", "GOLDEN_MARKER", "KEEP_OUTPUT_TAG", "KERNEL_NAME", "KERNELSPEC", "STUDENT_NOTE_ID",
           "STUDENT_MARK", "cell_tags", "cell_exercise", "source_of", "top_level_names", "defined_functions",
           "is_golden"]

TAG_EXERCISE = "exercise"
TAG_SOLUTION = "solution"
TAG_SELF_CHECK = "self-check"
TAG_HIDDEN_CHECK = "hidden-check"
TAG_NO_GRADE = "no-grade"
TAG_PARAMETERS = "parameters"
TAG_INSTRUCTOR = "instructor"
EXERCISE_TAGS = (TAG_EXERCISE, TAG_SOLUTION, TAG_SELF_CHECK, TAG_HIDDEN_CHECK)
#: first line of a golden cell: its committed output is compared by nbval and kept by strip
GOLDEN_MARKER = "# NBVAL_CHECK_OUTPUT"
#: tag that keeps a golden cell's outputs through nbstripout-style tools
KEEP_OUTPUT_TAG = "keep_output"
#: the Jupyter kernel of the series (make install registers it)
KERNEL_NAME = "diffcl-lite"
KERNELSPEC = {"display_name": "Python (diffcl-lite)", "language": "python", "name": KERNEL_NAME}
STUDENT_NOTE_ID = "diffcl-student-note"
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


def is_golden(cell: Any) -> bool:
    """A code cell whose first line is the golden marker."""
    if cell.get("cell_type") != "code":
        return False
    lines = source_of(cell).lstrip("\n").splitlines()
    return bool(lines) and lines[0].strip() == GOLDEN_MARKER
