"""Grade a folder of submitted notebooks: ``python -m diffcl_lite classroom grade SUBMISSIONS_DIR --out DIR``.

Layout: ``SUBMISSIONS_DIR/<student>/<notebook file name as handed out>.ipynb``; anything else is
reported in ``summary.md``, never fatal. Output (``DIR``): ``results/<student>/<notebook>.json``
(one file per graded submission, written atomically as soon as it is graded), and built from them
``grades.csv`` (one row per student, notebook and exercise of the master), ``grades_wide.csv`` (one
row per student, one column per exercise, a total), ``summary.md``, ``feedback/<student>/<notebook>.md``,
``answers/<notebook>.md`` (the written answers, for grading by hand) and ``runs/<student>/<notebook>``
(the executed grading notebooks). ``--resume`` keeps the results of an interrupted run and grades
the rest.

How one submission is graded:

1. **Calibration** (once per master, first and alone): a *judge* kernel runs the master with its
   own solutions (:func:`build_run` with ``sub=None``) and keeps its state; it fixes the list of
   checks of every exercise. A master whose solutions do not pass, or whose checks the grader
   cannot reproduce, stops the run with an error naming the exercise.
2. **The submission's run** (``--jobs`` at a time): a notebook built from the MASTER — its code
   cells up to the last check cell, without ``solution`` and ``no-grade`` cells — in which each
   ``exercise`` cell is the submission's cell of that exercise id and the code cells the learner
   added are inserted where they were; check cells come from the master with their expected values
   removed (:func:`diffcl_lite.course.static.strip_expected`). It runs in a sandbox
   (:mod:`diffcl_lite.course.sandbox`: namespaces, no network, bounded memory, processes, disk,
   time and output) and only *records* what the exercise functions return
   (:mod:`diffcl_lite.course.runtime`), as plain data.
3. **The verdict**: the judge replays the master's check cells with those values
   (:func:`diffcl_lite.course.runtime.judge`). Nothing the submission's code did in its own
   process takes part in a verdict. An exercise whose function uses the package's own implementation
   of the exercise, or reaches outside its inputs (frames, the namespace, files, processes, patching
   modules), scores 0 and is flagged for a human (:func:`diffcl_lite.course.static.exercise_findings`).

Points of an exercise = its ``points`` x (points of the checks passed / points of all its checks).
"""
from __future__ import annotations

import csv
import difflib
import hashlib
import json
import logging
import os
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from . import static as static
from .convention import (GOLDEN_MARKER, STUDENT_NOTE_ID, TAG_EXERCISE, TAG_HIDDEN_CHECK, TAG_NO_GRADE,
                         TAG_PARAMETERS, TAG_SELF_CHECK, TAG_SOLUTION, cell_exercise, cell_tags, defined_functions,
                         source_of)
from .masters import Master, load_masters, read_notebook
from .worker import INNER_IN, INNER_OUT, kernel_env, kill_session, sandbox_module, sandbox_spec
from .runtime import MIME
from .values import ValueFileError, read_regular
from ..errors import DataFormatError, DiffCLError

log = logging.getLogger(__name__)

#: the diffcl_lite package folder (copied for --unsafe runs); the course tools are in its course/
PACKAGE_DIR = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().with_name("worker.py")
GRADER_VERSION = "2"
CSV_COLUMNS = ["student", "notebook", "exercise", "points", "max_points", "feedback", "checks_passed",
               "checks_total", "status", "flags", "seconds"]
RT = "import diffcl_lite.course.runtime as __dg__\n"
#: a submission's records handed to the judge: file names and total size
RECORD_NAME = re.compile(r"^(cell-\d+|final)\.(json|npz)$")
MAX_RECORDS_BYTES = 96 * 2**20
MAX_ANSWER_CHARS = 20_000


class CalibrationError(DiffCLError):
    """A master notebook whose own solutions the grader cannot reproduce (nothing of it is graded)."""


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
    resume: bool = False
    #: run without the namespace sandbox (a machine without user namespaces)
    unsafe: bool = False
    #: private /tmp (working directory included) of each submission, MB
    disk_mb: int = 512
    #: processes and threads one submission may have at once
    max_processes: int = 256
    #: a data folder the notebooks may read (read-only, as $DIFFCL_DATA), e.g. for --full
    data_dir: Path | None = None


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
    details: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_csv(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("details", "notes")}
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
    isolated: bool = True
    resumed: int = 0

    def estimate_s(self, n: int = 200, cores: int = 2) -> float | None:
        """Estimated wall time of ``n`` submissions like these on ``cores`` free cores (from the median CPU time)."""
        return n * statistics.median(self.cpu_seconds) / cores if self.cpu_seconds else None

    def headline(self) -> str:
        students = len({r.student for r in self.rows})
        med = f", median {statistics.median(self.run_seconds):.1f} s per submission" if self.run_seconds else ""
        iso = "isolated" if self.isolated else "NOT isolated (--unsafe)"
        return (f"graded {len(self.run_seconds)} submission(s) of {students} student(s) in {self.wall_s:.1f} s "
                f"({self.jobs} jobs, {iso}{med}"
                + (f"; {self.resumed} result(s) kept from the previous run" if self.resumed else "") + "); wrote "
                f"{self.out / 'grades.csv'} ({len(self.rows)} rows), grades_wide.csv, feedback/, answers/ and "
                f"{self.out / 'summary.md'}"
                + (f"; {len(self.problems)} note(s) in the summary" if self.problems else ""))


# ---------------------------------------------------------------- isolation


_probe_lock = threading.Lock()
_probe_cache: dict[str, str | None] = {}


def isolation_problem() -> str | None:
    """None when this machine can sandbox a submission, else why not (one line); probed once per process."""
    with _probe_lock:
        if "v" not in _probe_cache:
            _probe_cache["v"] = sandbox_module().probe()
        return _probe_cache["v"]


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


def exercise_functions(master: Master) -> list[str]:
    """Every function an exercise of ``master`` asks for."""
    return sorted(set().union(*[ex.functions for ex in master.exercises.values()]) if master.exercises else set())


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
            if src.startswith(GOLDEN_MARKER):  # as in the student copy, without the marker line
                by_src[src[len(GOLDEN_MARKER):].strip()] = i
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
        if idx is not None and idx in stub_at and stub_at[idx] not in found and is_code:
            found[stub_at[idx]] = src  # same cell id as the stub: its tags or metadata were lost
            anchor = idx
            continue
        if idx is not None:
            anchor = idx
            continue
        if not is_code or not src.strip() or any(t in tags for t in skip_tags):
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


