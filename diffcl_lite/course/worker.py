"""Run one notebook in a fresh, isolated, resource-limited kernel: the engine of the classroom grader.

Used by :mod:`diffcl_lite.course.classroom` (student-copy checks) and :mod:`diffcl_lite.course.grade`
(one worker process per submission, one judge per master). This file deliberately imports nothing
from ``diffcl_lite`` (importing the package loads torch, ~2 s): the grader starts it as a plain
script, ``python worker.py TASK.json``, so a worker costs only the nbclient start-up.

The worker (this process) is the trusted side: it talks to the kernel over ZeroMQ, keeps the time,
watches the memory, caps what the kernel sends, and writes the report. The kernel itself runs in a
sandbox (:mod:`diffcl_lite.course.sandbox`) that it cannot leave, kill or see out of; its sockets
are files in a folder shared with the worker (``ipc`` transport: the kernel has no network).

Limits of one run:

* **time** — one budget for all cells (the kernel start is not counted); when it runs out the cell
  that is running is abandoned and the whole sandbox is killed (``status="timeout"``);
* **memory** — ``RLIMIT_DATA`` in the kernel (an allocation beyond it fails inside the cell with
  ``MemoryError``; ``RLIMIT_AS`` would break ``import torch``) and a watchdog here that kills the
  sandbox when the summed RSS of every process in it exceeds ``1.25 x memory_mb``
  (``status="memory"``);
* **processes** — ``RLIMIT_NPROC`` inside the sandbox's own user (threads count too);
* **disk** — the working directory and ``/tmp`` are a private tmpfs of ``disk_mb``; one file is at
  most ``RLIMIT_FSIZE``;
* **output** — at most ``MAX_OUTPUT_CHARS`` per cell and ``MAX_TOTAL_CHARS`` per run, error messages
  and tracebacks included; the kernel's raw stdout/stderr is cut to its last few kilobytes;
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

__all__ = ["HERE", "PACKAGE_DIR", "SANDBOX", "WATCHDOG_PERIOD_S", "MAX_OUTPUT_CHARS", "MAX_TOTAL_CHARS",
           "MAX_MESSAGE_BYTES", "MAX_ERROR_CHARS", "INNER_PKG", "INNER_OUT", "INNER_IN", "INNER_WORK",
           "kernel_argv", "descendants", "process_cpu_seconds", "kill_session", "sandbox_module", "kernel_env",
           "sandbox_spec", "init_pid", "wait_frozen", "KernelRun", "execute", "main"]

log = logging.getLogger("diffcl_lite.course.worker")

HERE = Path(__file__).resolve().parent
#: the diffcl_lite package folder: mounted read-only inside each sandbox
PACKAGE_DIR = HERE.parent
SANDBOX = HERE / "sandbox.py"
#: how often the memory watchdog looks at the kernel's processes (seconds)
WATCHDOG_PERIOD_S = 0.2
#: outputs of one cell beyond this many characters are dropped
MAX_OUTPUT_CHARS = 2_000_000
#: outputs of one run beyond this many characters are dropped
MAX_TOTAL_CHARS = 8_000_000
#: one message from the kernel at most (ZeroMQ drops the connection beyond it)
MAX_MESSAGE_BYTES = 64 * 2**20
#: an error's message and traceback are cut to this many characters
MAX_ERROR_CHARS = 4_000
#: inside the sandbox
INNER_PKG = "/grader/pkg"
INNER_OUT = "/grader/out"
INNER_IN = "/grader/in"
INNER_WORK = "/tmp/work"


def kernel_argv(memory_mb: int | None, cpu_s: int | None, python: str | None = None) -> list[str]:
    """Command line of a resource-limited IPython kernel (``{connection_file}`` is filled in by jupyter_client)."""
    argv = [python or sys.executable, "-m", "diffcl_lite.course.kernel"]
    if memory_mb:
        argv += ["--memory-mb", str(int(memory_mb))]
    if cpu_s:
        argv += ["--cpu-s", str(int(cpu_s))]
    return argv + ["-f", "{connection_file}"]


def _proc_stat(pid: str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (Linux /proc; orphans of a PID namespace stay below its init)."""
    children: dict[int, list[int]] = {}
    if not os.path.isdir("/proc"):  # not Linux: only the process itself
        return [root]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(entry)
            if fields and len(fields) > 1:
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _tree_rss_bytes(root: int) -> tuple[int, int]:
    """Summed resident memory of ``root`` and its descendants, and how many processes that is."""
    page = os.sysconf("SC_PAGE_SIZE")
    total, n = 0, 0
    for pid in descendants(root):
        fields = _proc_stat(str(pid))
        if fields and len(fields) > 21:
            total += int(fields[21]) * page  # rss is field 24 of stat (21 after the command name)
            n += 1
    return total, n


