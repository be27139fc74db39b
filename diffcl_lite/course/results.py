"""What grading produces: its options, one row per exercise, and the files written for the instructor
(grades.csv, grades_wide.csv, feedback/, answers/, summary.md).
"""
from __future__ import annotations

import csv
import logging
import os
import re
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import DiffCLError
from .convention import STUDENT_NOTE_ID, source_of
from .masters import Master

__all__ = ["CSV_COLUMNS", "MAX_ANSWER_CHARS", "CalibrationError", "GradeConfig", "Row", "GradeResult",
           "collect_answers", "write_csv", "write_wide", "feedback_markdown", "answers_markdown",
           "summary_markdown"]


log = logging.getLogger(__name__)
CSV_COLUMNS = ["student", "notebook", "exercise", "points", "max_points", "feedback", "checks_passed",
               "checks_total", "status", "flags", "seconds"]
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


# ---------------------------------------------------------------- what is written


def _cell(value: Any) -> Any:
    """A CSV field a spreadsheet never runs as a formula (``=``, ``+``, ``-``, ``@`` at the start get a quote)."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _NUMBER.match(text) else value


_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")


def write_csv(path: Path, rows: list[Row]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: _cell(v) for k, v in r.as_csv().items()})
    os.replace(tmp, path)


def write_wide(path: Path, rows: list[Row], masters: dict[str, Master], graded: list[str],
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


def summary_markdown(result: GradeResult, root: Path, cfg: GradeConfig, masters: dict[str, Master], graded: list[str],
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