def _removable(master: Master, last: int) -> set[str]:
    """Names that only feed expected values (their assignments are blanked in a submission's run)."""
    checks, others = [], []
    check_at = {i for ex in master.exercises.values() for i in ex.check_cells}
    for i, cell in enumerate(master.nb.cells):
        if cell.cell_type != "code" or i > last:
            continue
        (checks if i in check_at else others).append(source_of(cell))
    return static.expected_only_names(checks, others)


def build_run(master: Master, sub: Any | None, *, out_dir: str = INNER_OUT,
              facts_path: str | None = None) -> tuple[Any, dict[str, str]]:
    """The notebook the grader executes for one submission (``sub=None``: the judge's run of the master's solutions).

    Returns ``(notebook, notes by exercise)``. Cells carry ``metadata.diffcl_grader.role``:
    ``setup``, ``master``, ``enter``, ``learner``, ``leave``, ``check``, ``collect``, ``final``. The
    notebook's ``metadata.diffcl_grader.facts`` describes its cells for the judge (what each reads
    and writes). In a submission's run the check cells have their expected values removed.
    """
    import nbformat

    cells = master.nb.cells
    calibrate = sub is None
    if calibrate:
        found = {ex.id: source_of(cells[ex.solution]) for ex in master.exercises.values() if ex.solution is not None}
        added: dict[int, list[str]] = {}
        notes: dict[str, str] = {}
    else:
        found, added, notes = match_submission(master, sub)
    functions = exercise_functions(master)
    fset = set(functions)
    allowed = _allowed_names(master)
    check_at = {i: (ex.id, TAG_SELF_CHECK if i in ex.self_checks else TAG_HIDDEN_CHECK)
                for ex in master.exercises.values() for i in ex.check_cells}
    stub_at = {ex.stub: ex.id for ex in master.exercises.values()}
    last = max(check_at) if check_at else -1
    removable = set() if calibrate else _removable(master, last)
    order = [ex.stub for ex in master.exercises.values()]
    mode = "calibrate" if calibrate else "student"
    out = [_injected(RT + f"__dg__.install({mode!r}, {functions!r}, {out_dir!r}, {facts_path!r})", "setup")]
    facts: list[dict[str, Any]] = []

    def next_exercise(i: int) -> str | None:
        later = [stub_at[s] for s in sorted(order) if s >= i]
        return later[0] if later else None

    def learner(src: str, exercise: str | None, what: str) -> None:
        out.append(_injected(RT + "__dg__.enter()", "enter", exercise=exercise))
        out.append(_injected(src, "learner", exercise=exercise, what=what))
        out.append(_injected(RT + f"__dg__.leave({allowed!r})", "leave", exercise=exercise))
        facts.append({"role": "learner", "stores": sorted(static.stores(src))})

    for src in added.get(-1, []):
        learner(src, next_exercise(0), "added")
    for i, cell in enumerate(cells):
        if i > last:
            break
        tags = cell_tags(cell)
        if cell.cell_type == "code" and TAG_SOLUTION not in tags and TAG_NO_GRADE not in tags:
            src = source_of(cell)
            if i in stub_at:
                if stub_at[i] in found:
                    learner(found[stub_at[i]], stub_at[i], "exercise")
            elif i in check_at:
                ex_id, kind = check_at[i]
                run_src = src if calibrate else static.strip_expected(src, removable)
                out.append(_injected(RT + f"__dg__.begin({ex_id!r}, {kind!r}, {i})\n" + run_src, "check",
                                     exercise=ex_id, kind=kind, index=i))
                out.append(_injected(RT + f"__dg__.end({ex_id!r}, {kind!r}, {i})", "collect", exercise=ex_id,
                                     kind=kind, index=i))
                facts.append({"role": "check", "cell": i, "exercise": ex_id, "kind": kind, "source": src,
                              "reads": sorted(static.loads(src)), "stores": sorted(static.stores(src)),
                              "direct": static.is_direct(src, fset)})
            else:
                reads = static.loads(src)
                if not calibrate and removable & static.stores(src):
                    src = static.strip_expected(src, removable)
                out.append(_injected(src, "master", index=i))
                facts.append({"role": "master", "reads": sorted(reads), "stores": sorted(static.stores(src)),
                              "mentions": bool(reads & fset)})
        for src in added.get(i, []):
            learner(src, next_exercise(i) or (stub_at.get(i)), "added")
    out.append(_injected(RT + "__dg__.final()", "final"))
    nb = nbformat.v4.new_notebook(cells=out, metadata={"diffcl_grader": {"master": master.name, "mode": mode,
                                                                         "facts": facts}})
    return nb, notes


# ---------------------------------------------------------------- running one kernel (worker process)


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


def _kernel_setup(cfg: GradeConfig, gdir: Path, threads: int, *, memory_mb: int,
                  extra_binds: list[list[str]] | None = None,
                  records_mb: int | None = 128) -> tuple[dict[str, Any] | None, dict[str, str], str]:
    """``(sandbox spec or None, kernel environment, folder of the records as the kernel sees it)``."""
    binds = list(extra_binds or [])
    extra_env = {}
    if cfg.data_dir is not None:
        binds.append([str(Path(cfg.data_dir).resolve()), "/grader/data", "ro"])
        extra_env["DIFFCL_DATA"] = "/grader/data"
    if not cfg.unsafe:
        env = kernel_env(fast=cfg.fast, threads=threads, extra=extra_env)
        spec = sandbox_spec(gdir, memory_mb=memory_mb, nproc=cfg.max_processes, disk_mb=cfg.disk_mb, env=env,
                            binds=binds, records_mb=records_mb)
        return spec, env, INNER_OUT
    # --unsafe: no sandbox; the kernel imports a private copy of the package from gdir/pkg
    work, pkg, outd = gdir / "work", gdir / "pkg", gdir / "out"
    for d in (work, outd):
        d.mkdir(exist_ok=True)
    shutil.copytree(PACKAGE_DIR, pkg / "diffcl_lite", ignore=shutil.ignore_patterns("*.tmp", "__pycache__"))
    if cfg.data_dir is not None:
        extra_env["DIFFCL_DATA"] = str(Path(cfg.data_dir).resolve())
    env = kernel_env(fast=cfg.fast, threads=threads, extra={"PYTHONPATH": str(pkg), **extra_env}, sandboxed=False,
                     work=str(work))
    for d in ("home", "mpl", "ipython", "jupyter", "cache"):
        (gdir / d).mkdir(exist_ok=True)
    return None, env, str(outd)


