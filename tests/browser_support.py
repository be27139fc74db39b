"""Helpers for tests/test_browser.py: a throw-away JupyterLab server, headless Chromium, Lab page driving.

Nothing here downloads a browser: Playwright's Python package drives Debian's ``chromium``
(``/usr/bin/chromium``) through ``executable_path``. The server is started in its own process group
and always stopped by its own PID (REST shutdown, then SIGTERM/SIGKILL to the group and to the
kernels it started).
"""
from __future__ import annotations

import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures" / "browser"
KERNEL_NAME = "diffcl-lite"
KERNEL_DISPLAY = "Python (diffcl-lite)"
CHROMIUM = Path(os.environ.get("DIFFCL_CHROMIUM", "/usr/bin/chromium"))
# A fresh profile and no background traffic: the closed network refuses anything else.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
WIDGET_ERROR_TEXTS = ("Error displaying widget", "model not found")


def browser_skip_reason() -> str | None:
    """Why the browser tests cannot run here (``None`` when they can)."""
    if not CHROMIUM.exists():
        return (f"{CHROMIUM} not found: install Debian's chromium (`apt-get install -y chromium`, as .ci/run does) "
                "or point DIFFCL_CHROMIUM at a Chromium binary")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is missing (pip install -e '.[test]'); never run `playwright install`"
    return None


def jupyter_skip_reason(venv_bin: Path) -> str | None:
    """Why JupyterLab cannot be started from ``venv_bin`` (``None`` when it can)."""
    if not (venv_bin / "jupyter-lab").exists():
        return f"{venv_bin / 'jupyter-lab'} not found: run `make install`"
    return None


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def venv_bin() -> Path:
    """The ``bin/`` folder of the interpreter running the tests (the project's venv under ``make test``)."""
    return Path(sys.executable).parent


# ---------------------------------------------------------------------------------------------
# JupyterLab server
# ---------------------------------------------------------------------------------------------
# User settings for the throw-away Lab: every cell in the DOM (no windowing, so off-screen outputs
# can be inspected), no news/update pop-ups.
LAB_USER_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
}


