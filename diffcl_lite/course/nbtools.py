"""Notebook housekeeping: strip outputs (keeping the golden ones), check, and re-run in fast mode.

Used by the lesson notebooks' maintainers and by ``tests/test_notebook_lint.py``::

    python -m diffcl_lite.course.nbtools strip notebooks/*.ipynb     # clear outputs, keep golden cells
    python -m diffcl_lite.course.nbtools check notebooks/*.ipynb     # exit 1 if a notebook is not stripped
    python -m diffcl_lite.course.nbtools clean < NB.ipynb            # git clean filter (.gitattributes)
    python -m diffcl_lite.course.nbtools execute notebooks/01_user_item_graph.ipynb
                                # run in fast mode (DIFFCL_FAST=1), then strip: refreshes golden outputs

A *golden* cell is a code cell whose first line is ``# NBVAL_CHECK_OUTPUT``. nbval (``pytest
--nbval-lax``) re-runs every notebook and compares only those cells' outputs with the committed
ones, and only when the committed cell has an execution count, so stripping keeps both for golden
cells and clears them everywhere else. Stripping is idempotent: a stripped notebook strips to
itself byte for byte.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
from pathlib import Path
from typing import Any, Iterable

from ..errors import DiffCLError
from .convention import GOLDEN_MARKER, KEEP_OUTPUT_TAG, KERNELSPEC, is_golden

log = logging.getLogger(__name__)

__all__ = [
    "strip_notebook", "dumps", "read", "strip_file", "check_notebook", "compare_golden_without_counts",
    "clean_filter", "execute_file", "main",
]

LANGUAGE_INFO = {"name": "python", "pygments_lexer": "ipython3"}
#: cell metadata worth keeping (tags drive papermill, nbval, the classroom tools; diffcl = exercise ids)
CELL_METADATA_KEEP = ("tags", "diffcl", "jupyter", "editable", "deletable", "slideshow")
#: notebook metadata worth keeping; everything else (widget state, papermill, timings) is noise
NB_METADATA_KEEP = ("kernelspec", "language_info", "diffcl")
#: output metadata kept in golden outputs (none: nbval ignores it, Jupyter adds timings)
STREAM_NAMES = ("stdout", "stderr")


def _lines(text: Any) -> list[str]:
    """Multi-line strings as Jupyter stores them: a list of lines, each keeping its newline."""
    joined = "".join(text) if isinstance(text, list) else str(text)
    return joined.splitlines(keepends=True)


def _clean_output(out: dict[str, Any], count: int) -> dict[str, Any]:
    out = copy.deepcopy(out)
    kind = out.get("output_type")
    if kind == "stream":
        return {"name": out.get("name", "stdout"), "output_type": "stream", "text": _lines(out.get("text", ""))}
    if kind in ("execute_result", "display_data"):
        data = out.get("data", {})
        # golden cells print plain text; drop rich variants (html tables, widget views) that vary
        data = {k: v for k, v in data.items() if k == "text/plain"} or data
        data = {k: (_lines(v) if k.startswith("text/") else v) for k, v in data.items()}
        res: dict[str, Any] = {"data": data, "metadata": {}, "output_type": kind}
        if kind == "execute_result":
            res["execution_count"] = count
        return res
    return out  # errors are kept as they are: a golden cell should not have one (check reports it)


def strip_notebook(nb: dict[str, Any]) -> dict[str, Any]:
    """Return a stripped copy of the notebook JSON (a dict as read by ``json.load``).

    * code cells: outputs and execution counts cleared, except golden cells, which keep their
      outputs (plain text only), get the execution count a top-to-bottom run gives them and carry
      the ``keep_output`` tag (so nbstripout and other strippers keep their outputs too);
    * cell metadata: only ``tags``, ``diffcl``, ``jupyter``, ``editable``, ``deletable``,
      ``slideshow``; markdown cells lose ``outputs``/``attachments`` noise;
    * notebook metadata: ``kernelspec`` set to ``diffcl-lite``, ``language_info`` reduced to the
      language name, everything else (widget state, papermill, timings) dropped.
    """
    nb = copy.deepcopy(nb)
    cells = nb.get("cells", [])
    code_seen = 0
    for cell in cells:
        meta = cell.get("metadata", {}) or {}
        cell["metadata"] = {k: meta[k] for k in CELL_METADATA_KEEP if k in meta}
        cell["source"] = _lines(cell.get("source", ""))
        if cell.get("cell_type") == "code":
            tags = [t for t in cell["metadata"].get("tags", []) if t != KEEP_OUTPUT_TAG]
            if is_golden(cell):
                tags.append(KEEP_OUTPUT_TAG)
            if tags:
                cell["metadata"]["tags"] = tags
            else:
                cell["metadata"].pop("tags", None)
            code_seen += 1
            if is_golden(cell) and cell.get("outputs"):
                cell["execution_count"] = code_seen
                cell["outputs"] = [_clean_output(o, code_seen) for o in cell["outputs"]]
            else:
                cell["execution_count"] = None
                cell["outputs"] = []
    meta = nb.get("metadata", {}) or {}
    new_meta = {k: meta[k] for k in NB_METADATA_KEEP if k in meta}
    new_meta["kernelspec"] = dict(KERNELSPEC)
    new_meta["language_info"] = dict(LANGUAGE_INFO)
    nb["metadata"] = new_meta
    return nb


def dumps(nb: dict[str, Any]) -> str:
    """Serialise like Jupyter does (1-space indent, sorted keys, trailing newline)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def read(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DiffCLError(f"{path}: not valid notebook JSON ({exc}); fix the file or restore it from git.") from exc


def strip_file(path: str | Path) -> bool:
    """Strip one notebook in place. Returns True when the file changed."""
    path = Path(path)
    before = path.read_text(encoding="utf-8")
    after = dumps(strip_notebook(json.loads(before)))
    if after != before:
        path.write_text(after, encoding="utf-8")
        return True
    return False


def check_notebook(path: str | Path) -> list[str]:
    """Problems that keep ``path`` from being committed as is (empty list = fine).

    Reports a notebook that is not stripped (stripping would change it), golden cells without
    output or with an error output, and outputs in other cells.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    nb = json.loads(text)
    problems: list[str] = []
    strip_fix = f"run `python -m diffcl_lite.course.nbtools strip {path}` (or `make strip`)"
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        if is_golden(cell):
            outs = cell.get("outputs") or []
            if not outs:
                problems.append(f"cell {i} (golden, # NBVAL_CHECK_OUTPUT) has no committed output: run "
                                f"`python -m diffcl_lite.course.nbtools execute {path.name}` to record it")
            elif cell.get("execution_count") is None:
                problems.append(f"cell {i} (golden) kept its output but lost its execution count (nbstripout without "
                                f"--keep-count does this; the tests still compare it): {strip_fix} to restore it")
            if any(o.get("output_type") == "error" for o in outs):
                problems.append(f"cell {i} (golden) has an error output; fix the cell and re-run")
            if KEEP_OUTPUT_TAG not in (cell.get("metadata", {}).get("tags") or []):
                problems.append(f"cell {i} (golden) lacks the {KEEP_OUTPUT_TAG!r} tag that keeps its output through "
                                f"nbstripout: {strip_fix}")
        elif cell.get("outputs"):
            problems.append(f"cell {i} has outputs but is not a golden cell (first line {GOLDEN_MARKER}): {strip_fix}")
        elif cell.get("execution_count") is not None:
            problems.append(f"cell {i} has an execution count but is not a golden cell: {strip_fix}")
    if dumps(strip_notebook(nb)) != text:
        problems.append(f"{path.name} is not stripped ({_first_difference(nb)}): {strip_fix}")
    return problems


def _first_difference(nb: dict[str, Any]) -> str:
    """Where stripping would change ``nb``: the first cell or metadata field that differs, in words."""
    clean = strip_notebook(nb)
    if nb.get("metadata") != clean["metadata"]:
        extra = sorted(set(nb.get("metadata", {})) - set(clean["metadata"]))
        return f"notebook metadata {extra or 'kernelspec/language_info'} differs"
    for i, (a, b) in enumerate(zip(nb.get("cells", []), clean["cells"])):
        for key in ("metadata", "source", "outputs", "execution_count"):
            if a.get(key) != b.get(key):
                return f"cell {i} {key} differs"
    return "key order, indentation or the final newline differ"


def compare_golden_without_counts(items: Iterable[Any]) -> int:
    """Let nbval compare golden cells whose execution count a stripper cleared; returns how many.

    nbval compares a cell's output only when the committed cell has an execution count ("Unrun
    reference cell has outputs" otherwise). nbstripout keeps the outputs of ``keep_output`` cells
    but clears their counts unless ``--keep-count`` is given; for golden cells the marker, not the
    count, says that the output is the reference, so they get a count back here. Called from the
    test suite's ``pytest_collection_modifyitems``.
    """
    fixed = 0
    for item in items:
        cell = getattr(item, "cell", None)
        if item.__class__.__name__ != "IPyNbCell" or cell is None:
            continue
        if cell.get("execution_count") is None and cell.get("outputs") and is_golden(cell):
            cell["execution_count"] = 1
            fixed += 1
    return fixed


def clean_filter(stdin: Any = None, stdout: Any = None) -> None:
    """A git clean filter: the notebook JSON on stdin, stripped, on stdout (see ``.gitattributes``)."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    text = stdin.read()
    try:
        nb = json.loads(text)
    except json.JSONDecodeError:
        stdout.write(text)  # not notebook JSON (a merge conflict, say): pass it through unchanged
        return
    stdout.write(dumps(strip_notebook(nb)))


def execute_file(path: str | Path, fast: bool = True, timeout: int = 600, kernel_name: str | None = None,
                 output_dir: str | Path | None = None) -> None:
    """Run a notebook top to bottom (fast mode by default), write it back stripped (golden outputs kept).

    With ``output_dir`` the executed notebook, outputs and all, is written there instead and the
    source notebook is left untouched (``make figures``). The kernel runs in the notebook's folder
    with ``DIFFCL_FAST=1`` in fast mode, like the test suite (see :func:`diffcl_lite.course.runner.run_notebook`).
    """
    import nbformat

    from .runner import run_notebook

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    run_notebook(nb, path.parent, fast=fast, timeout=timeout, kernel_name=kernel_name)
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out / path.name)
        return
    raw = json.loads(nbformat.writes(nb))
    path.write_text(dumps(strip_notebook(raw)), encoding="utf-8")


