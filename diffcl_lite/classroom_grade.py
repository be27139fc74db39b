"""Grade a folder of submitted notebooks: ``python -m diffcl_lite classroom grade SUBMISSIONS_DIR --out DIR``.

Layout: ``SUBMISSIONS_DIR/<student>/<notebook file name as handed out>.ipynb``; anything else is
reported in ``summary.md``, never fatal. Output: ``DIR/grades.csv`` (one row per student, notebook
and exercise of the master — also when the submission never reaches it), ``DIR/summary.md`` and
``DIR/runs/<student>/<notebook>`` (the executed grading notebooks, to look at a surprising row).

How one submission is graded (:func:`build_run`): the grader builds a notebook from the MASTER —
its code cells up to the last check cell, without ``solution`` and ``no-grade`` cells — in which
each ``exercise`` cell is the submission's cell of that exercise id and the code cells the
learner added are inserted where they were; self-check and hidden-check cells always come from
the master (with guard cells around the learner's code, see :mod:`diffcl_lite.classroom_runtime`).
Edits to other cells of the submission are ignored. The run happens in its own kernel in a
temporary working directory with a private copy of ``diffcl_lite`` (a submission that deletes
files only deletes copies), with a time and a memory limit (:mod:`diffcl_lite.classroom_exec`),
in fast mode (``DIFFCL_FAST=1``), ``--jobs`` at a time. Each master is first graded with its own
solutions ("calibration"): that run fixes the list of checks (and points) of every exercise, so a
check that never ran in a submission still counts as failed, with the reason.

Points of an exercise = its ``points`` x (points of the checks passed / points of all its checks).
"""
from __future__ import annotations

import csv
import difflib
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .classroom import (GOLDEN_MARK, TAG_EXERCISE, TAG_HIDDEN_CHECK, TAG_NO_GRADE, TAG_PARAMETERS, TAG_SELF_CHECK,
                        TAG_SOLUTION, Master, cell_exercise, cell_tags, defined_functions, load_masters,
                        read_notebook, source_of)
from .classroom_exec import kill_session
from .classroom_runtime import MIME
from .errors import DataFormatError, DiffCLError

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
WORKER = PACKAGE_DIR / "classroom_exec.py"
CSV_COLUMNS = ["student", "notebook", "exercise", "points", "max_points", "feedback", "checks_passed",
               "checks_total", "status", "flags", "seconds"]
RT = "import diffcl_lite.classroom_runtime as __dg__\n"
#: words in a learner's code worth a look by a human (reported in the ``flags`` column, not scored)
SUSPICIOUS = [(r"diffcl_lite\.checks|\bRESULTS\b|results_json|\b_compare\b|\b_record\b", "the checks module"),
              (r"classroom_runtime|__dg__", "the grader's runtime"), (r"sys\.modules", "sys.modules"),
              (r"__code__|__globals__|sys\._getframe|\binspect\.", "code objects or frames"),
              (r"\bgc\.|\bctypes\b", "gc/ctypes"), (r"\bbuiltins\b", "builtins"),
              (r"^\s*(check|run_check)\s*=|^\s*def\s+(check|run_check)\s*\(", "a redefinition of check")]


@dataclass
class GradeConfig:
    """Options of :func:`grade` (the CLI flags)."""

    masters: Path = Path("notebooks")
    timeout_s: float = 120.0
    memory_mb: int = 2048
    jobs: int | None = None
    fast: bool = True
    notebooks: list[str] | None = None
    progress: bool = True
    #: extra wall-clock seconds a worker gets for starting its kernel before it is killed
    startup_allowance_s: float = 90.0