def _task(gdir: Path, nb_path: Path, cfg: GradeConfig, spec: dict[str, Any] | None, env: dict[str, str],
          memory_mb: int, **extra: Any) -> Path:
    task = {"notebook": str(nb_path), "gdir": str(gdir), "timeout_s": cfg.timeout_s, "memory_mb": memory_mb,
            "out_notebook": str(gdir / "executed.ipynb"), "out_report": str(gdir / "report.json"),
            "pid_file": str(gdir / "kernel.pid"), "sandbox": spec, "env": env, "cwd": str(gdir / "work"), **extra}
    path = gdir / "task.json"
    path.write_text(json.dumps(task))
    return path


def _worker_env() -> dict[str, str]:
    env = os.environ.copy()
    env.pop("PYTHONPATH", None)
    return env


def _short_tmpdir(prefix: str) -> Path:
    """A temporary folder with a short path (ZeroMQ's socket files must fit in 107 bytes)."""
    base = tempfile.gettempdir()
    if len(base) > 40:
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def _read_report(gdir: Path, proc: subprocess.Popen, cfg: GradeConfig, t0: float) -> tuple[Any, dict[str, Any]]:
    import nbformat

    out_report, out_nb = gdir / "report.json", gdir / "executed.ipynb"
    executed = None
    if out_report.is_file():
        report = json.loads(out_report.read_text())
    else:
        log_path = gdir / "worker.log"
        tail = log_path.read_text(errors="replace")[-400:].strip().replace("\n", " | ") if log_path.is_file() else ""
        status = "timeout" if time.monotonic() - t0 >= cfg.timeout_s + cfg.startup_allowance_s else "grader-error"
        report = {"status": status, "stopped_at": None, "errors": [],
                  "message": f"the grading process ended without a result (exit {proc.returncode}): {tail}"}
    if out_nb.is_file():
        try:
            executed = nbformat.read(str(out_nb), as_version=4)
        except Exception as exc:  # pragma: no cover - the worker wrote it with nbformat
            report["message"] = f"{report.get('message', '')} (executed notebook unreadable: {exc})"
    return executed, report