def _alive(pid: int) -> bool:
    fields = _proc_stat(str(pid))
    return bool(fields) and fields[0] not in ("Z", "X")


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system, with reaped children) of a live process, from /proc; None if unknown."""
    fields = _proc_stat(str(pid))
    if not fields:
        return None
    # utime stime cutime cstime are fields 14-17 of stat (11-14 after the command name)
    return round(sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK"), 2)


def kill_session(pid: int | None) -> None:
    """SIGKILL the process group / session led by ``pid`` (a sandbox launcher: its death ends the sandbox)."""
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
        self.pid, self.limit, self.fired, self.peak, self.max_procs = pid, limit_bytes, False, 0, 0
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while True:
            try:
                rss, n = _tree_rss_bytes(self.pid)
            except Exception:  # pragma: no cover - /proc unreadable: nothing to watch
                return
            self.peak = max(self.peak, rss)
            self.max_procs = max(self.max_procs, n)
            if rss > self.limit:
                self.fired = True
                try:
                    os.kill(self.pid, signal.SIGTERM)  # PID 1 kills everything inside at once, then hands over
                except OSError:
                    pass
                deadline = time.monotonic() + 3.0
                while time.monotonic() < deadline and _alive(self.pid):
                    time.sleep(0.02)
                kill_session(self.pid)
                return
            if self._stop_evt.wait(WATCHDOG_PERIOD_S):
                return

    def stop(self) -> None:
        """Stop sampling, after one last sample: what is still running at the end (e.g. a process a cell
        started just before it returned) is counted even where the sampling thread was starved of CPU."""
        self._stop_evt.set()
        try:
            rss, n = _tree_rss_bytes(self.pid)
        except Exception:  # pragma: no cover - /proc unreadable: nothing to add
            return
        self.peak, self.max_procs = max(self.peak, rss), max(self.max_procs, n)


# ---------------------------------------------------------------- the sandbox of a kernel


def _sibling(stem: str) -> Any:
    """``course/<stem>.py`` loaded from its file: this worker runs as a plain script, without the package."""
    name = f"_diffcl_course_{stem}"
    if name not in sys.modules:
        import importlib.util

        spec = importlib.util.spec_from_file_location(name, HERE / f"{stem}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def sandbox_module() -> Any:
    """:mod:`diffcl_lite.course.sandbox`, loaded from its file (no package import, so no torch)."""
    return _sibling("sandbox")


def kernel_env(*, fast: bool = True, threads: int = 1, extra: dict[str, str] | None = None,
               sandboxed: bool = True, work: str = INNER_WORK) -> dict[str, str]:
    """The complete environment of a grading kernel: nothing is inherited from the grader (no paths, no $PWD)."""
    venv_bin = os.path.dirname(sys.executable)
    tmp = "/tmp" if sandboxed else os.path.dirname(work)
    env = {"PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin", "HOME": f"{tmp}/home", "USER": "learner",
           "LOGNAME": "learner", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TMPDIR": tmp, "PWD": work,
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "PYTHONHASHSEED": "0",
           "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{tmp}/mpl", "IPYTHONDIR": f"{tmp}/ipython",
           "JUPYTER_RUNTIME_DIR": f"{tmp}/jupyter", "JUPYTER_CONFIG_DIR": f"{tmp}/jupyter-config",
           "JUPYTER_DATA_DIR": f"{tmp}/jupyter-data", "XDG_CACHE_HOME": f"{tmp}/cache", "NUMBA_CACHE_DIR": f"{tmp}/numba",
           "CUDA_VISIBLE_DEVICES": "", "DIFFCL_DEVICE": "cpu",  # CPU only: parallel runs never compete for a GPU
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "DIFFCL_FAST": "1" if fast else "0", "DIFFCL_GRADING": "1"}
    if sandboxed:
        env["PYTHONPATH"] = INNER_PKG
    env.update(extra or {})
    return env


def sandbox_spec(gdir: Path, *, memory_mb: int | None, nproc: int = 256, disk_mb: int = 512, cpu_s: int | None = None,
                 env: dict[str, str], binds: list[list[str]] | None = None, fsize_mb: int = 256,
                 records_mb: int | None = 128) -> dict[str, Any]:
    """The sandbox of one kernel.

    Shared with the worker: ``gdir/run`` (the kernel's sockets; read-only inside once they exist).
    The records go to ``/grader/out``: a private tmpfs of ``records_mb`` that the worker copies from
    before it ends the sandbox (``records_mb=None``: ``gdir/out`` itself, read-write, for the judge).
    """
    cs = sandbox_module()
    run, out = gdir / "run", gdir / "out"
    root = gdir / "root"
    for d in (run, out, root):
        d.mkdir(exist_ok=True)
    mpl = [[str(p), f"/tmp/mpl/{p.name}"] for p in _matplotlib_caches()]
    shared = [[str(run), str(run), "rw"]] + ([] if records_mb else [[str(out), INNER_OUT, "rw"]])
    spec = {"root": str(root), "root_size_mb": 8, "tmp_size_mb": int(disk_mb),
            "binds": cs.base_binds() + [[p, p, "ro"] for p in cs.python_prefixes()]
            + [[str(PACKAGE_DIR), f"{INNER_PKG}/diffcl_lite", "ro"]] + shared + (binds or []),
            "tmpfs": [[INNER_OUT, int(records_mb)]] if records_mb else [],
            "symlinks": cs.base_symlinks(), "files": cs.base_files(), "copies": mpl,
            "tmp_dirs": ["/tmp/home", INNER_WORK, "/tmp/mpl", "/tmp/ipython", "/tmp/jupyter", "/tmp/cache"],
            "cwd": INNER_WORK, "env": env, "chown": [str(run)] + ([] if records_mb else [str(out)]),
            "limits": {"nproc": nproc, "data_mb": memory_mb, "cpu_s": cpu_s, "fsize_mb": fsize_mb, "nofile": 1024},
            "freeze": {"dir": str(run), "count": 5, "timeout_s": 180}, "log_tail": 8192,
            "collect": {"inner": INNER_OUT, "host": str(out)} if records_mb else None}
    return spec


def init_pid(launcher: int) -> int | None:
    """PID 1 of a sandbox (as the host sees it): the child of its launcher."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(entry)
            if fields and len(fields) > 1 and int(fields[1]) == launcher:
                return int(entry)
    return None


def wait_frozen(pid1: int, folder: str, timeout_s: float = 10.0) -> bool:
    """Wait until the sandbox shows ``folder`` read-only (PID 1 remounts it once the kernel's sockets exist)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid1}/mountinfo", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    parts = line.split()
                    if len(parts) > 5 and parts[4] == folder and "ro" in parts[5].split(","):
                        return True
        except OSError:
            return False
        time.sleep(0.02)
    return False


def _matplotlib_caches() -> list[Path]:
    """The grader's matplotlib font list (copied into each sandbox, so no kernel rebuilds it)."""
    dirs = [os.environ.get("MPLCONFIGDIR"), os.path.join(os.path.expanduser("~"), ".cache", "matplotlib"),
            os.path.join(os.path.expanduser("~"), ".config", "matplotlib")]
    out = []
    for d in dirs:
        if d and os.path.isdir(d):
            out += [Path(d) / f for f in os.listdir(d) if f.startswith("fontlist") and f.endswith(".json")]
    return out[:2]


# ---------------------------------------------------------------- one kernel run


class KernelRun:
    """Execute the code cells of ``nb`` in one kernel, then (optionally) more code in the same kernel.

    ``sandbox``: a spec from :func:`sandbox_spec` (the kernel runs isolated) or None (``--unsafe``:
    the kernel runs with the grader's rights, in ``cwd``).
    """

    def __init__(self, nb: Any, *, gdir: Path, timeout_s: float, memory_mb: int | None = 2048,
                 sandbox: dict[str, Any] | None = None, cwd: str | os.PathLike | None = None,
                 env: dict[str, str] | None = None, python: str | None = None, startup_timeout_s: int = 120):
        self.nb, self.gdir, self.timeout_s, self.memory_mb = nb, Path(gdir), timeout_s, memory_mb
        self.sandbox, self.cwd, self.env, self.python = sandbox, cwd, env, python
        self.startup_timeout_s = startup_timeout_s
        self.report: dict[str, Any] = {"status": "complete", "stopped_at": None, "message": "", "seconds": 0.0,
                                       "startup_seconds": 0.0, "peak_rss_mb": None, "errors": [], "isolated": bool(sandbox)}
        self.sizes: dict[int, int] = {}
        self.total = 0
        self.client: Any = None
        self.km: Any = None
        self.kernel_pid: int | None = None
        self.pid1: int | None = None
        self._stopped = False
        self.watchdog: _Watchdog | None = None
        self._stack: Any = None

    # -- start / stop

    def _argv(self) -> list[str]:
        cpu_s = int(2 * self.timeout_s + self.startup_timeout_s + 60)
        inner = kernel_argv(self.memory_mb, cpu_s=cpu_s, python=self.python)
        if not self.sandbox:
            return inner
        self.sandbox["limits"]["cpu_s"] = self.sandbox["limits"].get("cpu_s") or cpu_s
        spec_path = self.gdir / "sandbox.json"
        spec_path.write_text(json.dumps(self.sandbox))
        return [sys.executable, "-I", str(SANDBOX), str(spec_path), "--", *inner]

    def start(self) -> None:
        """Start the kernel (raises on failure; the report says why)."""
        import contextlib

        import zmq.asyncio
        from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
        from jupyter_client.manager import AsyncKernelManager
        from nbformat.v4 import new_output

        argv = self._argv()
        env = self.env

        class _OneSpec(KernelSpecManager):
            def get_kernel_spec(self, kernel_name: str, *args: Any, **kwargs: Any) -> KernelSpec:
                return KernelSpec(argv=argv, display_name="diffcl-lite grader", language="python", env=env or {})

        run_self = self

        class _CappedClient(_sibling("runner").client_class()):  # type: ignore[misc]
            """The course's notebook runner, capping every output, errors included (a print loop or a huge
            exception must not fill the grader)."""

            def output(self, outs: Any, msg: dict[str, Any], display_id: Any, cell_index: int) -> Any:
                content = msg.get("content", {})
                if msg.get("msg_type") == "error":
                    if len(str(content.get("evalue", ""))) > MAX_ERROR_CHARS:
                        run_self.report["output_capped"] = True
                    content["evalue"] = _cut(str(content.get("evalue", "")), MAX_ERROR_CHARS)
                    content["ename"] = _cut(str(content.get("ename", "")), 200)
                    tb = [str(x) for x in content.get("traceback", [])][-30:]
                    content["traceback"] = [_cut("\n".join(tb), MAX_ERROR_CHARS)]
                size = (len(str(content.get("text", ""))) + sum(len(str(v)) for v in content.get("data", {}).values())
                        + len(str(content.get("evalue", ""))) + sum(len(x) for x in content.get("traceback", [])))
                used = run_self.sizes.get(cell_index, 0)
                run_self.sizes[cell_index] = used + size
                run_self.total += size
                if msg.get("msg_type") != "error" and (used + size > MAX_OUTPUT_CHARS or run_self.total > MAX_TOTAL_CHARS):
                    if used <= MAX_OUTPUT_CHARS and not run_self.report.get("output_capped_" + str(cell_index)):
                        run_self.report["output_capped_" + str(cell_index)] = True
                        run_self.report["output_capped"] = True
                        limit = MAX_OUTPUT_CHARS if used + size > MAX_OUTPUT_CHARS else MAX_TOTAL_CHARS
                        note = f"[grader: output beyond {limit} characters dropped]\n"
                        outs.append(new_output("stream", name="stderr", text=note))
                    return None
                return super().output(outs, msg, display_id, cell_index)

            def on_comm_open_jupyter_widget(self, msg: dict[str, Any]) -> Any:
                # keep the widgets' state, but never mirror ipywidgets.Output into the notebook: nbclient
                # does that by sending comm messages back to the kernel, and a run with an Output widget
                # could then wait until the time limit after its last cell (seen with nbclient 0.11)
                return None

        kwargs: dict[str, Any] = {}
        if self.sandbox:
            run = Path(self.sandbox["freeze"]["dir"])
            kwargs = {"transport": "ipc", "ip": str(run / "k"), "connection_file": str(run / "kernel.json")}
        context = zmq.asyncio.Context()
        context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)  # a bigger message ends the connection, not the worker
        self.km = AsyncKernelManager(kernel_name="diffcl-grader", kernel_spec_manager=_OneSpec(), context=context,
                                     **kwargs)
        cwd = str(self.gdir if self.sandbox else (self.cwd or self.gdir))
        self.client = _CappedClient(self.nb, km=self.km, timeout=None, allow_errors=True,
                                    startup_timeout=self.startup_timeout_s, shutdown_kernel="immediate",
                                    kernel_name="diffcl-grader", resources={"metadata": {"path": cwd}})
        self._stack = contextlib.ExitStack()
        t0 = time.monotonic()
        self.client.reset_execution_trackers()
        self._stack.enter_context(self.client.setup_kernel())
        self.kernel_pid = getattr(self.km.provisioner, "pid", None)
        if self.memory_mb and self.kernel_pid and os.path.isdir("/proc"):
            self.watchdog = _Watchdog(self.kernel_pid, int(self.memory_mb * 1.25 * 2**20))
            self.watchdog.start()
        self.client.wait_for_reply(self.client.kc.kernel_info())
        if self.sandbox and self.kernel_pid:
            self.pid1 = init_pid(self.kernel_pid)
            if not (self.pid1 and wait_frozen(self.pid1, self.sandbox["freeze"]["dir"])):
                raise RuntimeError("the sandbox did not make the kernel's socket folder read-only")
        self.report["startup_seconds"] = round(time.monotonic() - t0, 3)

    def stop(self) -> None:
        """Kill the kernel and everything it started; finish the report (a second call does nothing)."""
        if self._stopped:
            return
        self._stopped = True
        if self.watchdog is not None:
            self.watchdog.stop()
            self.report["peak_rss_mb"] = round(self.watchdog.peak / 2**20, 1)
            self.report["max_processes"] = self.watchdog.max_procs
        if self.kernel_pid:
            cpu = [process_cpu_seconds(p) for p in descendants(self.kernel_pid)]
            self.report["kernel_cpu_seconds"] = round(sum(c for c in cpu if c), 2)
        self.terminate()
        if self._stack is not None:
            try:
                self._stack.close()
            except Exception:  # the kernel is already gone: nbclient's clean-up may complain
                pass
            self._stack = None

    def terminate(self, grace_s: float = 10.0) -> None:
        """End the sandbox: SIGTERM to its launcher (PID 1 kills every process inside and hands over the
        records), SIGKILL if that takes longer than ``grace_s``."""
        pid = self.kernel_pid
        if not pid:
            return
        proc = getattr(self.km.provisioner, "process", None) if self.km is not None else None
        if self.sandbox:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline:
                if proc is not None and proc.poll() is not None:
                    break
                if proc is None and not _alive(pid):
                    break
                time.sleep(0.02)
        kill_session(pid)

    # -- cells

    def start_and_run(self, pid_file: str | os.PathLike | None = None) -> dict[str, Any]:
        """Start the kernel, write its PID to ``pid_file``, run every cell; returns the report (never raises:
        a kernel that does not start ends the run with ``status="kernel-start"`` or ``"memory"``)."""
        try:
            self.start()
        except Exception as exc:
            status = "memory" if self.watchdog is not None and self.watchdog.fired else "kernel-start"
            self.report.update(status=status, message=f"{type(exc).__name__}: {exc}"[:500])
            return self.report
        if pid_file and self.kernel_pid:
            Path(pid_file).write_text(str(self.kernel_pid))
        return self.run_cells()

    def run_cells(self) -> dict[str, Any]:
        """Execute every code cell in order within the time budget; returns the report (never raises)."""
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        report = self.report
        start = time.monotonic()
        deadline = start + self.timeout_s
        try:
            for index, cell in enumerate(self.nb.cells):
                if cell.cell_type != "code":
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    report.update(status="timeout", stopped_at=index,
                                  message=f"time limit of {self.timeout_s:g} s reached before cell {index}")
                    break
                self.client.timeout = max(1, math.ceil(remaining))
                t_cell = time.monotonic()
                try:
                    self.client.execute_cell(cell, index, execution_count=self.client.code_cells_executed + 1)
                    if time.monotonic() - t_cell > 2:
                        report.setdefault("slow_cells", []).append([index, round(time.monotonic() - t_cell, 2)])
                except CellTimeoutError:
                    report.update(status="timeout", stopped_at=index,
                                  message=f"time limit of {self.timeout_s:g} s reached while running cell {index}")
                    self.terminate()
                    break
                except DeadKernelError:
                    self._dead(index)
                    break
                for out in cell.get("outputs", []):
                    if out.get("output_type") == "error":
                        report["errors"].append({"cell": index, "ename": str(out.get("ename", ""))[:200],
                                                 "evalue": str(out.get("evalue", ""))[:500]})
        except Exception as exc:  # zmq trouble, a kernel that vanished between cells
            if self.watchdog is not None and self.watchdog.fired:
                report.update(status="memory", message=f"memory limit of {self.memory_mb} MB exceeded")
            else:
                report.update(status="error", message=f"{type(exc).__name__}: {exc}"[:500])
        report["seconds"] = round(time.monotonic() - start, 3)
        return report

    def _dead(self, index: int) -> None:
        if self.watchdog is not None and self.watchdog.fired:
            self.report.update(status="memory", stopped_at=index,
                               message=f"memory limit of {self.memory_mb} MB exceeded in cell {index}")
        else:
            self.report.update(status="dead", stopped_at=index, message=f"the kernel died while running cell {index}")

    def run_code(self, source: str, timeout_s: float) -> str | None:
        """Execute ``source`` in the same kernel (the judge's requests); None when it ran, else the error."""
        from nbclient.exceptions import CellTimeoutError, DeadKernelError
        from nbformat.v4 import new_code_cell

        cell = new_code_cell(source)
        self.nb.cells.append(cell)
        index = len(self.nb.cells) - 1
        self.client.timeout = max(1, math.ceil(timeout_s))
        try:
            self.client.execute_cell(cell, index, store_history=False)
        except CellTimeoutError:
            return f"no answer within {timeout_s:g} s"
        except DeadKernelError:
            return "the kernel died"
        finally:
            self.nb.cells.pop()
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"{out.get('ename', '')}: {out.get('evalue', '')}"[:500]
        return None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters cut by the grader]"