def _expand(paths: Iterable[str]) -> list[Path]:
    out = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(sorted(path.glob("*.ipynb")))
        elif path.suffix == ".ipynb":
            out.append(path)
        else:
            raise DiffCLError(f"{p}: not a notebook (.ipynb) or a folder of notebooks.")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m diffcl_lite.course.nbtools {strip,check,execute} NOTEBOOK...``."""
    parser = argparse.ArgumentParser(prog="python -m diffcl_lite.course.nbtools", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("clean", help="git clean filter: strip the notebook on stdin to stdout (see .gitattributes)")
    for name, helptext in (("strip", "clear outputs in place, keep golden cells' outputs"),
                           ("check", "exit 1 when a notebook is not stripped or a golden cell lacks output"),
                           ("execute", "run in fast mode with nbclient, then strip (refreshes golden outputs)")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("paths", nargs="+", help="notebooks or folders of notebooks")
        if name == "execute":
            p.add_argument("--full", action="store_true", help="run in full mode instead of fast mode")
            p.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
            p.add_argument("--output-dir", default=None,
                           help="write the executed notebooks here (with outputs) and leave the sources untouched")
    args = parser.parse_args(argv)
    if args.cmd == "clean":
        clean_filter()
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = _expand(args.paths)
    status = 0
    for path in paths:
        if args.cmd == "strip":
            changed = strip_file(path)
            log.info("%s %s", "stripped" if changed else "unchanged", path)
        elif args.cmd == "check":
            problems = check_notebook(path)
            for msg in problems:
                log.error("%s: %s", path, msg)
            status = status or (1 if problems else 0)
        else:
            log.info("executing %s (%s mode)", path, "full" if args.full else "fast")
            execute_file(path, fast=not args.full, timeout=args.timeout, output_dir=args.output_dir)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