def run_submission(nb: Any, cfg: GradeConfig, threads: int, gdir: Path) -> tuple[Any | None, dict[str, Any], float]:
    """Execute a submission's graded notebook in a sandboxed kernel; records land in ``gdir/out``. Never raises."""
    import nbformat

    t0 = time.monotonic()
    proc = None
    executed = None
    try:
        spec, env, inner_out = _kernel_setup(cfg, gdir, threads, memory_mb=cfg.memory_mb)
        nb_path = gdir / "run.ipynb"
        nbformat.write(nb, str(nb_path))
        task = _task(gdir, nb_path, cfg, spec, env, cfg.memory_mb, die_with_parent=True)
        with open(gdir / "worker.log", "wb") as logf:
            proc = subprocess.Popen([sys.executable, str(WORKER), str(task)], cwd=str(gdir), env=_worker_env(),
                                    stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            cpu_s = _wait_with_rusage(proc, cfg.timeout_s + cfg.startup_allowance_s)
        executed, report = _read_report(gdir, proc, cfg, t0)
        if report.get("status") == "kernel-start" and (gdir / "worker.log").is_file():
            tail = (gdir / "worker.log").read_text(errors="replace").strip().splitlines()[-3:]
            report["message"] = f"{report.get('message', '')} | {' | '.join(tail)}"[:600]
        # the worker's own CPU plus its kernel's whole process tree (read from /proc before the kill)
        report["cpu_seconds"] = round((report.get("worker_cpu_seconds") or cpu_s or 0.0)
                                      + (report.get("kernel_cpu_seconds") or 0.0), 2)
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
    return executed, report, time.monotonic() - t0


def copy_records(src: Path, dst: Path) -> list[str]:
    """Copy a submission's records (regular files with the expected names only, within the size limit)."""
    dst.mkdir(parents=True, exist_ok=True)
    skipped, total = [], 0
    try:
        entries = sorted(os.scandir(src), key=lambda e: e.name)
    except OSError:
        return ["no records"]
    for entry in entries:
        if not RECORD_NAME.match(entry.name):
            skipped.append(entry.name[:60])
            continue
        try:
            data = read_regular(entry.path, MAX_RECORDS_BYTES - total)
        except ValueFileError as exc:
            skipped.append(str(exc)[:120])
            continue
        total += len(data)
        (dst / entry.name).write_bytes(data)
        os.chmod(dst / entry.name, 0o644)
    os.chmod(dst, 0o755)
    return skipped


# ---------------------------------------------------------------- the judge (one per master)


class Judge:
    """The clean kernel of one master: calibrates, then judges the submissions' records (thread-safe)."""

    def __init__(self, master: Master, cfg: GradeConfig, threads: int):
        self.master, self.cfg, self.threads = master, cfg, threads
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.gdir: Path | None = None
        self.n = 0
        self.calibration: dict[str, Any] = {}
        self.report: dict[str, Any] = {}
        self.executed: Any = None
        self.seconds = 0.0
        self.restarts = 0

    @property
    def memory_mb(self) -> int:
        return max(2 * self.cfg.memory_mb, 2048)

    def start(self) -> None:
        """Run the master with its solutions and keep the kernel; raise :class:`CalibrationError` if it fails."""
        import nbformat

        t0 = time.monotonic()
        self.gdir = gdir = _short_tmpdir("dj-")
        (gdir / "in").mkdir(mode=0o755)
        os.chmod(gdir / "in", 0o755)  # the judge's user reads it
        spec, env, inner_out = _kernel_setup(self.cfg, gdir, self.threads, memory_mb=self.memory_mb,
                                             extra_binds=[[str(gdir / "in"), INNER_IN, "ro"]], records_mb=None)
        self.inner_in = INNER_IN if spec else str(gdir / "in")
        self.inner_out = inner_out
        nb, _ = build_run(self.master, None, out_dir=inner_out, facts_path=f"{self.inner_in}/facts.json")
        (gdir / "in" / "facts.json").write_text(json.dumps(nb.metadata["diffcl_grader"]["facts"]))
        os.chmod(gdir / "in" / "facts.json", 0o644)
        nb_path = gdir / "run.ipynb"
        nbformat.write(nb, str(nb_path))
        calib_file = f"{inner_out}/calibration.json"
        task = _task(gdir, nb_path, self.cfg, spec, env, self.memory_mb,
                     judge={"ready": f"__dg__.self_replay({calib_file!r})", "timeout_s": self.cfg.timeout_s})
        self.log = open(gdir / "worker.log", "wb")
        self.proc = subprocess.Popen([sys.executable, str(WORKER), str(task)], cwd=str(gdir), env=_worker_env(),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     start_new_session=True, text=True, bufsize=1)
        line = self._readline(2 * self.cfg.timeout_s + self.cfg.startup_allowance_s)
        self.executed, self.report = _read_report(gdir, self.proc, self.cfg, t0)
        self.seconds = time.monotonic() - t0
        problems = self._problems(line)
        if problems:
            self.close()
            raise CalibrationError(f"{self.master.path}: the master's own solutions do not pass its checks, so it "
                                   f"cannot be graded — {'; '.join(problems)}. Fix the master notebook (run it "
                                   f"top to bottom with its solutions to see the error); nothing of "
                                   f"{self.master.name} was graded.")

    def _readline(self, timeout_s: float) -> str | None:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], min(1.0, max(0.0, deadline - time.monotonic())))
            if ready:
                line = self.proc.stdout.readline()
                return line if line else None
            if self.proc.poll() is not None:
                return None
        return None

    def _problems(self, ready_line: str | None) -> list[str]:
        rep = self.report
        if ready_line is None or not ready_line.startswith("READY"):
            return [f"the judge did not start ({rep.get('status')}: {rep.get('message', '')})"]
        if rep.get("status") != "complete":
            stop = rep.get("message", "")
            return [f"the run stopped ({rep.get('status')}: {stop})"]
        if rep.get("judge_error"):
            return [f"the grader could not replay its checks ({rep['judge_error']})"]
        try:
            path = self.gdir / "out" / "calibration.json"
            self.calibration = json.loads(read_regular(str(path), 32 * 2**20))
        except (OSError, ValueError) as exc:
            return [f"no calibration report ({exc})"]
        problems = []
        errors = {}
        if self.executed is not None:
            for c in self.executed.cells:
                meta = c.get("metadata", {}).get("diffcl_grader", {})
                err = _error(c)
                if err and meta.get("role") in ("check", "learner", "master", "setup"):
                    where = {"check": f"a check cell of {meta.get('exercise')}",
                             "learner": f"the solution of {meta.get('exercise')}",
                             "master": f"cell {meta.get('index')}", "setup": "the grader's first cell"}[meta["role"]]
                    errors.setdefault(where, err)
        problems += [f"{where} raised {err}" for where, err in errors.items()]
        cells = self.calibration.get("cells", {})
        for ex in self.master.exercises.values():
            for i in ex.check_cells:
                c = cells.get(str(i))
                if c is None:
                    problems.append(f"{ex.id}: check cell {i} did not run")
                    continue
                bad = [v["name"] for v in c.get("verdicts", []) if not v.get("passed")]
                if bad:
                    problems.append(f"{ex.id}: check(s) {bad} fail with the solution")
                judged = c.get("judged", [])
                wrong = [v["name"] + ": " + v.get("message", "")[:120] for v in judged if not v.get("passed")]
                if c.get("judged_error") or len(judged) != len(c.get("verdicts", [])) or wrong:
                    problems.append(f"{ex.id}: the grader cannot reproduce check cell {i} "
                                    f"({c.get('judged_error') or c.get('why') or '; '.join(wrong) or 'verdicts differ'})")
            if not any(cells.get(str(i), {}).get("verdicts") for i in ex.check_cells):
                problems.append(f"{ex.id}: no check ran")
        return problems

    def expected(self) -> dict[str, list[list[dict[str, Any]]]]:
        """The checks of every exercise, per check cell: ``[[{name, points, kind}, ...], ...]``."""
        cells = self.calibration.get("cells", {})
        out = {}
        for ex in self.master.exercises.values():
            out[ex.id] = [[{"name": v["name"], "points": float(v.get("points", 1.0)), "kind": cells[str(i)]["kind"]}
                           for v in cells[str(i)].get("verdicts", [])] for i in ex.check_cells if str(i) in cells]
        return out

    def summary(self) -> dict[str, Any]:
        cells = self.calibration.get("cells", {})
        n_checks = sum(len(c.get("verdicts", [])) for c in cells.values())
        weak = sorted({c["exercise"] for c in cells.values() if not c.get("replayable") and not c.get("direct")})
        values = sorted({c["exercise"] for c in cells.values() if not c.get("replayable")})
        text = (f"{self.master.name}: solutions pass all {n_checks} checks of {len(self.master.exercises)} "
                f"exercises ({self.seconds:.1f} s)")
        if values:
            text += (f"; check cells judged on recorded values instead of a replay: {', '.join(values)}"
                     + (f" (computed in the learner's process, counted only with the exercise's other checks: "
                        f"{', '.join(weak)})" if weak else ""))
        return {"text": text, "expected": self.expected(), "master_sha256": _sha256(self.master.path)}

    def judge(self, records: Path) -> dict[str, Any]:
        """The verdicts for one submission's records (restarts the judge once if it died)."""
        with self.lock:
            for attempt in range(2):
                if self.proc is None or self.proc.poll() is not None:
                    if attempt:
                        break
                    self.restarts += 1
                    log.warning("the judge of %s stopped; starting it again", self.master.name)
                    self.close()
                    self.start()
                self.n += 1
                req = self.gdir / "in" / f"req-{self.n}"
                skipped = copy_records(records, req)
                inner_req = f"{self.inner_in}/req-{self.n}"
                verdict_file = f"{self.inner_out}/verdict-{self.n}.json"
                code = f"__dg__.judge({inner_req!r}, {verdict_file!r})"
                try:
                    self.proc.stdin.write(json.dumps({"code": code, "timeout_s": max(60.0, self.cfg.timeout_s)}) + "\n")
                    self.proc.stdin.flush()
                except OSError:
                    continue
                line = self._readline(max(60.0, self.cfg.timeout_s) + 30)
                shutil.rmtree(req, ignore_errors=True)
                if line is None:
                    kill_session(self.proc.pid)
                    continue
                answer = json.loads(line)
                if answer.get("error"):
                    return {"error": f"the judge failed on these records ({answer['error']})", "skipped": skipped}
                host = self.gdir / "out" / f"verdict-{self.n}.json"
                try:
                    verdict = json.loads(read_regular(str(host), 32 * 2**20))
                finally:
                    try:
                        host.unlink()
                    except OSError:
                        pass
                verdict["skipped"] = skipped
                return verdict
            return {"error": "the judge is not running"}

    def close(self) -> None:
        if self.proc is not None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                pass
            kill_session(self.proc.pid)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
            self.proc = None
        if getattr(self, "log", None):
            self.log.close()
            self.log = None
        if self.gdir is not None:
            shutil.rmtree(self.gdir, ignore_errors=True)
            self.gdir = None


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
    weak: bool = False


