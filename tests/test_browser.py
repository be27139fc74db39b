"""The course as a learner sees it: notebooks in a real JupyterLab in headless Chromium, and the static site.

Browser tests (marked ``browser``) skip with a reason when ``/usr/bin/chromium`` or the playwright
package is missing. They start a throw-away JupyterLab on 127.0.0.1 (random port and token, fast
mode, a temporary copy of ``notebooks/``), run every cell of the forward-diffusion notebook and of
the embedding atlas, and check what is drawn: no cell error, no broken widget, the plotly figure's
SVG, and a plot that changes when the ``t`` slider moves. Screenshots go to the test's temporary
folder; ``DIFFCL_UPDATE_SCREENSHOTS=1`` writes them to ``figures/screenshot_*.png`` instead.

The site test builds one page with :mod:`diffcl_lite.course.site` and opens it with every non-local request
blocked. The tests at the bottom (no browser) check the offline rewriting of the site's HTML.
"""
from __future__ import annotations

import io
import os
import shutil
import tarfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import browser_support as bs

REPO = bs.REPO_ROOT
NOTEBOOKS = REPO / "notebooks"
FIXTURE_NB = bs.FIXTURE_DIR / "browser_fixture.ipynb"
SCREENSHOT_DIR_ENV = "DIFFCL_UPDATE_SCREENSHOTS"
BROWSER_CONSOLE: list[str] = []  # console messages of the Lab page, printed when a check fails