@dataclass
class Row:
    student: str
    notebook: str
    exercise: str
    points: float
    max_points: float
    feedback: str
    checks_passed: int = 0
    checks_total: int = 0
    status: str = ""
    flags: str = ""
    seconds: float | None = None

    def as_csv(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["points"] = _fmt(self.points)
        d["max_points"] = _fmt(self.max_points)
        d["seconds"] = "" if self.seconds is None else f"{self.seconds:.1f}"
        return d


def _fmt(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") if x != int(x) else str(int(x))


@dataclass
class GradeResult:
    """Everything :func:`grade` wrote, for the CLI and the tests."""

    out: Path
    rows: list[Row]
    problems: list[str]
    calibration: dict[str, str]
    wall_s: float
    run_seconds: list[float]
    jobs: int
    cpu_seconds: list[float] = field(default_factory=list)

    def estimate_s(self, n: int = 200, cores: int = 2) -> float | None:
        """Estimated wall time of ``n`` submissions like these on ``cores`` free cores (from the median CPU time)."""
        return n * statistics.median(self.cpu_seconds) / cores if self.cpu_seconds else None

    def headline(self) -> str:
        students = len({r.student for r in self.rows})
        med = f", median {statistics.median(self.run_seconds):.1f} s per submission" if self.run_seconds else ""
        return (f"graded {len(self.run_seconds)} submission(s) of {students} student(s) in {self.wall_s:.1f} s "
                f"({self.jobs} jobs{med}); wrote {self.out / 'grades.csv'} ({len(self.rows)} rows) and "
                f"{self.out / 'summary.md'}"
                + (f"; {len(self.problems)} note(s) in the summary" if self.problems else ""))


# ---------------------------------------------------------------- building the graded notebook


def _injected(source: str, role: str, **meta: Any) -> Any:
    import nbformat

    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["diffcl_grader"] = {"role": role, **meta}
    return cell


def _allowed_names(master: Master) -> list[str]:
    names: set[str] = set()
    for ex in master.exercises.values():
        names |= ex.names
    return sorted(names)


def match_submission(master: Master, sub: Any) -> tuple[dict[str, str], dict[int, list[str]], dict[str, str]]:
    """Find the submission's exercise cells (by exercise id, cell id, then function names) and the code cells it added.

    Returns ``(exercise sources, added cells by master anchor index, notes by exercise)``; an added
    cell is anchored at the last master cell seen before it (-1: before every master cell).
    """
    cells = master.nb.cells
    by_id = {c.get("id"): i for i, c in enumerate(cells) if c.get("id")}
    stub_at = {ex.stub: ex.id for ex in master.exercises.values()}
    answers = set(stub_at) | {ex.solution for ex in master.exercises.values()}
    by_src: dict[str, int] = {}
    for i, c in enumerate(cells):
        src = source_of(c).strip()
        if c.cell_type == "code" and src and i not in answers:
            by_src[src] = i
            if src.startswith(GOLDEN_MARK):  # as in the student copy, without the marker line
                by_src[src[len(GOLDEN_MARK):].strip()] = i
    found: dict[str, str] = {}
    added: dict[int, list[str]] = {}
    notes: dict[str, str] = {}
    anchor = -1
    skip_tags = (TAG_SOLUTION, TAG_SELF_CHECK, TAG_HIDDEN_CHECK, TAG_NO_GRADE, TAG_PARAMETERS)
    for cell in sub.cells:
        tags = cell_tags(cell)
        ex_id, _ = cell_exercise(cell)
        src = source_of(cell)
        idx = by_id.get(cell.get("id"))
        is_code = cell.get("cell_type") == "code"
        if is_code and TAG_EXERCISE in tags and ex_id in master.exercises and ex_id not in found:
            found[ex_id] = src
            anchor = master.exercises[ex_id].stub
            continue
        if idx is not None and idx in stub_at and stub_at[idx] not in found and cell.get("cell_type") == "code":
            found[stub_at[idx]] = src  # same cell id as the stub: its tags or metadata were lost
            anchor = idx
            continue
        if idx is not None:
            anchor = idx
            continue
        if cell.get("cell_type") != "code" or not src.strip() or any(t in tags for t in skip_tags):
            continue
        if src.strip() in by_src:
            anchor = by_src[src.strip()]
            continue
        funcs = defined_functions(src)
        cands = [e for e in master.exercises.values() if e.functions and e.functions <= funcs and e.id not in found]
        if cands and not ex_id:
            found[cands[0].id] = src
            anchor = cands[0].stub
            continue
        added.setdefault(anchor, []).append(src)
    for ex in master.exercises.values():
        if ex.id not in found:
            notes[ex.id] = (f"no exercise cell for {ex.id} found in your notebook (cell deleted, or its metadata "
                            f"removed?); the checks ran without it")
    return found, added, notes


def build_run(master: Master, sub: Any | None) -> tuple[Any, dict[str, str]]:
    """The notebook the grader executes for one submission (``sub=None``: the master's own solutions).

    Returns ``(notebook, notes by exercise)``. Cells carry ``metadata.diffcl_grader.role``:
    ``setup``, ``master``, ``enter``, ``learner``, ``leave``, ``check``, ``collect``, ``final``.
    """
    import nbformat

    cells = master.nb.cells
    if sub is None:
        found = {ex.id: source_of(cells[ex.solution]) for ex in master.exercises.values() if ex.solution is not None}
        added: dict[int, list[str]] = {}
        notes: dict[str, str] = {}
    else:
        found, added, notes = match_submission(master, sub)
    allowed = _allowed_names(master)
    check_at = {i: (ex.id, TAG_SELF_CHECK if i in ex.self_checks else TAG_HIDDEN_CHECK)
                for ex in master.exercises.values() for i in ex.check_cells}
    stub_at = {ex.stub: ex.id for ex in master.exercises.values()}
    last = max(check_at) if check_at else -1
    order = [ex.stub for ex in master.exercises.values()]
    out = [_injected(RT + "__dg__.install()", "setup")]

    def next_exercise(i: int) -> str | None:
        later = [stub_at[s] for s in sorted(order) if s >= i]
        return later[0] if later else None

    def learner(src: str, exercise: str | None, what: str) -> None:
        out.append(_injected(RT + "__dg__.enter()", "enter", exercise=exercise))
        cell = _injected(src, "learner", exercise=exercise, what=what)
        out.append(cell)
        out.append(_injected(RT + f"__dg__.leave({allowed!r})", "leave", exercise=exercise))

    for src in added.get(-1, []):
        learner(src, next_exercise(0), "added")
    for i, cell in enumerate(cells):
        if i > last:
            break
        tags = cell_tags(cell)
        if cell.cell_type == "code" and TAG_SOLUTION not in tags and TAG_NO_GRADE not in tags:
            if i in stub_at:
                if stub_at[i] in found:
                    learner(found[stub_at[i]], stub_at[i], "exercise")
            elif i in check_at:
                ex_id, kind = check_at[i]
                out.append(_injected(RT + f"__dg__.begin({ex_id!r}, {kind!r})\n" + source_of(cell), "check",
                                     exercise=ex_id, kind=kind))
                out.append(_injected(RT + f"__dg__.end({ex_id!r}, {kind!r})", "collect", exercise=ex_id, kind=kind))
            else:
                out.append(_injected(source_of(cell), "master", index=i))
        for src in added.get(i, []):
            learner(src, next_exercise(i) or (stub_at.get(i)), "added")
    out.append(_injected(RT + "__dg__.final()", "final"))
    nb = nbformat.v4.new_notebook(cells=out, metadata={"diffcl_grader": {"master": master.name}})
    return nb, notes


# ---------------------------------------------------------------- running


def _prepare_sandbox(root: Path) -> tuple[Path, Path]:
    work = root / "work"
    work.mkdir(parents=True)
    pkg = root / "pkg"
    shutil.copytree(PACKAGE_DIR, pkg / "diffcl_lite", ignore=shutil.ignore_patterns("*.tmp"))
    return work, pkg


def _wait_with_rusage(proc: subprocess.Popen, limit_s: float) -> float | None:
    """Wait for a worker (killing its session after ``limit_s``); return the CPU seconds it and its children used."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:  # pragma: no cover - reaped elsewhere
            return None
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return round(usage.ru_utime + usage.ru_stime, 2)
        if time.monotonic() > deadline:
            kill_session(proc.pid)
            deadline = float("inf")
        time.sleep(0.05)


def run_notebook(nb: Any, cfg: GradeConfig, threads: int = 1) -> tuple[Any | None, dict[str, Any], float]:
    """Execute a graded notebook in a worker process: ``(executed notebook or None, report, seconds)``; never raises."""
    import nbformat

    t0 = time.monotonic()
    gdir = Path(tempfile.mkdtemp(prefix="diffcl-grader-"))
    sandbox = Path(tempfile.mkdtemp(prefix="diffcl-grade-"))
    proc = None
    report: dict[str, Any]
    executed = None
    try:
        work, pkg = _prepare_sandbox(sandbox)
        nb_path, out_nb, out_report, pid_file = (gdir / "run.ipynb", gdir / "executed.ipynb", gdir / "report.json",
                                                 gdir / "kernel.pid")
        nbformat.write(nb, str(nb_path))
        task = {"notebook": str(nb_path), "cwd": str(work), "timeout_s": cfg.timeout_s, "memory_mb": cfg.memory_mb,
                "out_notebook": str(out_nb), "out_report": str(out_report), "pid_file": str(pid_file)}
        (gdir / "task.json").write_text(json.dumps(task))
        env = os.environ.copy()
        env.pop("DIFFCL_FIGURES", None)
        old = env.get("PYTHONPATH")
        env.update({"PYTHONPATH": str(pkg) + (os.pathsep + old if old else ""), "DIFFCL_FAST": "1" if cfg.fast else "0",
                    "DIFFCL_GRADING": "1", "MPLBACKEND": "Agg", "IPYTHONDIR": str(sandbox / "ipython"),
                    "JUPYTER_RUNTIME_DIR": str(gdir / "runtime"), "PYTHONDONTWRITEBYTECODE": "1",
                    "CUDA_VISIBLE_DEVICES": "",  # CPU only: parallel runs never compete for one GPU
                    "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                    "OPENBLAS_NUM_THREADS": str(threads)})
        with open(gdir / "worker.log", "wb") as logf:
            proc = subprocess.Popen([sys.executable, str(WORKER), str(gdir / "task.json")], cwd=str(gdir), env=env,
                                    stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            cpu_s = _wait_with_rusage(proc, cfg.timeout_s + cfg.startup_allowance_s)
        if out_report.is_file():
            report = json.loads(out_report.read_text())
            # the worker's CPU plus its kernel's (read before the kill: the worker does not reap its kernel)
            report["cpu_seconds"] = round((cpu_s or 0.0) + (report.get("kernel_cpu_seconds") or 0.0), 2)
        else:
            tail = (gdir / "worker.log").read_text(errors="replace")[-400:].strip().replace("\n", " | ")
            status = "timeout" if time.monotonic() - t0 >= cfg.timeout_s + cfg.startup_allowance_s else "grader-error"
            report = {"status": status, "stopped_at": None, "errors": [],
                      "message": f"the grading process ended without a result (exit {proc.returncode}): {tail}"}
        if out_nb.is_file():
            try:
                executed = nbformat.read(str(out_nb), as_version=4)
            except Exception as exc:  # pragma: no cover - the worker wrote it with nbformat
                report["message"] = f"{report.get('message', '')} (executed notebook unreadable: {exc})"
    except Exception as exc:  # never lose a row because of the grader's own plumbing
        log.exception("grading run failed")
        report = {"status": "grader-error", "stopped_at": None, "errors": [], "message": f"{type(exc).__name__}: {exc}"}
    finally:
        try:
            if (gdir / "kernel.pid").is_file():
                kill_session(int((gdir / "kernel.pid").read_text().strip() or 0))
        except (OSError, ValueError):
            pass
        if proc is not None and proc.poll() is None:
            kill_session(proc.pid)
        shutil.rmtree(sandbox, ignore_errors=True)
        shutil.rmtree(gdir, ignore_errors=True)
    return executed, report, time.monotonic() - t0


# ---------------------------------------------------------------- scoring


def _payloads(cell: Any) -> list[dict[str, Any]]:
    out = []
    for o in cell.get("outputs", []):
        data = o.get("data", {}) if o.get("output_type") in ("display_data", "execute_result") else {}
        if MIME in data:
            value = data[MIME]
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    continue
            if isinstance(value, dict):
                out.append(value)
    return out


def _error(cell: Any) -> str | None:
    for o in cell.get("outputs", []):
        if o.get("output_type") == "error":
            text = f"{o.get('ename', 'Error')}: {o.get('evalue', '')}"
            return re.sub(r"\x1b\[[0-9;]*m", "", text).strip()[:300]
    return None


@dataclass
class _CheckCell:
    kind: str
    results: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    collected: bool = False


@dataclass
class _ExState:
    cells: list[_CheckCell] = field(default_factory=list)  # one per master check cell that was reached
    learner_errors: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    tampered: list[str] = field(default_factory=list)

    @property
    def results(self) -> list[dict[str, Any]]:
        return [r for c in self.cells for r in c.results]


def parse_run(executed: Any | None, report: dict[str, Any], master: Master) -> tuple[dict[str, _ExState], str]:
    """Collect verdicts, errors and restorations per exercise from an executed graded notebook; also the stop reason."""
    states = {ex_id: _ExState() for ex_id in master.exercises}
    stop = ""
    if executed is None:
        return states, report.get("message") or report.get("status", "not run")
    stopped_at = report.get("stopped_at")
    for i, cell in enumerate(executed.cells):
        meta = cell.get("metadata", {}).get("diffcl_grader", {})
        role, ex_id = meta.get("role"), meta.get("exercise")
        if stopped_at is not None and i == stopped_at:
            what = {"learner": ("your exercise cell" if meta.get("what") == "exercise" else "a cell you added")
                               + (f" ({ex_id})" if ex_id else ""),
                    "check": f"the {meta.get('kind', 'check')} of {ex_id}", "master": "a cell of the notebook"}.get(
                        role, "a grader cell")
            stop = {"timeout": "time limit reached", "memory": "memory limit exceeded",
                    "dead": "the kernel died"}.get(report.get("status"), report.get("status", "stopped"))
            stop = f"{stop} while running {what}"
        st = states.get(ex_id) if ex_id else None
        if st is None:
            continue
        err = _error(cell)
        if role == "learner" and err:
            st.learner_errors.append(("your exercise cell" if meta.get("what") == "exercise" else "a cell you added")
                                     + f" raised {err}")
        elif role == "check" and (cell.get("execution_count") is not None or cell.get("outputs")):
            st.cells.append(_CheckCell(meta.get("kind", ""), error=err))
        for payload in _payloads(cell):
            if role == "leave" and payload.get("restored"):
                st.restored += [str(x) for x in payload["restored"]]
            if role == "collect" and st.cells:
                st.cells[-1].results += [r for r in payload.get("results", []) if isinstance(r, dict)]
                st.cells[-1].collected = True
                st.tampered += [str(x) for x in payload.get("tampered", [])]
    if not stop and report.get("status") not in ("complete", None):
        stop = report.get("message") or report.get("status")
    return states, stop


def expected_checks(st: _ExState) -> list[list[dict[str, Any]]]:
    """The checks of an exercise, per check cell, as recorded by a calibration run."""
    return [[{"name": r.get("name"), "points": float(r.get("points", 1.0)), "kind": c.kind} for r in c.results]
            for c in st.cells]


def score_exercise(points: float, st: _ExState, expected: list[list[dict[str, Any]]] | None,
                   stop: str, note: str | None) -> tuple[float, str, int, int]:
    """``(points, feedback, checks passed, checks total)`` for one exercise.

    Verdicts are matched to the expected checks cell by cell, in order; an expected check without a
    verdict failed, with the reason (its check cell raised, or the run stopped before it).
    """
    if not expected:  # no calibration: count what ran
        expected = [[{"name": r.get("name"), "points": float(r.get("points", 1.0)), "kind": c.kind} for r in c.results]
                    for c in st.cells]
    total = sum(e["points"] for cell in expected for e in cell)
    n_all = sum(len(cell) for cell in expected)
    passed_pts, n_passed, parts = 0.0, 0, []
    said_stop = False
    for j, exp_cell in enumerate(expected):
        got = st.cells[j] if j < len(st.cells) else None
        for k, e in enumerate(exp_cell):
            label = ("hidden check " if e.get("kind") == TAG_HIDDEN_CHECK else "") + f"'{e.get('name', '?')}'"
            if got is not None and k < len(got.results):
                r = got.results[k]
                if r.get("passed"):
                    passed_pts += e["points"]
                    n_passed += 1
                else:
                    parts.append(f"{label}: {r.get('message', 'not yet')}")
            elif got is not None and got.error:
                parts.append(f"{label}: could not run ({got.error})" if k == len(got.results)
                             else f"{label}: could not run (same error)")
            elif not said_stop:
                parts.append(f"{label}: not run ({stop or 'the run ended before it'})")
                said_stop = True
            else:
                parts.append(f"{label}: not run")
    pts = round(points * passed_pts / total, 3) if total > 0 else 0.0
    notes = []
    if note and pts < points:
        notes.append(note)
    notes += st.learner_errors[:2]
    if st.tampered:
        notes.append("checks rejected: the checking code was modified while they ran ("
                     + ", ".join(st.tampered[:4]) + ")")
    if st.restored:
        notes.append("restored before checking: " + ", ".join(sorted(set(st.restored))[:6]))
    if n_all == 0:
        parts.append(f"no check ran ({stop or 'the master notebook records no check for this exercise'})")
    head = f"correct ({n_passed}/{n_all} checks)" if not parts else f"{n_passed}/{n_all} checks passed"
    text = "; ".join([head] + notes) + (": " + " | ".join(parts) if parts else "")
    return pts, " ".join(text.split()), n_passed, n_all


def static_flags(sources: list[str]) -> list[str]:
    """What a learner's code touches that is worth a human look (reported, never scored)."""
    return [label for pat, label in SUSPICIOUS if any(re.search(pat, s, flags=re.MULTILINE) for s in sources)]


# ---------------------------------------------------------------- the command


@dataclass
class _Task:
    student: str | None  # None: calibration of the master
    notebook: str
    path: Path | None = None
    sub: Any = None
    status: str = ""  # set when no run is needed (missing, empty, not a notebook)
    message: str = ""
    executed: Any = None
    report: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    notes: dict[str, str] = field(default_factory=dict)
    learner_sources: list[str] = field(default_factory=list)


def scan_submissions(root: Path, names: set[str]) -> tuple[dict[str, dict[str, Path]], list[str]]:
    """``{student: {notebook name: path}}`` and the list of ignored entries (with the reason)."""
    students: dict[str, dict[str, Path]] = {}
    ignored: list[str] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            ignored.append(f"{entry.name}: hidden entry, ignored")
            continue
        if not entry.is_dir():
            ignored.append(f"{entry.name}: not a student folder (expected {root.name}/<student>/<notebook>.ipynb)")
            continue
        files: dict[str, Path] = {}
        for f in sorted(entry.iterdir()):
            rel = f"{entry.name}/{f.name}"
            if f.is_file() and f.name in names:
                files[f.name] = f
            elif f.name.startswith("."):
                ignored.append(f"{rel}: hidden entry, ignored")
            elif f.is_dir():
                ignored.append(f"{rel}/: a folder inside a student folder; notebooks must sit directly in "
                               f"{entry.name}/")
            else:
                close = difflib.get_close_matches(f.name, sorted(names), n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]}? rename it to grade it)" if close else ""
                ignored.append(f"{rel}: not a notebook of the assignment{hint}")
        students[entry.name] = files
    return students, ignored