@dataclass
class _ExState:
    cells: list[_CheckCell] = field(default_factory=list)  # one per master check cell that was judged
    learner_errors: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    check_errors: dict[int, str] = field(default_factory=dict)  # what a check cell raised in the learner's run

    @property
    def results(self) -> list[dict[str, Any]]:
        return [r for c in self.cells for r in c.results]


def parse_run(executed: Any | None, report: dict[str, Any], master: Master) -> tuple[dict[str, _ExState], str]:
    """Errors of the learner's cells and what the guards restored, per exercise; also the stop reason."""
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
        if role == "check" and err:
            st.check_errors[int(meta.get("index", -1))] = err
        if role == "learner" and err:
            st.learner_errors.append(("your exercise cell" if meta.get("what") == "exercise" else "a cell you added")
                                     + f" raised {err}")
        for payload in _payloads(cell):
            if role == "leave" and payload.get("restored"):
                st.restored += [str(x)[:80] for x in payload["restored"]][:20]
    if not stop and report.get("status") not in ("complete", None):
        stop = report.get("message") or report.get("status")
    return states, stop


def apply_verdicts(states: dict[str, _ExState], master: Master, verdict: dict[str, Any]) -> None:
    """Put the judge's verdicts into each exercise's state, check cell by check cell (master order).

    A check cell the run never reached ends the list (its checks are "not run", with the stop reason);
    one without usable records before a cell that has them "could not run".
    """
    cells = verdict.get("cells", {})
    problems = verdict.get("problems", {})
    for ex in master.exercises.values():
        st = states[ex.id]
        info = [(i, TAG_SELF_CHECK if i in ex.self_checks else TAG_HIDDEN_CHECK, cells.get(str(i)))
                for i in ex.check_cells]
        ran = [k for k, (_, _, r) in enumerate(info) if r and r.get("ran")]
        last_ran = max(ran) if ran else -1
        for k, (i, kind, r) in enumerate(info):
            if r and r.get("ran"):
                results = [x for x in r.get("verdicts", []) if isinstance(x, dict)]
                error = r.get("error")
                if error and error.startswith("NotRecorded") and i in st.check_errors:
                    error = st.check_errors[i]  # the function was never called there: say why
                st.cells.append(_CheckCell(kind, results=results, error=error, weak=bool(r.get("weak"))))
            elif k < last_ran or problems.get(str(i)):
                st.cells.append(_CheckCell(kind, error=problems.get(str(i))
                                           or "no values were recorded for this check cell"))
            else:
                break


def expected_checks(st: _ExState) -> list[list[dict[str, Any]]]:
    """The checks of an exercise, per check cell, as recorded by a calibration run."""
    return [[{"name": r.get("name"), "points": float(r.get("points", 1.0)), "kind": c.kind} for r in c.results]
            for c in st.cells]


def score_exercise(points: float, st: _ExState, expected: list[list[dict[str, Any]]] | None,
                   stop: str, note: str | None) -> tuple[float, str, int, int, list[dict[str, Any]], list[str]]:
    """``(points, feedback, checks passed, checks total, details, notes)`` for one exercise.

    Verdicts are matched to the expected checks cell by cell, in order; an expected check without a
    verdict failed, with the reason (its check cell raised, or the run stopped before it). A verdict
    on a value computed in the learner's process (``weak``) counts only when every other check of the
    exercise passed. An exercise with ``findings`` scores 0.
    """
    if not expected:  # no calibration: count what ran
        expected = expected_checks(st)
    total = sum(e["points"] for cell in expected for e in cell)
    n_all = sum(len(cell) for cell in expected)
    strong = [r for c in st.cells if not c.weak for r in c.results]
    strong_ok = bool(strong) and all(r.get("passed") for r in strong) and not any(c.error for c in st.cells)
    passed_pts, n_passed, parts, details = 0.0, 0, [], []
    said_stop = False
    for j, exp_cell in enumerate(expected):
        got = st.cells[j] if j < len(st.cells) else None
        for k, e in enumerate(exp_cell):
            label = ("hidden check " if e.get("kind") == TAG_HIDDEN_CHECK else "") + f"'{e.get('name', '?')}'"
            ok, msg = False, ""
            if got is not None and k < len(got.results):
                r = got.results[k]
                if r.get("passed") and got.weak and not strong_ok:
                    msg = ("not counted: this value is computed in your notebook's process, so it counts only "
                           "when the exercise's other checks pass")
                elif r.get("passed"):
                    ok, msg = True, str(r.get("message", ""))
                else:
                    msg = str(r.get("message", "not yet"))
            elif got is not None and got.error:
                msg = f"could not run ({got.error})" if k == len(got.results) else "could not run (same error)"
            elif not said_stop:
                msg = f"not run ({stop or 'the run ended before it'})"
                said_stop = True
            else:
                msg = "not run"
            msg = " ".join(msg.split())[:600]
            details.append({"check": label, "passed": ok, "points": e["points"], "message": msg})
            if ok:
                passed_pts += e["points"]
                n_passed += 1
            else:
                parts.append(f"{label}: {msg}")
    pts = round(points * passed_pts / total, 3) if total > 0 else 0.0
    notes = []
    if st.findings:
        notes.append("0 points, for a person to review: the exercise's function " + "; ".join(st.findings))
        pts = 0.0
    if note and pts < points:
        notes.append(note)
    notes += st.learner_errors[:2]
    if st.restored:
        notes.append("restored before checking: " + ", ".join(sorted(set(st.restored))[:6]))
    if n_all == 0:
        parts.append(f"no check ran ({stop or 'the master notebook records no check for this exercise'})")
    head = (f"correct ({n_passed}/{n_all} checks)" if not parts and not st.findings
            else f"{n_passed}/{n_all} checks passed")
    text = "; ".join([head] + notes) + (": " + " | ".join(parts) if parts else "")
    return pts, " ".join(text.split()), n_passed, n_all, details, [" ".join(n.split())[:600] for n in notes]


# ---------------------------------------------------------------- tasks, results, resume


@dataclass
class _Task:
    student: str
    notebook: str
    path: Path | None = None
    sub: Any = None
    status: str = ""  # set when no run is needed (missing, empty, not a notebook)
    message: str = ""
    key: str = ""


def scan_submissions(root: Path, names: set[str]) -> tuple[dict[str, dict[str, Path]], list[str]]:
    """``{student: {notebook name: path}}`` and the list of ignored entries (with the reason)."""
    students: dict[str, dict[str, Path]] = {}
    ignored: list[str] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            ignored.append(f"{entry.name}: hidden entry, ignored")
            continue
        if not entry.is_dir() or entry.is_symlink():
            ignored.append(f"{entry.name}: not a student folder (expected {root.name}/<student>/<notebook>.ipynb)")
            continue
        files: dict[str, Path] = {}
        for f in sorted(entry.iterdir()):
            rel = f"{entry.name}/{f.name}"
            if f.is_file() and not f.is_symlink() and f.name in names:
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


