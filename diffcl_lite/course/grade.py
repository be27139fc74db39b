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

import difflib
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import DataFormatError, DiffCLError
from . import static as static
from .convention import source_of
from .judge import Judge, apply_verdicts, parse_run, score_exercise
from .masters import Master, load_masters, read_notebook
from .results import (GradeConfig, GradeResult, Row, answers_markdown, collect_answers, feedback_markdown,
                      summary_markdown, write_csv, write_wide)
from .submission import build_run, exercise_functions, run_submission, sha256_of, short_tmpdir
from .worker import INNER_OUT, sandbox_module

__all__ = ["GRADER_VERSION", "isolation_problem", "scan_submissions", "grade", "notebook_references"]


log = logging.getLogger(__name__)
GRADER_VERSION = "2"


# ---------------------------------------------------------------- isolation


_probe_lock = threading.Lock()
_probe_cache: dict[str, str | None] = {}


def isolation_problem() -> str | None:
    """None when this machine can sandbox a submission, else why not (one line); probed once per process."""
    with _probe_lock:
        if "v" not in _probe_cache:
            _probe_cache["v"] = sandbox_module().probe()
        return _probe_cache["v"]


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


def _flags(master: Master, learner_sources: list[str], states: dict[str, Any], report: dict[str, Any],
           verdict: dict[str, Any], references: dict[str, set[str]]) -> str:
    """The ``flags`` of a submission (worth a human look, never scored); sets each exercise's findings."""
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
    return "; ".join(filter(None, [
        ("needs review: " + ", ".join(sorted(findings))) if findings else "",
        ("restored: " + ", ".join(restored[:8])) if restored else "",
        ("mentions: " + ", ".join(review)) if review else "",
        ("run: " + ", ".join(runtime)) if runtime else ""]))


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
    gdir = short_tmpdir("dg-")
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
        flag_text = _flags(master, learner_sources, states, report, verdict, references)
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


def _check_inputs(root: Path, out: Path, cfg: GradeConfig) -> dict[str, Master]:
    """The masters by file name, once the folders, the options and the isolation are found usable."""
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
    return masters


def grade(submissions: str | os.PathLike, out: str | os.PathLike, cfg: GradeConfig | None = None) -> GradeResult:
    """Grade every ``SUBMISSIONS/<student>/<notebook>.ipynb``; write the results, the tables, feedback and answers."""
    from tqdm.auto import tqdm

    cfg = cfg or GradeConfig()
    t_start = time.monotonic()
    root, out = Path(submissions), Path(out)
    masters = _check_inputs(root, out, cfg)
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
            task.key = hashlib.sha256(json.dumps([settings, sha256_of(masters[name].path), sha256_of(task.path)])
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
        if stored and stored.get("master_sha256") != sha256_of(masters[name].path):
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
    write_csv(out / "grades.csv", rows)
    write_wide(out / "grades_wide.csv", rows, masters, graded, students)
    for (student, name), res in results.items():
        if name in graded:
            _atomic_write(out / "feedback" / _safe_name(student) / f"{Path(name).stem}.md",
                          feedback_markdown(student, masters[name], [Row(**r) for r in res["rows"]]))
    for name in graded:
        _atomic_write(out / "answers" / f"{Path(name).stem}.md",
                      answers_markdown(masters[name], [(s, results.get((s, name), {}).get("answers", []))
                                                       for s in students]))
    _atomic_write(out / "summary.md", summary_markdown(result, root, cfg, masters, graded, students, ignored))
    return result
