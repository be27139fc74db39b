"""Run one notebook in a fresh, resource-limited kernel: the engine of the classroom grader.

Used by :mod:`diffcl_lite.classroom` (student-copy checks) and :mod:`diffcl_lite.classroom_grade`
(one worker process per submission). This file deliberately imports nothing from ``diffcl_lite``
(importing the package loads torch, ~2 s): the grader starts it as a plain script,
``python classroom_exec.py TASK.json``, so a worker costs only the nbclient start-up.

Limits of one run:

* **time** — one budget for all cells (the kernel start is not counted); when it runs out the cell
  that is running is abandoned and the kernel is killed (``status="timeout"``);
* **memory** — the kernel is started by :mod:`diffcl_lite.classroom_kernel`, which sets
  ``RLIMIT_DATA`` (an allocation beyond it fails inside the cell with ``MemoryError`` /
  "can't allocate memory"; ``RLIMIT_AS`` is not used because it breaks ``import torch``), and a
  watchdog thread here kills the kernel's whole session when the summed RSS of its processes
  exceeds ``1.25 x memory_mb`` (``status="memory"``);
* a kernel that dies (``os._exit``, a segfault, a signal) ends the run with ``status="dead"``.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    # run as a script: do not let the package folder shadow top-level modules (io, utils, ...)
    sys.path.pop(0)
if __name__ == "__main__":
    # nbformat -> jsonschema -> rfc3987_syntax builds a grammar at import (1-2 s per worker); the
    # worker never validates IRI formats, and jsonschema treats the module as optional
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

log = logging.getLogger("diffcl_lite.classroom_exec")

#: how often the memory watchdog looks at the kernel's processes (seconds)
WATCHDOG_PERIOD_S = 0.2
#: outputs of one cell beyond this many characters are dropped
MAX_OUTPUT_CHARS = 2_000_000


def kernel_argv(memory_mb: int | None, cpu_s: int | None, python: str | None = None) -> list[str]:
    """Command line of a resource-limited IPython kernel (``{connection_file}`` is filled in by jupyter_client)."""
    argv = [python or sys.executable, "-m", "diffcl_lite.classroom_kernel"]
    if memory_mb:
        argv += ["--memory-mb", str(int(memory_mb))]
    if cpu_s:
        argv += ["--cpu-s", str(int(cpu_s))]
    return argv + ["-f", "{connection_file}"]


def _session_rss_bytes(sid: int) -> int:
    """Summed resident memory of every process whose session id is ``sid`` (Linux /proc)."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        # fields after the command name: state ppid pgrp session ... (rss is field 24 of stat)
        if len(fields) > 21 and int(fields[3]) == sid:
            total += int(fields[21]) * page
    return total


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system, with reaped children) of a live process, from /proc; None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    # utime stime cutime cstime are fields 14-17 of stat (11-14 after the command name)
    return round(sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK"), 2)


def kill_session(pid: int | None) -> None:
    """SIGKILL the process group / session led by ``pid`` (the kernel is started with start_new_session)."""
    if not pid:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


class _Watchdog(threading.Thread):
    def __init__(self, pid: int, limit_bytes: int):
        super().__init__(daemon=True, name="diffcl-memory-watchdog")
        self.pid, self.limit, self.fired, self.peak = pid, limit_bytes, False, 0
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while True:
            try:
                rss = _session_rss_bytes(self.pid)
            except Exception:  # pragma: no cover - /proc unreadable: nothing to watch
                return
            self.peak = max(self.peak, rss)
            if rss > self.limit:
                self.fired = True
                kill_session(self.pid)
                return
            if self._stop_evt.wait(WATCHDOG_PERIOD_S):
                return

    def stop(self) -> None:
        self._stop_evt.set()


def execute(nb: Any, cwd: str | os.PathLike, *, timeout_s: float, memory_mb: int | None = 2048,
            python: str | None = None, pid_file: str | os.PathLike | None = None,
            startup_timeout_s: int = 120) -> dict[str, Any]:
    """Execute the code cells of ``nb`` in order, outputs written into ``nb``; never raises for the notebook's faults.

    Returns a report: ``status`` (``complete``, ``timeout``, ``memory``, ``dead``, ``kernel-start``,
    ``error``), ``stopped_at`` (index of the cell that was running when the run ended early),
    ``message``, ``seconds`` (cell time), ``startup_seconds``, ``peak_rss_mb``, ``errors``
    (``[{"cell": i, "ename": ..., "evalue": ...}]`` for cells that raised).
    """
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    argv = kernel_argv(memory_mb, cpu_s=int(2 * timeout_s + startup_timeout_s + 60), python=python)

    class _OneSpec(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str, *args: Any, **kwargs: Any) -> KernelSpec:
            return KernelSpec(argv=argv, display_name="diffcl-lite grader", language="python")

    report: dict[str, Any] = {"status": "complete", "stopped_at": None, "message": "", "seconds": 0.0,
                              "startup_seconds": 0.0, "peak_rss_mb": None, "errors": []}
    class _CappedClient(NotebookClient):
        """Drops a cell's outputs beyond ``MAX_OUTPUT_CHARS`` (a print loop must not exhaust the grader's memory)."""

        def output(self, outs: Any, msg: dict[str, Any], display_id: Any, cell_index: int) -> Any:
            if msg.get("msg_type") != "error":
                content = msg.get("content", {})
                size = len(str(content.get("text", ""))) + sum(len(str(v)) for v in content.get("data", {}).values())
                used = sizes.get(cell_index, 0)
                sizes[cell_index] = used + size
                if used + size > MAX_OUTPUT_CHARS:
                    if used <= MAX_OUTPUT_CHARS:
                        note = f"[grader: output beyond {MAX_OUTPUT_CHARS} characters dropped]\n"
                        outs.append(nbformat_output("stream", name="stderr", text=note))
                    return None
            return super().output(outs, msg, display_id, cell_index)

        def on_comm_open_jupyter_widget(self, msg: dict[str, Any]) -> Any:
            # keep the widgets' state, but never mirror ipywidgets.Output into the notebook: nbclient
            # does that by sending comm messages back to the kernel, and a run with an Output widget
            # could then wait until the time limit after its last cell (seen with nbclient 0.11)
            return None

    from nbformat.v4 import new_output as nbformat_output

    sizes: dict[int, int] = {}
    km = AsyncKernelManager(kernel_name="diffcl-grader", kernel_spec_manager=_OneSpec())
    client = _CappedClient(nb, km=km, timeout=None, allow_errors=True, startup_timeout=startup_timeout_s,
                            shutdown_kernel="immediate", kernel_name="diffcl-grader",
                            resources={"metadata": {"path": str(cwd)}})
    watchdog: _Watchdog | None = None
    kernel_pid: int | None = None
    t0 = time.monotonic()
    try:
        client.reset_execution_trackers()
        with client.setup_kernel():
            kernel_pid = getattr(km.provisioner, "pid", None)
            if pid_file and kernel_pid:
                Path(pid_file).write_text(str(kernel_pid))
            if memory_mb and kernel_pid and os.path.isdir("/proc"):
                watchdog = _Watchdog(kernel_pid, int(memory_mb * 1.25 * 2**20))
                watchdog.start()
            client.wait_for_reply(client.kc.kernel_info())
            report["startup_seconds"] = round(time.monotonic() - t0, 3)
            start = time.monotonic()
            deadline = start + timeout_s
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    report.update(status="timeout", stopped_at=index,
                                  message=f"time limit of {timeout_s:g} s reached before cell {index}")
                    break
                client.timeout = max(1, math.ceil(remaining))
                t_cell = time.monotonic()
                try:
                    client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
                    if time.monotonic() - t_cell > 2:
                        report.setdefault("slow_cells", []).append([index, round(time.monotonic() - t_cell, 2)])
                except CellTimeoutError:
                    report.update(status="timeout", stopped_at=index,
                                  message=f"time limit of {timeout_s:g} s reached while running cell {index}")
                    kill_session(kernel_pid)
                    break
                except DeadKernelError:
                    if watchdog is not None and watchdog.fired:
                        report.update(status="memory", stopped_at=index,
                                      message=f"memory limit of {memory_mb} MB exceeded in cell {index}")
                    else:
                        report.update(status="dead", stopped_at=index,
                                      message=f"the kernel died while running cell {index}")
                    break
                for out in cell.get("outputs", []):
                    if out.get("output_type") == "error":
                        report["errors"].append({"cell": index, "ename": out.get("ename", ""),
                                                 "evalue": str(out.get("evalue", ""))[:500]})
            report["seconds"] = round(time.monotonic() - start, 3)
    except Exception as exc:  # kernel start failures, zmq trouble: report, never raise
        status = "kernel-start" if report["startup_seconds"] == 0.0 else "error"
        if watchdog is not None and watchdog.fired:
            status = "memory"
        report.update(status=status, message=f"{type(exc).__name__}: {exc}"[:500])
    finally:
        if watchdog is not None:
            watchdog.stop()
            report["peak_rss_mb"] = round(watchdog.peak / 2**20, 1)
        if kernel_pid:
            report["kernel_cpu_seconds"] = process_cpu_seconds(kernel_pid)
        kill_session(kernel_pid)
    return report


def main(argv: list[str] | None = None) -> int:
    """Worker entry point: ``python classroom_exec.py TASK.json``.

    TASK.json keys: notebook, cwd, timeout_s, memory_mb, out_notebook, out_report, pid_file.
    """
    import nbformat

    args = sys.argv[1:] if argv is None else argv
    task = json.loads(Path(args[0]).read_text())
    nb = nbformat.read(task["notebook"], as_version=4)
    report = execute(nb, task["cwd"], timeout_s=float(task["timeout_s"]), memory_mb=task.get("memory_mb"),
                     pid_file=task.get("pid_file"))
    nbformat.write(nb, task["out_notebook"])
    tmp = Path(task["out_report"] + ".tmp")
    tmp.write_text(json.dumps(report))
    os.replace(tmp, task["out_report"])
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("traitlets").setLevel(logging.CRITICAL)  # "kernel died" / zmq clean-up chatter
    raise SystemExit(main())
