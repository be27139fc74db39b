"""One submission's run: the graded notebook built from the master and the learner's cells, executed
by a worker process in its sandbox (:mod:`diffcl_lite.course.worker`), its value records copied out.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import static as static
from .convention import (GOLDEN_MARKER, TAG_EXERCISE, TAG_HIDDEN_CHECK, TAG_NO_GRADE, TAG_PARAMETERS, TAG_SELF_CHECK,
                         TAG_SOLUTION, cell_exercise, cell_tags, defined_functions, source_of)
from .masters import Master
from .results import GradeConfig
from .values import ValueFileError, read_regular
from .worker import INNER_OUT, kernel_env, kill_session, sandbox_spec

__all__ = ["PACKAGE_DIR", "WORKER", "RT", "RECORD_NAME", "MAX_RECORDS_BYTES", "exercise_functions",
           "match_submission", "build_run", "kernel_setup", "worker_task", "worker_env", "short_tmpdir",
           "read_report", "run_submission", "copy_records", "sha256_of"]


log = logging.getLogger(__name__)
#: the diffcl_lite package folder (copied for --unsafe runs); the course tools are in its course/
PACKAGE_DIR = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().with_name("worker.py")
RT = "import diffcl_lite.course.runtime as __dg__\n"
#: a submission's records handed to the judge: file names and total size
RECORD_NAME = re.compile(r"^(cell-\d+|final)\.(json|npz)$")
MAX_RECORDS_BYTES = 96 * 2**20


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


def kernel_setup(cfg: GradeConfig, gdir: Path, threads: int, *, memory_mb: int,
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


def worker_task(gdir: Path, nb_path: Path, cfg: GradeConfig, spec: dict[str, Any] | None, env: dict[str, str],
          memory_mb: int, **extra: Any) -> Path:
    task = {"notebook": str(nb_path), "gdir": str(gdir), "timeout_s": cfg.timeout_s, "memory_mb": memory_mb,
            "out_notebook": str(gdir / "executed.ipynb"), "out_report": str(gdir / "report.json"),
            "pid_file": str(gdir / "kernel.pid"), "sandbox": spec, "env": env, "cwd": str(gdir / "work"), **extra}
    path = gdir / "task.json"
    path.write_text(json.dumps(task))
    return path


def worker_env() -> dict[str, str]:
    env = os.environ.copy()
    env.pop("PYTHONPATH", None)
    return env


def short_tmpdir(prefix: str) -> Path:
    """A temporary folder with a short path (ZeroMQ's socket files must fit in 107 bytes)."""
    base = tempfile.gettempdir()
    if len(base) > 40:
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def read_report(gdir: Path, proc: subprocess.Popen, cfg: GradeConfig, t0: float) -> tuple[Any, dict[str, Any]]:
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
        spec, env, inner_out = kernel_setup(cfg, gdir, threads, memory_mb=cfg.memory_mb)
        nb_path = gdir / "run.ipynb"
        nbformat.write(nb, str(nb_path))
        task = worker_task(gdir, nb_path, cfg, spec, env, cfg.memory_mb, die_with_parent=True)
        with open(gdir / "worker.log", "wb") as logf:
            proc = subprocess.Popen([sys.executable, str(WORKER), str(task)], cwd=str(gdir), env=worker_env(),
                                    stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            cpu_s = _wait_with_rusage(proc, cfg.timeout_s + cfg.startup_allowance_s)
        executed, report = read_report(gdir, proc, cfg, t0)
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


def sha256_of(path: Path | None) -> str:
    if path is None:
        return ""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