def grade(submissions: str | os.PathLike, out: str | os.PathLike, cfg: GradeConfig | None = None) -> GradeResult:
    """Grade every ``SUBMISSIONS/<student>/<notebook>.ipynb``; write ``grades.csv``, ``summary.md`` and ``runs/``."""
    import nbformat
    from tqdm.auto import tqdm

    cfg = cfg or GradeConfig()
    t_start = time.monotonic()
    root, out = Path(submissions), Path(out)
    if not root.is_dir():
        raise DiffCLError(f"submissions folder {root} does not exist (expected {root}/<student>/<notebook>.ipynb)")
    masters = {m.name: m for m in load_masters(cfg.masters)}
    if not masters:
        raise DiffCLError(f"no master notebooks (*.ipynb) in {cfg.masters}; pass --masters DIR")
    if cfg.notebooks:
        unknown = [n for n in cfg.notebooks if n not in masters]
        if unknown:
            raise DiffCLError(f"--notebooks: {unknown} are not master notebooks in {cfg.masters} "
                              f"(known: {sorted(masters)})")
    students, ignored = scan_submissions(root, set(masters))
    if cfg.notebooks:
        graded = list(cfg.notebooks)
    else:
        graded = sorted({n for files in students.values() for n in files})
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    jobs = cfg.jobs or cores
    threads = max(1, cores // jobs)
    problems: list[str] = []
    tasks: list[_Task] = [_Task(None, name) for name in graded]
    for student, files in students.items():
        for name in graded:
            task = _Task(student, name, files.get(name))
            if task.path is None:
                task.status, task.message = "missing", f"not submitted: no {name} in {student}/"
            else:
                try:
                    task.sub = read_notebook(task.path)
                except DataFormatError as exc:
                    empty = task.path.stat().st_size == 0 or not task.path.read_bytes().strip()
                    task.status = "empty" if empty else "not-a-notebook"
                    task.message = "the file is empty" if empty else str(exc).split(": ", 1)[-1]
            tasks.append(task)
    to_run = [t for t in tasks if not t.status]
    log.info("grading %d run(s) (%d calibration) with %d job(s)", len(to_run), len(graded), jobs)

    def work(task: _Task) -> _Task:
        try:
            nb, task.notes = build_run(masters[task.notebook], task.sub)
            if task.sub is not None:
                task.learner_sources = [source_of(c) for c in nb.cells
                                        if c.metadata.get("diffcl_grader", {}).get("role") == "learner"]
            task.executed, task.report, task.seconds = run_notebook(nb, cfg, threads)
        except Exception as exc:  # a submission so odd that the run cannot even be built: a row, not a crash
            log.exception("could not grade %s/%s", task.student, task.notebook)
            task.status, task.message = "grader-error", f"could not prepare the run: {type(exc).__name__}: {exc}"
        return task

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(work, t) for t in to_run]
        for fut in tqdm(futures, desc="grading", unit="run", disable=not cfg.progress):
            fut.result()

    # calibration: the master's own solutions fix the expected checks of every exercise
    expected: dict[str, dict[str, list[list[dict[str, Any]]]]] = {}
    calibration: dict[str, str] = {}
    for task in tasks:
        if task.student is not None:
            continue
        master = masters[task.notebook]
        try:
            states, stop = parse_run(task.executed, task.report, master)
        except Exception as exc:  # pragma: no cover - the grader's own notebook is unreadable
            log.exception("calibration of %s failed", task.notebook)
            states, stop = {ex_id: _ExState() for ex_id in master.exercises}, f"{type(exc).__name__}: {exc}"
        expected[task.notebook] = {}
        bad = []
        for ex_id, st in states.items():
            expected[task.notebook][ex_id] = expected_checks(st)
            failing = [str(r.get("name")) for r in st.results if not r.get("passed")]
            errors = [c.error for c in st.cells if c.error] + st.learner_errors
            n_cells = len(master.exercises[ex_id].check_cells)
            if failing or errors or len(st.cells) < n_cells or not st.results:
                bad.append(f"{ex_id} ({'; '.join(failing + errors) or 'not every check cell ran'})")
        n_checks = sum(len(c) for v in expected[task.notebook].values() for c in v)
        if bad or task.report.get("status") != "complete":
            msg = (f"{task.notebook}: the master's own solutions do not pass all checks — rows of these exercises may "
                   f"be wrong: {', '.join(bad) or stop or task.report.get('message')}")
            problems.append(msg)
            calibration[task.notebook] = msg
        else:
            calibration[task.notebook] = (f"{task.notebook}: solutions pass all {n_checks} checks of "
                                          f"{len(master.exercises)} exercises ({task.seconds:.1f} s)")

    rows: list[Row] = []
    run_seconds: list[float] = []
    cpu_seconds: list[float] = []
    runs_dir = out / "runs"
    def rows_of(task: _Task) -> None:
        master = masters[task.notebook]
        if task.seconds is not None:
            run_seconds.append(task.seconds)
        if task.report.get("cpu_seconds"):
            cpu_seconds.append(float(task.report["cpu_seconds"]))
        if task.executed is not None:
            dest = runs_dir / task.student / task.notebook
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(task.executed, str(dest))
            except Exception as exc:  # the executed copy is a convenience: its loss costs no row
                log.warning("could not save %s: %s", dest, exc)
        if task.status:
            for ex in master.exercises.values():
                rows.append(Row(task.student, task.notebook, ex.id, 0.0, ex.points,
                                f"not graded: {task.message}", 0,
                                sum(len(c) for c in expected.get(task.notebook, {}).get(ex.id, [])),
                                task.status))
            if task.status != "missing":
                problems.append(f"{task.student}/{task.notebook}: {task.status} — {task.message}")
            return
        states, stop = parse_run(task.executed, task.report, master)
        status = task.report.get("status", "grader-error")
        flags = static_flags(task.learner_sources)
        restored = sorted({x for st in states.values() for x in st.restored})
        tampered = sorted({x for st in states.values() for x in st.tampered})
        flag_text = "; ".join(filter(None, [
            ("restored: " + ", ".join(restored)) if restored else "",
            ("rejected: " + ", ".join(tampered)) if tampered else "",
            ("mentions: " + ", ".join(flags)) if flags else ""]))
        for ex in master.exercises.values():
            pts, text, n_ok, n_all = score_exercise(ex.points, states[ex.id],
                                                    expected.get(task.notebook, {}).get(ex.id), stop,
                                                    task.notes.get(ex.id))
            rows.append(Row(task.student, task.notebook, ex.id, pts, ex.points, text, n_ok, n_all, status, flag_text,
                            task.seconds))
        if status != "complete":
            problems.append(f"{task.student}/{task.notebook}: {status} — {stop or task.report.get('message', '')}")
        if flag_text:
            problems.append(f"{task.student}/{task.notebook}: review suggested — {flag_text}")

    for task in tasks:
        if task.student is None:
            continue
        n_before = len(rows)
        try:
            rows_of(task)
        except Exception as exc:  # never lose a row: whatever went wrong, every exercise gets one
            log.exception("could not score %s/%s", task.student, task.notebook)
            del rows[n_before:]
            for ex in masters[task.notebook].exercises.values():
                rows.append(Row(task.student, task.notebook, ex.id, 0.0, ex.points,
                                f"not graded: the grader failed on this submission ({type(exc).__name__}: {exc})",
                                status="grader-error"))
            problems.append(f"{task.student}/{task.notebook}: grader-error — {type(exc).__name__}: {exc}")
    wall = time.monotonic() - t_start
    result = GradeResult(out, rows, problems, calibration, wall, run_seconds, jobs, cpu_seconds)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "grades.csv", rows)
    (out / "summary.md").write_text(_summary(result, root, cfg, masters, graded, students, ignored), encoding="utf-8")
    return result