def _sha256(path: Path | None) -> str:
    if path is None:
        return ""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _settings_key(cfg: GradeConfig) -> str:
    return json.dumps([GRADER_VERSION, cfg.fast, cfg.timeout_s, cfg.memory_mb, cfg.unsafe, cfg.disk_mb,
                       cfg.max_processes])


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.\- ]", "_", name)[:150] or "_"


def _result_path(out: Path, student: str, notebook: str) -> Path:
    return out / "results" / _safe_name(student) / f"{notebook}.json"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _clear_previous(out: Path) -> None:
    """Remove what a previous run wrote (only the grader's own files and folders)."""
    for d in ("results", "runs", "feedback", "answers", "calibration"):
        if (out / d).is_dir():
            shutil.rmtree(out / d)
    for f in ("grades.csv", "grades_wide.csv", "summary.md"):
        if (out / f).is_file():
            (out / f).unlink()


def collect_answers(master: Master, sub: Any) -> list[dict[str, Any]]:
    """Written answers: markdown/raw cells the learner added or edited, with the heading of their section."""

    by_id = {c.get("id"): c for c in master.nb.cells if c.get("id")}
    master_text = {source_of(c).strip() for c in master.nb.cells if c.cell_type != "code"}
    heading = ""
    out = []
    for cell in sub.cells:
        ctype = cell.get("cell_type")
        src = source_of(cell)
        mc = by_id.get(cell.get("id"))
        if mc is not None and mc.cell_type == "markdown":
            for line in source_of(mc).splitlines():
                if line.startswith("#"):
                    heading = line.lstrip("#").strip()
        if ctype not in ("markdown", "raw") or cell.get("id") == STUDENT_NOTE_ID or not src.strip():
            continue
        if mc is not None and source_of(mc).strip() == src.strip():
            continue
        if mc is None and src.strip() in master_text:
            continue
        out.append({"section": heading[:200], "edited": mc is not None, "text": src[:MAX_ANSWER_CHARS]})
    return out


def _grade_one(task: _Task, master: Master, judge: Judge | None, expected: dict[str, Any], cfg: GradeConfig,
               threads: int, out: Path, references: dict[str, set[str]]) -> dict[str, Any]:
    """Run, judge and score one submission; return its result (also written to ``results/``). Never raises."""
    import nbformat

    result: dict[str, Any] = {"key": task.key, "student": task.student, "notebook": task.notebook,
                              "graded_at": datetime.now().isoformat(timespec="seconds")}
    rows: list[Row] = []
    problems: list[str] = []
    if task.status:
        for ex in master.exercises.values():
            rows.append(Row(task.student, task.notebook, ex.id, 0.0, ex.points, f"not graded: {task.message}", 0,
                            sum(len(c) for c in expected.get(ex.id, [])), task.status))
        if task.status != "missing":
            problems.append(f"{task.student}/{task.notebook}: {task.status} — {task.message}")
        result.update(status=task.status, rows=[r.__dict__ for r in rows], problems=problems, seconds=None)
        _atomic_write(_result_path(out, task.student, task.notebook), json.dumps(result))
        return result
    gdir = _short_tmpdir("dg-")
    try:
        nb, notes = build_run(master, task.sub, out_dir=INNER_OUT if not cfg.unsafe else str(gdir / "out"))
        learner_sources = [source_of(c) for c in nb.cells if c.metadata.get("diffcl_grader", {}).get("role") == "learner"]
        executed, report, seconds = run_submission(nb, cfg, threads, gdir)
        verdict = judge.judge(gdir / "out") if judge is not None else {"error": "no judge"}
        states, stop = parse_run(executed, report, master)
        apply_verdicts(states, master, verdict)
        status = report.get("status", "grader-error")
        if verdict.get("error") and status == "complete":
            status = "grader-error"
            stop = verdict["error"]
        fset = set(exercise_functions(master))
        review = static.review_flags(learner_sources)
        restored = sorted({x for st in states.values() for x in st.restored})
        runtime = []
        if report.get("max_processes", 0) > 3:
            runtime.append(f"started processes ({report['max_processes']} at once)")
        if report.get("output_capped"):
            runtime.append("output cut at the limit")
        if verdict.get("skipped"):
            runtime.append("unexpected files among its records")
        changed = static.inplace_changes(learner_sources)
        if changed:
            review.append("changes the notebook's data in place (" + ", ".join(changed[:4]) + ")")
        if "the grader cannot compare" in json.dumps(verdict.get("cells", {})):
            runtime.append("returned values the grader cannot compare")
        for ex in master.exercises.values():
            states[ex.id].findings = static.exercise_findings(learner_sources, ex.functions, references[ex.id], fset)
        findings = {ex_id: st.findings for ex_id, st in states.items() if st.findings}
        flag_text = "; ".join(filter(None, [
            ("needs review: " + ", ".join(sorted(findings))) if findings else "",
            ("restored: " + ", ".join(restored[:8])) if restored else "",
            ("mentions: " + ", ".join(review)) if review else "",
            ("run: " + ", ".join(runtime)) if runtime else ""]))
        for ex in master.exercises.values():
            pts, text, n_ok, n_all, details, ex_notes = score_exercise(ex.points, states[ex.id], expected.get(ex.id),
                                                                       stop, notes.get(ex.id))
            rows.append(Row(task.student, task.notebook, ex.id, pts, ex.points, text, n_ok, n_all, status, flag_text,
                            round(seconds, 2), details, ex_notes))
        if status != "complete":
            problems.append(f"{task.student}/{task.notebook}: {status} — {stop or report.get('message', '')}")
        if flag_text:
            problems.append(f"{task.student}/{task.notebook}: review suggested — {flag_text}")
        if executed is not None:
            dest = out / "runs" / _safe_name(task.student) / task.notebook
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(executed, str(dest))
            except Exception as exc:  # the executed copy is a convenience: its loss costs no row
                log.warning("could not save %s: %s", dest, exc)
        result.update(status=status, seconds=round(seconds, 2), cpu_seconds=report.get("cpu_seconds"),
                      isolated=bool(report.get("isolated")), peak_rss_mb=report.get("peak_rss_mb"))
    except Exception as exc:  # never lose a row: whatever went wrong, every exercise gets one
        log.exception("could not grade %s/%s", task.student, task.notebook)
        rows = [Row(task.student, task.notebook, ex.id, 0.0, ex.points,
                    f"not graded: the grader failed on this submission ({type(exc).__name__}: {exc})",
                    status="grader-error") for ex in master.exercises.values()]
        problems = [f"{task.student}/{task.notebook}: grader-error — {type(exc).__name__}: {exc}"]
        result.update(status="grader-error", seconds=None)
    finally:
        shutil.rmtree(gdir, ignore_errors=True)
    result.update(rows=[r.__dict__ for r in rows], problems=problems,
                  answers=collect_answers(master, task.sub) if task.sub is not None else [])
    _atomic_write(_result_path(out, task.student, task.notebook), json.dumps(result))
    return result