def execute(nb: Any, cwd: str | os.PathLike, *, timeout_s: float, memory_mb: int | None = 2048,
            python: str | None = None, pid_file: str | os.PathLike | None = None,
            startup_timeout_s: int = 120, sandbox: dict[str, Any] | None = None, gdir: str | os.PathLike | None = None,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    """Execute the code cells of ``nb`` in order, outputs written into ``nb``; never raises for the notebook's faults.

    Returns a report: ``status`` (``complete``, ``timeout``, ``memory``, ``dead``, ``kernel-start``,
    ``error``), ``stopped_at`` (index of the cell that was running when the run ended early),
    ``message``, ``seconds`` (cell time), ``startup_seconds``, ``peak_rss_mb``, ``max_processes``,
    ``errors`` (``[{"cell": i, "ename": ..., "evalue": ...}]`` for cells that raised).
    Without ``sandbox`` the kernel runs unisolated in ``cwd`` (student-copy checks, ``--unsafe``).
    """
    run = KernelRun(nb, gdir=Path(gdir or cwd), timeout_s=timeout_s, memory_mb=memory_mb, sandbox=sandbox, cwd=cwd,
                    env=env, python=python, startup_timeout_s=startup_timeout_s)
    try:
        return run.start_and_run(pid_file)
    finally:
        run.stop()


def _die_with_parent() -> None:
    """SIGKILL this worker when the grader that started it ends (Linux; a no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _write_json(path: str, data: Any) -> None:
    tmp = Path(path + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Worker entry point: ``python worker.py TASK.json``.

    TASK.json keys: notebook, gdir, timeout_s, memory_mb, out_notebook, out_report, pid_file, sandbox
    (a spec or null), env, cwd; ``judge``: after the cells, run ``judge.ready`` in the same kernel, print
    one line ``READY`` and then answer requests read from stdin (one JSON object per line, ``{"code": ...,
    "timeout_s": ...}``) with one JSON line each (``{"error": null | text}``) until stdin closes.
    """
    import nbformat

    args = sys.argv[1:] if argv is None else argv
    task = json.loads(Path(args[0]).read_text())
    if task.get("die_with_parent"):
        _die_with_parent()
    nb = nbformat.read(task["notebook"], as_version=4)
    run = KernelRun(nb, gdir=Path(task["gdir"]), timeout_s=float(task["timeout_s"]), memory_mb=task.get("memory_mb"),
                    sandbox=task.get("sandbox"), cwd=task.get("cwd"), env=task.get("env"))
    try:
        run.start_and_run(task.get("pid_file"))
        judge = task.get("judge")
        if judge and run.report["status"] == "complete":
            run.report["judge_error"] = run.run_code(judge["ready"], float(judge.get("timeout_s", 300)))
        if not judge:
            run.stop()  # the sandbox hands over its records; the report gets the peak memory and processes
        import resource

        me = resource.getrusage(resource.RUSAGE_SELF)
        run.report["worker_cpu_seconds"] = round(me.ru_utime + me.ru_stime, 2)
        nbformat.write(nb, task["out_notebook"])
        _write_json(task["out_report"], run.report)
        if judge:
            print("READY", flush=True)
            if run.report["status"] == "complete" and not run.report.get("judge_error"):
                for line in sys.stdin:
                    try:
                        req = json.loads(line)
                        err = run.run_code(str(req["code"]), float(req.get("timeout_s", 120)))
                    except Exception as exc:  # a malformed request: answer, keep serving
                        err = f"{type(exc).__name__}: {exc}"
                    print(json.dumps({"error": err}), flush=True)
                    if err in ("the kernel died",) or (err or "").startswith("no answer within"):
                        break
    finally:
        run.stop()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("traitlets").setLevel(logging.CRITICAL)  # "kernel died" / zmq clean-up chatter
    raise SystemExit(main())