def _descendants(pid: int) -> list[int]:
    """PIDs of all processes below ``pid`` (from /proc; empty where /proc is missing)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is as good as gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@dataclass
class LabServer:
    """A running JupyterLab started by :func:`jupyter_lab`."""

    proc: subprocess.Popen
    port: int
    token: str
    root_dir: Path
    log_path: Path
    kernel_pids: set[int] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/{path.lstrip('/')}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET", timeout: float = 5.0) -> Any:
        req = urllib.request.Request(f"{self.base_url}/api/{path.lstrip('/')}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "<no server log>"

    def remember_kernels(self) -> None:
        """Note the PIDs of the kernels the server started (they run in their own sessions)."""
        self.kernel_pids.update(_descendants(self.proc.pid))

    def stop(self, grace: float = 5.0) -> None:
        """Stop the server and its kernels: REST shutdown, then SIGTERM, then SIGKILL, all by PID."""
        proc = self.proc
        self.remember_kernels()
        if proc.poll() is None:
            try:
                self.api("shutdown", method="POST", timeout=3)
            except (OSError, urllib.error.URLError, ValueError):
                pass
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)  # its own group (start_new_session=True)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
        # Kernels run in sessions of their own: end the ones this server started if they outlived it.
        deadline = time.monotonic() + grace
        left = [p for p in self.kernel_pids if _alive(p)]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in left:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            while left and time.monotonic() < deadline:
                time.sleep(0.1)
                left = [p for p in left if _alive(p)]
            deadline = time.monotonic() + 2
        if proc.poll() is None:  # pragma: no cover - SIGKILL cannot be refused
            proc.kill()
            proc.wait(5)


@contextmanager
def jupyter_lab(root_dir: Path, env: dict[str, str] | None = None, startup_timeout: float = 60.0,
                attempts: int = 3) -> Iterator[LabServer]:
    """Start ``jupyter lab`` on 127.0.0.1 (random port and token) serving ``root_dir``; always stop it.

    Lab settings, workspaces and runtime files go to a temporary folder, so the test neither reads
    nor writes the user's. ``env`` is added to the server's environment (kernels inherit it).
    """
    jupyter = venv_bin() / "jupyter-lab"
    work = Path(tempfile.mkdtemp(prefix="diffcl-lab-"))
    settings = work / "settings"
    for rel, value in LAB_USER_SETTINGS.items():
        path = settings / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    full_env = dict(os.environ)
    full_env.update({
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
        "PYTHONUNBUFFERED": "1",
        # kernels find the venv's interpreter first
        "PATH": f"{venv_bin()}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    full_env.update(env or {})
    server: LabServer | None = None
    try:
        last_error = ""
        for attempt in range(attempts):
            port, token = free_port(), secrets.token_hex(24)
            log_path = work / f"server-{attempt}.log"
            cmd = [str(jupyter), "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                   "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
                   f"--ServerApp.root_dir={root_dir}", "--LabApp.expose_app_in_browser=True",
                   "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                   "--ServerApp.terminals_enabled=False", "--LanguageServerManager.autodetect=False"]
            if hasattr(os, "getuid") and os.getuid() == 0:
                cmd.append("--allow-root")
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(cmd, cwd=root_dir, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            server = LabServer(proc, port, token, Path(root_dir), log_path)
            if _wait_ready(server, startup_timeout):
                break
            last_error = server.log_tail()
            server.stop()
            server = None
        if server is None:
            raise RuntimeError(f"JupyterLab did not start in {attempts} attempts; last log:\n{last_error}")
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def _wait_ready(server: LabServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return False
        try:
            server.api("status", timeout=2)
            spec = server.api("kernelspecs", timeout=5)
            if KERNEL_NAME not in spec.get("kernelspecs", {}):
                raise RuntimeError(f"JupyterLab does not list the {KERNEL_NAME!r} kernel "
                                   f"(found {sorted(spec.get('kernelspecs', {}))}); run `make install`, which "
                                   f"registers it with `ipykernel install --sys-prefix --name {KERNEL_NAME}`.")
            return True
        except (OSError, urllib.error.URLError, ValueError):
            time.sleep(0.25)
    return False


# ---------------------------------------------------------------------------------------------
# Browser
# ---------------------------------------------------------------------------------------------
@contextmanager
def chromium(viewport: tuple[int, int] = (1280, 900)) -> Iterator[Any]:
    """A headless Chromium context (fresh user-data-dir) driven by Playwright; closed on exit."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="diffcl-chromium-")
    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=1,
            )
            try:
                yield ctx
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def block_non_local(context: Any) -> list[str]:
    """Abort every request that is not for localhost; returns the (live) list of blocked URLs."""
    blocked: list[str] = []

    def handle(route: Any) -> None:
        url = route.request.url
        parsed = urlparse(url)
        if parsed.scheme in ("data", "blob", "about", "file") or parsed.hostname in ("127.0.0.1", "localhost", "::1"):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    context.route("**/*", handle)
    return blocked