def _load_result(path: Path, key: str) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("key") == key and isinstance(data.get("rows"), list) else None


def grade(submissions: str | os.PathLike, out: str | os.PathLike, cfg: GradeConfig | None = None) -> GradeResult:
    """Grade every ``SUBMISSIONS/<student>/<notebook>.ipynb``; write the results, the tables, feedback and answers."""
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
    if cfg.data_dir is not None and not Path(cfg.data_dir).is_dir():
        raise DiffCLError(f"--data {cfg.data_dir}: no such folder")
    out_res = out.resolve()
    for inside in (root.resolve(), Path(cfg.masters).resolve()):
        if out_res == inside or inside in out_res.parents:
            raise DiffCLError(f"--out {out} is inside {inside}; write the grades somewhere else")
    if not cfg.unsafe:
        why = isolation_problem()
        if why:
            raise DiffCLError(f"this machine cannot isolate submissions ({why}); grading would run students' code "
                              f"with your rights — enable user namespaces, or pass --unsafe to grade anyway")
    students, ignored = scan_submissions(root, set(masters))
    graded = list(cfg.notebooks) if cfg.notebooks else sorted({n for files in students.values() for n in files})
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    jobs = cfg.jobs or cores
    threads = max(1, cores // jobs)
    out.mkdir(parents=True, exist_ok=True)
    if not cfg.resume:
        _clear_previous(out)
    settings = _settings_key(cfg)
    results: dict[tuple[str, str], dict[str, Any]] = {}
    tasks: list[_Task] = []
    for student, files in students.items():
        for name in graded:
            task = _Task(student, name, files.get(name))
            task.key = hashlib.sha256(json.dumps([settings, _sha256(masters[name].path), _sha256(task.path)])
                                      .encode()).hexdigest()
            if cfg.resume:
                old = _load_result(_result_path(out, student, name), task.key)
                if old is not None:
                    results[(student, name)] = old
                    continue
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
    resumed = len(results)
    calibration: dict[str, dict[str, Any]] = {}
    n_runs = sum(1 for t in tasks if not t.status)
    log.info("grading %d run(s) with %d job(s); %d kept from a previous run", n_runs, jobs, resumed)
    bar = tqdm(total=n_runs, desc="grading", unit="run", disable=not cfg.progress)
    refs = {name: notebook_references(masters[name]) for name in graded}
    try:
        # `jobs` notebooks at a time: their masters are calibrated first, together and with no submission
        # running; then their submissions are graded (`jobs` at a time) and their judges closed
        for first in range(0, len(graded), jobs):
            chunk = graded[first:first + jobs]
            judges = _calibrate(chunk, masters, tasks, cfg, threads, out, calibration)
            try:
                todo = [t for t in tasks if t.notebook in chunk]
                for t in todo:
                    if t.status:
                        results[(t.student, t.notebook)] = _grade_one(
                            t, masters[t.notebook], None, calibration[t.notebook]["expected"], cfg, threads, out,
                            refs[t.notebook])
                with ThreadPoolExecutor(max_workers=jobs) as pool:
                    futures = {pool.submit(_grade_one, t, masters[t.notebook], judges.get(t.notebook),
                                           calibration[t.notebook]["expected"], cfg, threads, out,
                                           refs[t.notebook]): t for t in todo if not t.status}
                    for fut in as_completed(futures):
                        t = futures[fut]
                        results[(t.student, t.notebook)] = fut.result()
                        bar.update(1)
            finally:
                for judge in judges.values():
                    judge.close()
    finally:
        bar.close()
    return _finish(out, root, cfg, masters, graded, students, ignored, results, calibration, jobs, resumed, t_start)


def notebook_references(master: Master) -> dict[str, set[str]]:
    """Per exercise: the package functions its own checks compare with, and those of the notebook's other
    exercises (an exercise's function may call another exercise's function, never its reference)."""
    own = {ex.id: static.reference_names([source_of(master.nb.cells[i]) for i in ex.check_cells], ex.functions)
           for ex in master.exercises.values()}
    everything = set().union(*own.values()) if own else set()
    return {ex_id: everything for ex_id in own}


def _calibrate(names: list[str], masters: dict[str, Master], tasks: list[_Task], cfg: GradeConfig, threads: int,
               out: Path, calibration: dict[str, dict[str, Any]]) -> dict[str, Judge]:
    """Start the judges of ``names`` (in parallel); fill ``calibration``; raise the first CalibrationError."""
    judges: dict[str, Judge] = {}
    need = []
    for name in names:
        cal_path = out / "calibration" / f"{name}.json"
        stored = None
        if cfg.resume and cal_path.is_file():
            try:
                stored = json.loads(cal_path.read_text())
            except (OSError, ValueError):
                stored = None
        if stored and stored.get("master_sha256") != _sha256(masters[name].path):
            stored = None
        if stored is not None:
            calibration[name] = stored
        if stored is None or any(t.notebook == name and not t.status for t in tasks):
            need.append(name)
            judges[name] = Judge(masters[name], cfg, threads)
    errors: list[BaseException] = []

    def start(name: str) -> None:
        try:
            judges[name].start()
            calibration[name] = judges[name].summary()
            _atomic_write(out / "calibration" / f"{name}.json", json.dumps(calibration[name]))
        except BaseException as exc:  # noqa: BLE001 - reported below, after every judge of the chunk started
            errors.append(exc)

    threads_ = [threading.Thread(target=start, args=(n,), name=f"calibrate {n}") for n in need]
    for t in threads_:
        t.start()
    for t in threads_:
        t.join()
    if errors:
        for judge in judges.values():
            judge.close()
        raise errors[0]
    return judges


def _finish(out: Path, root: Path, cfg: GradeConfig, masters: dict[str, Master], graded: list[str],
            students: dict[str, dict[str, Path]], ignored: list[str], results: dict[tuple[str, str], dict[str, Any]],
            calibration: dict[str, dict[str, Any]], jobs: int, resumed: int, t_start: float) -> GradeResult:
    rows: list[Row] = []
    problems: list[str] = []
    run_seconds, cpu_seconds = [], []
    for student in students:
        for name in graded:
            res = results.get((student, name))
            if res is None:
                continue
            rows += [Row(**r) for r in res["rows"]]
            problems += res.get("problems", [])
            if res.get("seconds") is not None and res.get("status") not in ("missing", "empty", "not-a-notebook"):
                run_seconds.append(float(res["seconds"]))
            if res.get("cpu_seconds"):
                cpu_seconds.append(float(res["cpu_seconds"]))
    result = GradeResult(out, rows, problems, {n: c["text"] for n, c in calibration.items()},
                         time.monotonic() - t_start, run_seconds, jobs, cpu_seconds, isolated=not cfg.unsafe,
                         resumed=resumed)
    _write_csv(out / "grades.csv", rows)
    _write_wide(out / "grades_wide.csv", rows, masters, graded, students)
    for (student, name), res in results.items():
        if name in graded:
            _atomic_write(out / "feedback" / _safe_name(student) / f"{Path(name).stem}.md",
                          feedback_markdown(student, masters[name], [Row(**r) for r in res["rows"]]))
    for name in graded:
        _atomic_write(out / "answers" / f"{Path(name).stem}.md",
                      answers_markdown(masters[name], [(s, results.get((s, name), {}).get("answers", []))
                                                       for s in students]))
    _atomic_write(out / "summary.md", _summary(result, root, cfg, masters, graded, students, ignored))
    return result


# ---------------------------------------------------------------- what is written


def _cell(value: Any) -> Any:
    """A CSV field a spreadsheet never runs as a formula (``=``, ``+``, ``-``, ``@`` at the start get a quote)."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _NUMBER.match(text) else value


_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")


def _write_csv(path: Path, rows: list[Row]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: _cell(v) for k, v in r.as_csv().items()})
    os.replace(tmp, path)


def _write_wide(path: Path, rows: list[Row], masters: dict[str, Master], graded: list[str],
                students: dict[str, dict[str, Path]]) -> None:
    """One row per student, one column per exercise (its points), one total (for a learning platform)."""
    cols: list[tuple[str, str]] = [(n, ex.id) for n in graded for ex in masters[n].exercises.values()]
    ids = [e for _, e in cols]
    names = [e if ids.count(e) == 1 else f"{Path(n).stem}:{e}" for n, e in cols]
    pts = {(r.student, r.notebook, r.exercise): r.points for r in rows}
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["student", *names, "total"])
        for s in students:
            vals = [pts.get((s, n, e), 0.0) for n, e in cols]
            w.writerow([_cell(s), *(_fmt(round(v, 2)) for v in vals), _fmt(round(sum(vals), 2))])
        w.writerow(["(max)", *(_fmt(ex.points) for n in graded for ex in masters[n].exercises.values()),
                    _fmt(sum(masters[n].max_points for n in graded))])
    os.replace(tmp, path)


def _md(text: str) -> str:
    """Learner-controlled text made inert in markdown (no HTML, no table breaks)."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
            .replace("\n", " "))