# What each notebook must show in JupyterLab: the slider argument that must change the plot, and
# whether a plotly figure must be drawn.
LAB_CASES = {
    "03_forward_diffusion.ipynb": {"slider": "t", "plotly": False, "screenshot": "screenshot_03_forward_diffusion"},
    "07_embedding_atlas.ipynb": {"slider": None, "plotly": True, "screenshot": "screenshot_07_embedding_atlas"},
}


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser_ready() -> None:
    reason = bs.browser_skip_reason() or bs.jupyter_skip_reason(bs.venv_bin())
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary copy of notebooks/ (plus the browser fixture): the test never writes into the repo."""
    root = tmp_path_factory.mktemp("lab-root")
    if NOTEBOOKS.is_dir():
        shutil.copytree(NOTEBOOKS, root, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    shutil.copy(FIXTURE_NB, root / FIXTURE_NB.name)
    return root


@pytest.fixture(scope="module")
def lab(browser_ready: None, lab_root: Path) -> Iterator[bs.LabServer]:
    """JupyterLab in fast mode; stopped by PID (process group + its kernels) even when a test fails."""
    with bs.jupyter_lab(lab_root, env={"DIFFCL_FAST": "1"}) as server:
        yield server


@pytest.fixture(scope="module")
def browser(browser_ready: None) -> Iterator[Any]:
    with bs.chromium() as context:
        bs.block_non_local(context)
        yield context


@pytest.fixture(scope="module")
def lab_page(browser: Any) -> Iterator[Any]:
    """One JupyterLab page for all notebooks (Lab's scripts load once); console kept for failure reports."""
    page = browser.new_page()
    BROWSER_CONSOLE.clear()
    page.on("console", lambda m: BROWSER_CONSOLE.append(f"{m.type}: {m.text}"))
    try:
        yield page
    finally:
        page.close()


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    if os.environ.get(SCREENSHOT_DIR_ENV, "") not in ("", "0"):
        out = REPO / "figures"
        out.mkdir(exist_ok=True)
        return out
    return tmp_path


def _check_in_lab(lab: bs.LabServer, page: Any, name: str, slider_arg: str | None, plotly: bool,
                  shot: Path | None, fail_dir: Path) -> dict[str, float]:
    """Open ``name`` in Lab, run all cells and check errors, widgets, plotly and the slider."""
    timings: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        bs.open_notebook(page, lab, name)
        timings["open+kernel"] = time.monotonic() - t0
        result = bs.run_all_cells(page, name)
        timings["run all"] = result.seconds
        lab.remember_kernels()
        root = bs.panel_selector(page, name)
        assert result.kernel == bs.KERNEL_NAME
        cell_errors = result.errors
        assert not cell_errors, f"{name}: cells raised in JupyterLab:\n" + "\n".join(cell_errors)
        not_run = [c["source"] for c in result.cells if c["count"] is None]
        assert not not_run, f"{name}: code cells that did not run: {not_run}"
        widget_errors = bs.widget_error_texts(page, name)
        assert not widget_errors, f"{name}: widgets not displayed: {widget_errors}"
        if plotly:
            figures = bs.wait_for_plotly(page, root_selector=root)
            assert figures, f"{name}: no plotly figure (.js-plotly-plot) in the page"
            assert any(bs.plotly_drawn(f) for f in figures), f"{name}: plotly figures without a drawn SVG: {figures}"
        figures = bs.plotly_figures(page, root)
        if slider_arg:
            slider = bs.find_slider(page, slider_arg, root_selector=root)
            before = bs.wait_for_widget_output(page, slider, root)
            assert before and (before["imgs"] or before["svgs"]), \
                f"{name}: the output under slider {slider.label!r} shows no figure: {before}"
            t1 = time.monotonic()
            value = bs.move_slider(page, slider, steps=5, root_selector=root)
            assert value != slider.value, f"{name}: slider {slider.label!r} did not move (still {value})"
            bs.wait_for_change(page, slider, before, root_selector=root)
            timings["slider redraw"] = time.monotonic() - t1
            assert not bs.widget_error_texts(page, name)
            bs.scroll_to(page, f"{root} .widget-slider")
        elif figures:
            bs.scroll_to(page, f"{root} .js-plotly-plot")
        if shot is not None:
            # only this notebook in view: file browser collapsed, launcher tabs closed
            page.evaluate("""() => { const app = window.jupyterapp; app.shell.collapseLeft();
                for (const w of Array.from(app.shell.widgets('main'))) { if (w.id.startsWith('launcher')) w.dispose(); } }""")
            bs.wait_idle(page, name)
            page.wait_for_timeout(300)
            page.screenshot(path=str(shot))
        return timings
    except BaseException:
        fail_shot = fail_dir / f"FAILED_{Path(name).stem}.png"
        try:
            page.screenshot(path=str(fail_shot))
        except Exception:  # noqa: BLE001
            pass
        print(f"screenshot of the failure: {fail_shot}\nserver log tail:\n{lab.log_tail(2000)}\n"
              "browser console (last 30):\n" + "\n".join(BROWSER_CONSOLE[-30:]))
        raise
    finally:
        bs.close_notebook(page, name)


# ---------------------------------------------------------------------------------------------
# JupyterLab
# ---------------------------------------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.parametrize("name", list(LAB_CASES))
def test_notebook_in_jupyterlab(name: str, lab_root: Path, lab: bs.LabServer, lab_page: Any, screenshot_dir: Path,
                                tmp_path: Path) -> None:
    if not (lab_root / name).exists():
        pytest.skip(f"notebooks/{name} does not exist yet")
    case = LAB_CASES[name]
    timings = _check_in_lab(lab, lab_page, name, case["slider"], case["plotly"],
                            screenshot_dir / f"{case['screenshot']}.png", tmp_path)
    print(f"{name}: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))


@pytest.mark.browser
def test_harness_on_fixture_notebook(lab_root: Path, lab: bs.LabServer, lab_page: Any, tmp_path: Path) -> None:
    """The harness itself, on a small notebook with a ``t`` slider and a plotly figure.

    Skipped once both lesson notebooks exist (they exercise the same code), unless
    ``DIFFCL_BROWSER_SELFTEST=1``.
    """
    if all((lab_root / n).exists() for n in LAB_CASES) and os.environ.get("DIFFCL_BROWSER_SELFTEST", "") in ("", "0"):
        pytest.skip("the lesson notebooks exercise the harness; DIFFCL_BROWSER_SELFTEST=1 runs the fixture too")
    timings = _check_in_lab(lab, lab_page, FIXTURE_NB.name, "t", True, None, tmp_path)
    print(f"{FIXTURE_NB.name}: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))


# ---------------------------------------------------------------------------------------------
# Static site
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site_dir(browser_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-page site built from the fixture notebook (fast mode) with diffcl_lite.course.site."""
    from diffcl_lite.course.site import SiteBuildError, build_site

    work = tmp_path_factory.mktemp("site-src")
    src = work / "01_browser_fixture.ipynb"
    shutil.copy(FIXTURE_NB, src)
    out = tmp_path_factory.mktemp("site")
    try:
        build_site(out_dir=out, mode="fast", paths=[src])
    except SiteBuildError as exc:
        if "Could not fetch" in str(exc):
            pytest.skip(f"offline scripts unavailable (no npm registry and no cache): {exc}")
        raise
    return out


@pytest.mark.browser
def test_site_page_renders_offline(site_dir: Path, browser: Any, tmp_path: Path) -> None:
    """The built page draws its plotly figure, its widget (slider + output image) and its equations with
    every request to another host blocked."""
    page_name = "01_browser_fixture.html"
    html = (site_dir / page_name).read_text(encoding="utf-8")
    for marker in ("cdn.", "unpkg", "jsdelivr"):
        assert marker not in html, f"{page_name} mentions {marker!r}"
    with bs.serve_directory(site_dir) as base:
        context_blocked: list[str] = []
        page = browser.new_page()
        page.route("**/*", lambda route: (context_blocked.append(route.request.url), route.abort())
                   if not route.request.url.startswith(base) else route.fallback())
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.goto(f"{base}/{page_name}", wait_until="load")
            page.wait_for_selector(".js-plotly-plot svg.main-svg", timeout=20_000)
            page.wait_for_selector(".widget-slider", timeout=20_000)
            page.wait_for_selector(".widget-output img", timeout=20_000)
            page.wait_for_selector("mjx-container, .MathJax_CHTML, .mjx-chtml", timeout=20_000)
            figures = bs.plotly_figures(page)
            assert any(f["points"] > 0 and f["width"] > 50 for f in figures), figures
            slider = bs.find_slider(page, "t")
            assert slider.value == "10", slider
            body = page.inner_text("body")
            assert not any(t.lower() in body.lower() for t in bs.WIDGET_ERROR_TEXTS), body[:500]
            page.goto(f"{base}/index.html", wait_until="load")
            assert page.locator(f'a[href="{page_name}"]').count() == 1
        except BaseException:
            page.screenshot(path=str(tmp_path / "FAILED_site.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'FAILED_site.png'}; page errors: {errors}")
            raise
        finally:
            page.close()
    assert not context_blocked, f"the page tried to load from other hosts: {context_blocked}"
    assert not errors, f"JavaScript errors on the page: {errors}"


# ---------------------------------------------------------------------------------------------
# Offline rewriting of the site's HTML (no browser, no network)
# ---------------------------------------------------------------------------------------------
def test_external_references_finds_loaders_not_links() -> None:
    from diffcl_lite.course.site import external_references

    page = """<html><head><script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.1.10/require.min.js"></script>
    <link rel="stylesheet" href="//fonts.example.org/a.css"><style>@import "https://x.org/b.css";</style>
    <script>var widgetRendererSrc = 'https://unpkg.com/@jupyter-widgets/html-manager@*/dist/embed-amd.js';</script>
    <script type="module">const m = (await import("https://cdnjs.cloudflare.com/ajax/libs/mermaid/m.mjs"));</script>
    </head><body><a href="https://arxiv.org/abs/2501.01066">paper</a><img src="http://127.0.0.1:8000/x.png">
    <script src="_static/require.js"></script></body></html>"""
    refs = external_references(page)
    assert any("require.min.js" in r for r in refs)
    assert any("fonts.example.org" in r for r in refs)
    assert any("x.org/b.css" in r for r in refs)
    assert any("embed-amd.js" in r for r in refs)
    assert any("mermaid" in r for r in refs)
    assert not any("arxiv" in r or "127.0.0.1" in r or r.endswith("_static/require.js") for r in refs)
    assert external_references('<a href="x.html">x</a><script src="_static/require.js"></script>') == []


def test_rewrite_offline_swaps_inline_plotly_and_drops_mathjax_cdn() -> None:
    from plotly.offline import get_plotlyjs

    from diffcl_lite.course.site import PLOTLY_JS_URL, external_references, rewrite_offline

    page = ("<p><a href='04_reverse_diffusion.ipynb#goals'>next</a> <a href=\"https://x.org/a.ipynb\">ext</a></p>"
            "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script><script>" + get_plotlyjs() + "</script>"
            '<div><script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/3.2.2/es5/tex-svg.min.js"></script>'
            '<div id="f" class="plotly-graph-div"></div></div>')
    assert external_references(page)
    new, changes = rewrite_offline(page)
    assert changes == {"plotly.js inline -> _static": 1, "plotly MathJax CDN tags dropped": 1, ".ipynb links -> .html": 1}
    assert f'<script src="{PLOTLY_JS_URL}"></script>' in new and len(new) < 2000
    assert "href='04_reverse_diffusion.html#goals'" in new and "https://x.org/a.ipynb" in new
    assert external_references(new) == []


def test_find_notebooks_orders_and_explains(tmp_path: Path) -> None:
    from diffcl_lite.course.site import SiteBuildError, find_notebooks

    for n in ("10_b.ipynb", "02_a.ipynb", "notes.ipynb", "01_z.ipynb"):
        (tmp_path / n).write_text("{}")
    assert [p.name for p in find_notebooks(tmp_path)] == ["01_z.ipynb", "02_a.ipynb", "10_b.ipynb"]
    assert [p.name for p in find_notebooks(tmp_path, only=["02"])] == ["02_a.ipynb"]
    with pytest.raises(SiteBuildError, match="--notebooks"):
        find_notebooks(tmp_path / "missing")


def test_npm_assets_are_checked_and_extracted(tmp_path: Path) -> None:
    """A cached tarball is used only when its sha512 matches; members land under _static."""
    from diffcl_lite.course.site import NpmAsset, SiteBuildError, _extract_members, fetch_npm_tarball, sri_sha512

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("package/dist/embed-amd.js", b"define()"), ("package/dist/embed.js.map", b"{}"),
                           ("package/dist/a.woff2", b"font")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    cache = tmp_path / "cache"
    cache.mkdir()
    good = NpmAsset("@x/pkg", "1.0.0", "", members=(("dist", "pkg"),), skip=(".map",))
    (cache / good.tarball_name).write_bytes(buf.getvalue())
    asset = NpmAsset(good.name, good.version, sri_sha512(cache / good.tarball_name), good.members, good.skip)
    assert fetch_npm_tarball(asset, cache) == cache / good.tarball_name  # cached: no npm, no network
    static = tmp_path / "static"
    _extract_members(asset, cache / good.tarball_name, static)
    assert sorted(p.name for p in (static / "pkg").iterdir()) == ["a.woff2", "embed-amd.js"]
    wrong = NpmAsset(good.name, good.version, asset.integrity, members=(("lib", "pkg"),))
    with pytest.raises(SiteBuildError, match="not found inside the package"):
        _extract_members(wrong, cache / good.tarball_name, static)
