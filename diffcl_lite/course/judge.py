"""Judging: the master's checks replayed on a submission's recorded values in a clean judge kernel
(one per master), and the points of each exercise.
"""
from __future__ import annotations

import json
import logging
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .convention import TAG_HIDDEN_CHECK, TAG_SELF_CHECK
from .masters import Master
from .results import CalibrationError, GradeConfig
from .runtime import MIME
from .submission import (WORKER, build_run, copy_records, kernel_setup, read_report, sha256_of, short_tmpdir,
                         worker_env, worker_task)
from .values import read_regular
from .worker import INNER_IN, kill_session

__all__ = ["Judge", "parse_run", "apply_verdicts", "expected_checks", "score_exercise"]


log = logging.getLogger(__name__)


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
        self.gdir = gdir = short_tmpdir("dj-")
        (gdir / "in").mkdir(mode=0o755)
        os.chmod(gdir / "in", 0o755)  # the judge's user reads it
        spec, env, inner_out = kernel_setup(self.cfg, gdir, self.threads, memory_mb=self.memory_mb,
                                             extra_binds=[[str(gdir / "in"), INNER_IN, "ro"]], records_mb=None)
        self.inner_in = INNER_IN if spec else str(gdir / "in")
        self.inner_out = inner_out
        nb, _ = build_run(self.master, None, out_dir=inner_out, facts_path=f"{self.inner_in}/facts.json")
        (gdir / "in" / "facts.json").write_text(json.dumps(nb.metadata["diffcl_grader"]["facts"]))
        os.chmod(gdir / "in" / "facts.json", 0o644)
        nb_path = gdir / "run.ipynb"
        nbformat.write(nb, str(nb_path))
        calib_file = f"{inner_out}/calibration.json"
        task = worker_task(gdir, nb_path, self.cfg, spec, env, self.memory_mb,
                     judge={"ready": f"__dg__.self_replay({calib_file!r})", "timeout_s": self.cfg.timeout_s})
        self.log = open(gdir / "worker.log", "wb")
        self.proc = subprocess.Popen([sys.executable, str(WORKER), str(task)], cwd=str(gdir), env=worker_env(),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     start_new_session=True, text=True, bufsize=1)
        line = self._readline(2 * self.cfg.timeout_s + self.cfg.startup_allowance_s)
        self.executed, self.report = read_report(gdir, self.proc, self.cfg, t0)
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
        return {"text": text, "expected": self.expected(), "master_sha256": sha256_of(self.master.path)}

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