def feedback_markdown(student: str, master: Master, rows: list[Row]) -> str:
    """What a student gets back for one notebook: each exercise, its points, each check's message (hints included)."""
    total = sum(r.points for r in rows)
    lines = [f"# {_md(master.name)} — feedback for {_md(student)}", "",
             f"**{_fmt(round(total, 2))} / {_fmt(master.max_points)} points.**", ""]
    status = {r.status for r in rows} - {"complete"}
    if status:
        lines += [f"Run: {_md(', '.join(sorted(status)))}.", ""]
    for r in rows:
        lines += [f"## Exercise {_md(r.exercise)}: {_fmt(round(r.points, 2))} / {_fmt(r.max_points)}", ""]
        for d in r.details:
            mark = "✅" if d.get("passed") else "❌"
            lines.append(f"- {mark} {_md(d.get('check', ''))}: {_md(d.get('message', ''))}")
        if not r.details:
            lines.append(f"- {_md(r.feedback)}")
        lines += [f"- Note: {_md(n)}" for n in r.notes]
        lines.append("")
    return "\n".join(lines)


def answers_markdown(master: Master, per_student: list[tuple[str, list[dict[str, Any]]]]) -> str:
    """The written answers of every student for one notebook, for grading by hand."""
    lines = [f"# Written answers — {master.name}", "",
             "Markdown cells the students added (or master text cells they edited), under the heading of the "
             "section they are in. Grade them by hand.", ""]
    for student, answers in per_student:
        lines += [f"## {_md(student)}", ""]
        if not answers:
            lines += ["(no written answers)", ""]
        for a in answers:
            where = f"section “{a.get('section') or 'start'}”" + (" (edited cell)" if a.get("edited") else "")
            lines += [f"**{_md(where)}**", ""]
            text = str(a.get("text", "")).replace("<", "&lt;").replace("![", "!\\[")  # no HTML, no remote images
            lines += ["> " + line for line in text.splitlines()] + [""]
    return "\n".join(lines)


def _summary(result: GradeResult, root: Path, cfg: GradeConfig, masters: dict[str, Master], graded: list[str],
             students: dict[str, dict[str, Path]], ignored: list[str]) -> str:
    rows = result.rows
    secs = result.run_seconds
    iso = ("each submission isolated (namespaces: own root, no network, own processes)" if result.isolated
           else "NOT isolated (--unsafe: submissions ran with your rights)")
    lines = [f"# Grades: {root.name}", "",
             f"{datetime.now():%Y-%m-%d %H:%M} — {len(students)} student folder(s), notebooks: "
             f"{', '.join(graded) or 'none'}; masters from `{cfg.masters}`; "
             f"{'fast' if cfg.fast else 'full'} mode, time limit {cfg.timeout_s:g} s, memory limit {cfg.memory_mb} MB, "
             f"disk {cfg.disk_mb} MB, {cfg.max_processes} processes per submission, {result.jobs} job(s); {iso}.", "",
             f"{len(secs)} submission run(s) took {result.wall_s:.1f} s in all (calibration included)"
             + (f"; per submission median {statistics.median(secs):.1f} s, max {max(secs):.1f} s." if secs else ".")
             + (f" {result.resumed} result(s) kept from the previous run (--resume)." if result.resumed else ""), ""]
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
    lines += ["", "Columns of grades.csv: " + ", ".join(CSV_COLUMNS) + ". One row per student in grades_wide.csv. "
              "Feedback per student: `feedback/`; written answers: `answers/`; executed grading notebooks: `runs/`; "
              "one result file per submission: `results/`.", ""]
    return "\n".join(lines)