@contextmanager
def serve_directory(path: Path) -> Iterator[str]:
    """Serve ``path`` over HTTP on 127.0.0.1 (random port) from a thread; yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(path)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


# ---------------------------------------------------------------------------------------------
# Driving a notebook in JupyterLab (through window.jupyterapp, exposed by expose_app_in_browser)
# ---------------------------------------------------------------------------------------------
JS_PANEL = """(name) => {
  const app = window.jupyterapp;
  if (!app) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path && w.context.path.endsWith(name) && w.content && w.sessionContext) return w;
  }
  return null;
}"""

JS_STATE = """(name) => {
  const find = %s;
  const panel = find(name);
  if (!panel) return {ready: false, why: 'no panel'};
  const sc = panel.sessionContext;
  const kernel = sc.session && sc.session.kernel;
  const cells = [];
  for (const cell of panel.content.widgets) {
    const m = cell.model;
    if (m.type !== 'code') continue;
    const outs = m.outputs.toJSON();
    cells.push({count: m.executionCount, errors: outs.filter(o => o.output_type === 'error')
                .map(o => o.ename + ': ' + o.evalue), types: outs.map(o => o.output_type),
                source: m.sharedModel.getSource().slice(0, 80)});
  }
  return {ready: panel.context.isReady && sc.isReady, kernel: kernel ? kernel.name : null,
          status: kernel ? kernel.status : null, pending: sc.pendingInput, dirty: panel.context.model.dirty,
          cells: cells, hasDialog: !!document.querySelector('.jp-Dialog'),
          busyPrompts: Array.from(panel.node.querySelectorAll('.jp-InputPrompt'))
                         .filter(p => p.textContent.includes('*')).length};
}""" % JS_PANEL


@dataclass
class RunResult:
    seconds: float
    cells: list[dict[str, Any]]
    kernel: str | None

    @property
    def errors(self) -> list[str]:
        return [f"code cell {i + 1}, In [{c['count']}] ({c['source']!r}): {e[:500]}"
                for i, c in enumerate(self.cells) for e in c["errors"]]


def open_notebook(page: Any, server: LabServer, name: str, timeout: float = 120.0) -> None:
    """Open ``name`` in Lab and wait until its ``diffcl-lite`` kernel is idle (picks it in the dialog if asked).

    The first notebook loads Lab (``/lab/tree/<name>``); later ones open in the same Lab page with
    the ``docmanager:open`` command, which saves loading Lab's scripts again.
    """
    loaded = page.url.startswith(f"{server.base_url}/lab") and page.evaluate("() => !!window.jupyterapp")
    if loaded:
        page.evaluate("async (name) => { await window.jupyterapp.commands.execute('docmanager:open', "
                      "{path: name, factory: 'Notebook'}); return true; }", name)
    else:
        page.goto(server.url(f"lab/tree/{name}"), wait_until="domcontentloaded")
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started !== undefined",
                               timeout=timeout * 1000)
    deadline = time.monotonic() + timeout
    picked = False
    while time.monotonic() < deadline:
        state = page.evaluate(JS_STATE, name)
        if state.get("hasDialog") and not picked:
            picked = choose_kernel_in_dialog(page)
        if state.get("ready") and state.get("kernel") == KERNEL_NAME and state.get("status") == "idle":
            return
        if state.get("ready") and state.get("kernel") not in (None, KERNEL_NAME):
            raise AssertionError(f"{name} opened with kernel {state.get('kernel')!r}, not {KERNEL_NAME!r}; the "
                                 f"notebook metadata must name kernelspec {KERNEL_NAME!r}.")
        time.sleep(0.2)
    raise AssertionError(f"{name}: the {KERNEL_NAME} kernel was not idle after {timeout:.0f} s; last state "
                         f"{ {k: v for k, v in state.items() if k != 'cells'} }")


def choose_kernel_in_dialog(page: Any) -> bool:
    """Answer a 'Select Kernel' dialog with Python (diffcl-lite); False when the dialog is something else."""
    dialog = page.locator(".jp-Dialog")
    select = dialog.locator("select")
    if select.count() == 0:
        return False
    options = select.first.locator("option").all_text_contents()
    label = next((o for o in options if KERNEL_DISPLAY in o or KERNEL_NAME in o), None)
    if label is None:
        raise AssertionError(f"kernel dialog offers {options}, not {KERNEL_DISPLAY!r}; run `make install`.")
    select.first.select_option(label=label)
    dialog.locator(".jp-Dialog-button.jp-mod-accept").first.click()
    return True


def run_all_cells(page: Any, name: str, timeout: float = 300.0) -> RunResult:
    """Run every cell (Lab's 'Run All Cells' command) and wait for the kernel to finish.

    Finished means: kernel idle, no ``[*]`` prompt, and every code cell executed -- or a cell
    raised (Lab stops the run there), which the caller reports.
    """
    t0 = time.monotonic()
    # Clear saved outputs and execution counts first (the committed notebooks keep their counts),
    # then start the run without awaiting it, so a hanging cell ends in this function's timeout.
    page.evaluate("""async (name) => { const find = %s; const panel = find(name);
        const app = window.jupyterapp; app.shell.activateById(panel.id);
        await app.commands.execute('notebook:clear-all-cell-outputs');
        for (const cell of panel.content.widgets) { if (cell.model.type === 'code') cell.model.executionCount = null; }
        app.commands.execute('notebook:run-all-cells');
        return true; }""" % JS_PANEL, name)
    state: dict[str, Any] = {}
    stable = 0
    while time.monotonic() - t0 < timeout:
        time.sleep(0.25)
        state = page.evaluate(JS_STATE, name)
        done_cells = all(c["count"] is not None for c in state["cells"])
        errored = any(c["errors"] for c in state["cells"])
        idle = state["status"] == "idle" and state["busyPrompts"] == 0
        stable = stable + 1 if idle and (done_cells or errored) else 0
        if stable >= 3:  # idle for 3 polls in a row: no queued cell is about to start
            return RunResult(time.monotonic() - t0, state["cells"], state["kernel"])
    pending = [c["source"] for c in state.get("cells", []) if c["count"] is None]
    raise AssertionError(f"{name}: cells still running after {timeout:.0f} s (kernel {state.get('status')}); "
                         f"not executed: {pending[:3]}")


def widget_error_texts(page: Any, name: str) -> list[str]:
    """Text of rendered outputs that says a widget could not be displayed."""
    texts = page.evaluate("""(name) => { const find = %s; const panel = find(name);
        return Array.from(panel.node.querySelectorAll('.jp-OutputArea-output')).map(n => n.innerText); }"""
                          % JS_PANEL, name)
    return [t.strip()[:200] for t in texts if any(e.lower() in t.lower() for e in WIDGET_ERROR_TEXTS)]


def plotly_figures(page: Any, root_selector: str = "body") -> list[dict[str, Any]]:
    """Plotly figures drawn on the page: size of their SVG and number of drawn points/traces."""
    return page.evaluate("""(sel) => Array.from(document.querySelectorAll(sel + ' .js-plotly-plot')).map(g => {
        const svg = g.querySelector('svg.main-svg'); const r = svg ? svg.getBoundingClientRect() : null;
        return {svg: !!svg, width: r ? r.width : 0, height: r ? r.height : 0,
                traces: g.querySelectorAll('.scatterlayer .trace, .barlayer .trace, .heatmaplayer .hm').length,
                points: g.querySelectorAll('.scatterlayer .point').length}; })""", root_selector)


@dataclass
class SliderHandle:
    """A slider found in the page: its index among ``.widget-slider`` elements and its label."""

    index: int
    label: str
    value: str


def wait_for_plotly(page: Any, timeout: float = 20.0, root_selector: str = "body") -> list[dict[str, Any]]:
    """Plotly figures once at least one has drawn data into its SVG (plotly draws asynchronously)."""
    deadline = time.monotonic() + timeout
    figures: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        figures = plotly_figures(page, root_selector)
        if any(plotly_drawn(f) for f in figures):
            return figures
        time.sleep(0.25)
    return figures


def plotly_drawn(fig: dict[str, Any]) -> bool:
    """A figure whose SVG has a real size and at least one trace or point."""
    return bool(fig["svg"] and fig["width"] > 50 and fig["height"] > 50 and (fig["points"] > 0 or fig["traces"] > 0))


def find_slider(page: Any, arg: str = "t", root_selector: str = "body", timeout: float = 20.0) -> SliderHandle:
    """The slider driving argument ``arg``.

    Tried in order: CSS class ``diffcl-control-<arg>``; description exactly ``arg`` (or ``$arg$``);
    description starting with ``arg`` ("t (step)"); ``arg`` as a word of the description ("step t");
    the only slider on the page. Waits up to ``timeout`` s for widgets to render."""
    try:
        page.wait_for_selector(f"{root_selector} .widget-slider", state="attached", timeout=timeout * 1000)
    except Exception:  # noqa: BLE001 - reported below with what is there
        pass
    sliders = page.evaluate("""(sel) => Array.from(document.querySelectorAll(sel + ' .widget-slider')).map((s, i) => ({
        index: i, label: (s.querySelector('.widget-label') || {innerText: ''}).innerText.trim(),
        classes: s.className, value: (s.querySelector('.widget-readout') || {innerText: ''}).innerText.trim()}))""",
                            root_selector)
    if not sliders:
        raise AssertionError("no ipywidgets slider (.widget-slider) is rendered on the page")
    pattern = re.compile(rf"^\$?{re.escape(arg)}\$?(\b|$)")
    for how in (lambda s: f"diffcl-control-{arg}" in s["classes"].split(),
                lambda s: s["label"] == arg or s["label"].replace("\\(", "").replace("\\)", "") == arg,
                lambda s: bool(pattern.match(s["label"])),
                lambda s: arg in re.findall(r"[A-Za-z_][A-Za-z_0-9]*", s["label"])):
        hits = [s for s in sliders if how(s)]
        if hits:
            return SliderHandle(hits[0]["index"], hits[0]["label"], hits[0]["value"])
    if len(sliders) == 1:
        s = sliders[0]
        return SliderHandle(s["index"], s["label"], s["value"])
    raise AssertionError(f"no slider labelled {arg!r} among {[s['label'] for s in sliders]}; give the control "
                         f"description={arg!r}")


JS_WIDGET_OUTPUT = """([sel, idx]) => {
  const slider = document.querySelectorAll(sel + ' .widget-slider')[idx];
  let box = slider;
  while (box && !(box.querySelector && box.querySelector('.widget-output'))) box = box.parentElement;
  if (!box) return null;
  const out = box.querySelector('.widget-output');
  const imgs = Array.from(out.querySelectorAll('img')).map(i => (i.getAttribute('src') || '').slice(-200) + ':' + (i.getAttribute('src') || '').length);
  const svgs = Array.from(out.querySelectorAll('svg')).map(s => s.outerHTML.length + ':' + s.outerHTML.slice(-200));
  return {imgs, svgs, text: out.innerText.slice(0, 500)};
}"""


def widget_output_signature(page: Any, slider: SliderHandle, root_selector: str = "body") -> dict[str, Any] | None:
    """What the Output widget next to ``slider`` currently shows (image tails, SVGs, text)."""
    return page.evaluate(JS_WIDGET_OUTPUT, [root_selector, slider.index])


def wait_for_widget_output(page: Any, slider: SliderHandle, root_selector: str = "body",
                           timeout: float = 20.0) -> dict[str, Any] | None:
    """The Output widget next to ``slider`` once it shows a figure (image or SVG); ``None``-ish if it never does."""
    deadline = time.monotonic() + timeout
    sig = None
    while time.monotonic() < deadline:
        sig = widget_output_signature(page, slider, root_selector)
        if sig and (sig["imgs"] or sig["svgs"]):
            return sig
        time.sleep(0.2)
    return sig


def move_slider(page: Any, slider: SliderHandle, steps: int = 5, root_selector: str = "body") -> str:
    """Move the slider ``steps`` to the right with the keyboard (as a learner would); returns the new readout."""
    handle = page.locator(f"{root_selector} .widget-slider").nth(slider.index).locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    handle.focus()
    for _ in range(steps):
        handle.press("ArrowRight")
    readout = page.locator(f"{root_selector} .widget-slider").nth(slider.index).locator(".widget-readout").first
    return readout.inner_text().strip()


def wait_for_change(page: Any, slider: SliderHandle, before: Any, timeout: float = 20.0,
                    root_selector: str = "body") -> Any:
    """Poll the widget output until it differs from ``before`` (and is not empty); returns it."""
    deadline = time.monotonic() + timeout
    now = before
    while time.monotonic() < deadline:
        now = widget_output_signature(page, slider, root_selector)
        if now and now != before and (now["imgs"] or now["svgs"] or now["text"].strip()):
            return now
        time.sleep(0.2)
    raise AssertionError(f"the output next to slider {slider.label!r} did not change within {timeout:.0f} s "
                         f"after moving it (still {str(now)[:300]})")


def scroll_to(page: Any, selector: str, cell: bool = True) -> None:
    """Scroll the first element matching ``selector`` into view (Lab scrolls inside the notebook panel).

    With ``cell`` the whole notebook cell holding it is scrolled to the top (code, controls and plot
    in view). ``selector`` may start with a panel selector, e.g. ``f"{panel_selector(page, name)} .widget-slider"``."""
    page.evaluate("""([sel, cell]) => { let e = document.querySelector(sel); if (!e) return;
        if (cell && e.closest('.jp-Cell')) e = e.closest('.jp-Cell');
        e.scrollIntoView({block: cell ? 'start' : 'center'}); }""", [selector, cell])


def panel_selector(page: Any, name: str) -> str:
    """CSS selector of the notebook's panel (scopes DOM queries to one open notebook)."""
    sel = page.evaluate("""(name) => { const find = %s; const p = find(name);
        return p ? '#' + CSS.escape(p.id) : null; }""" % JS_PANEL, name)
    if not sel:
        raise AssertionError(f"{name} is not open in JupyterLab")
    return sel


def close_notebook(page: Any, name: str) -> None:
    """Shut down the notebook's kernel and close its tab without saving (frees a core for the next one)."""
    try:
        page.evaluate("""async (name) => { const find = %s; const p = find(name);
            if (!p) return;
            if (p.sessionContext.session) { await p.sessionContext.shutdown(); }
            p.context.model.dirty = false; p.dispose(); }""" % JS_PANEL, name)
    except Exception:  # noqa: BLE001 - best effort, the server stop ends the kernels anyway
        pass


def wait_idle(page: Any, name: str, timeout: float = 20.0) -> None:
    """Wait until the notebook's kernel stays idle (e.g. after slider redraws, before a screenshot)."""
    deadline = time.monotonic() + timeout
    idle_polls = 0
    while time.monotonic() < deadline:
        idle = page.evaluate(JS_STATE, name).get("status") == "idle"
        idle_polls = idle_polls + 1 if idle else 0
        if idle_polls >= 5:  # idle for ~1 s: queued redraws (one per slider step) are done
            return
        time.sleep(0.2)