def _write_csv(path: Path, rows: list[Row]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow(r.as_csv())
    os.replace(tmp, path)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _summary(result: GradeResult, root: Path, cfg: GradeConfig, masters: dict[str, Master], graded: list[str],
             students: dict[str, dict[str, Path]], ignored: list[str]) -> str:
    rows = result.rows
    secs = result.run_seconds
    lines = [f"# Grades: {root.name}", "",
             f"{datetime.now():%Y-%m-%d %H:%M} — {len(students)} student folder(s), notebooks: "
             f"{', '.join(graded) or 'none'}; masters from `{cfg.masters}`; "
             f"{'fast' if cfg.fast else 'full'} mode, time limit {cfg.timeout_s:g} s, memory limit {cfg.memory_mb} MB "
             f"per submission, {result.jobs} job(s).", "",
             f"{len(secs)} submission run(s), plus {len(graded)} calibration run(s) of the masters, took "
             f"{result.wall_s:.1f} s in all"
             + (f"; per submission median {statistics.median(secs):.1f} s, max {max(secs):.1f} s." if secs else "."),
             ""]
    if result.cpu_seconds:
        est = result.estimate_s(200, 2) or 0.0
        lines += [f"CPU time per submission (worker and kernel): median {statistics.median(result.cpu_seconds):.1f} s, "
                  f"so 200 such submissions need about {est / 60:.0f} min on 2 free cores.", ""]
    if graded and students:
        maxes = {n: masters[n].max_points for n in graded}
        lines += ["## Scores", "", "| student | " + " | ".join(f"{n} (/{_fmt(maxes[n])})" for n in graded)
                  + f" | total (/{_fmt(sum(maxes.values()))}) |", "|---" * (len(graded) + 2) + "|"]
        for student in students:
            per = [sum(r.points for r in rows if r.student == student and r.notebook == n) for n in graded]
            cells = " | ".join(_fmt(round(p, 2)) for p in per)
            lines.append(f"| {_md(student)} | {cells} | {_fmt(round(sum(per), 2))} |")
        lines += ["", "## Exercises", "", "| notebook | exercise | max | mean | full marks |", "|---|---|---|---|---|"]
        for n in graded:
            for ex in masters[n].exercises.values():
                ex_rows = [r for r in rows if r.notebook == n and r.exercise == ex.id]
                if ex_rows:
                    mean = statistics.mean(r.points for r in ex_rows)
                    full = sum(1 for r in ex_rows if r.points >= ex.points)
                    lines.append(f"| {n} | {ex.id} | {_fmt(ex.points)} | {mean:.2f} | {full}/{len(ex_rows)} |")
    lines += ["", "## Needs attention", ""]
    missing = [f"{r.student}/{r.notebook}" for r in rows if r.status == "missing"]
    attention = list(dict.fromkeys(result.problems))
    if missing:
        attention.append("not submitted: " + ", ".join(sorted(set(missing))))
    attention += [f"ignored: {x}" for x in ignored]
    lines += [f"- {_md(a)}" for a in attention] or ["- nothing"]
    lines += ["", "## Masters (calibration with their own solutions)", ""]
    lines += [f"- {_md(v)}" for v in result.calibration.values()] or ["- none"]
    lines += ["", "Columns of grades.csv: " + ", ".join(CSV_COLUMNS) + ". Executed grading notebooks: `runs/`.", ""]
    return "\n".join(lines)
