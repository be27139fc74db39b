"""Static course site: the executed lesson notebooks rendered to HTML that works offline.

Used by ``make site`` (``python -m diffcl_lite.course.site``), not by the lessons themselves. Each notebook in
``notebooks/`` is executed with the ``diffcl-lite`` kernel (fast or full mode), its widget state is
stored, and it is exported with nbconvert's ``lab`` HTML template into ``site/``, next to an
``index.html`` that links the lessons in order. Everything a page loads is served from
``site/_static``:

- ``require.js`` (npm ``requirejs``) and the widget renderer ``embed-amd.js`` (npm
  ``@jupyter-widgets/html-manager``): no Python package ships them, so they are fetched at build time
  with ``npm pack`` (or straight from the npm registry when npm is missing), checked against pinned
  sha512 digests and cached (``$DIFFCL_SITE_CACHE``, default ``~/.cache/diffcl_lite/site-assets``);
- MathJax 2 (npm ``mathjax``, only the files the TeX/CommonHTML configuration needs);
- ``plotly.min.js`` copied from the installed ``plotly`` package. The ``notebook`` plotly renderer
  embeds plotly.js inline on every page; the build swaps that copy for ``_static/plotly.min.js``
  and drops the MathJax-3 CDN tag plotly adds to each figure.

After writing a page the build lists what it would load from another host (:func:`external_references`)
and fails when anything is left. Run ``python -m diffcl_lite.course.site --help`` for the options.
"""
from __future__ import annotations

import base64
import hashlib
import html as html_lib
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import DiffCLError
from .convention import KERNEL_NAME

log = logging.getLogger(__name__)

__all__ = [
    "SiteBuildError", "NpmAsset", "default_cache_dir", "sri_sha512", "fetch_npm_tarball", "install_static_assets",
    "execute_notebook", "notebook_title", "render_html", "rewrite_offline", "external_references", "PageReport",
    "SiteReport", "find_notebooks", "write_index", "build_site", "main",
]

STATIC = "_static"
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
# Substrings that betray a CDN (checked outside inline script bodies, see external_references).
CDN_MARKERS = ("cdn.", "unpkg", "jsdelivr")


class SiteBuildError(DiffCLError):
    """The static site could not be built (a notebook failed, an asset is missing, a CDN is left)."""


@dataclass(frozen=True)
class NpmAsset:
    """One npm package tarball pinned by version and sha512 (npm's ``dist.integrity``)."""

    name: str
    version: str
    integrity: str
    # members to copy: path inside ``package/`` (a file or a folder) -> path under ``_static``
    members: tuple[tuple[str, str], ...]
    # folder members: skip files whose path (inside the member) contains one of these parts
    skip: tuple[str, ...] = ()

    @property
    def tarball_name(self) -> str:
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"

    @property
    def tarball_url(self) -> str:
        base = self.name.split("/")[-1]
        return f"https://registry.npmjs.org/{self.name}/-/{base}-{self.version}.tgz"


NPM_ASSETS: tuple[NpmAsset, ...] = (
    NpmAsset(
        "requirejs", "2.3.8",
        "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
        members=(("require.js", "require.js"),),
    ),
    # html-manager 1.x renders ipywidgets 8 state (widget-state version_major 2)
    NpmAsset(
        "@jupyter-widgets/html-manager", "1.0.15",
        "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
        members=(("dist", "html-manager"),),
        # keep embed-amd.js and the woff/woff2/ttf icon fonts it references; drop maps, other bundles, legacy eot/svg fonts
        skip=(".map", "embed.js", "libembed-amd.js", ".LICENSE.txt", ".eot", ".svg"),
    ),
    NpmAsset(
        "mathjax", "2.7.9",
        "sha512-NOGEDTIM9+MrsqnjPEjVGNx4q0GQxqm61yQwSK+/5S59i26wId5IC5gNu9/bu8+CCVl5p9G2IHcAl/wJa+5+BQ==",
        members=(
            ("MathJax.js", "mathjax/MathJax.js"),
            ("config/TeX-AMS_CHTML-full.js", "mathjax/config/TeX-AMS_CHTML-full.js"),
            ("config/Safe.js", "mathjax/config/Safe.js"),
            ("extensions", "mathjax/extensions"),
            ("jax/input/TeX", "mathjax/jax/input/TeX"),
            ("jax/output/CommonHTML", "mathjax/jax/output/CommonHTML"),
            ("jax/element", "mathjax/jax/element"),
            ("fonts/HTML-CSS/TeX/woff", "mathjax/fonts/HTML-CSS/TeX/woff"),
            ("localization/en", "mathjax/localization/en"),
        ),
        skip=("a11y",),
    ),
)

# URLs written into the pages, relative to the site root (pages live in the root).
REQUIRE_JS_URL = f"{STATIC}/require.js"
WIDGET_RENDERER_URL = f"{STATIC}/html-manager/embed-amd.js"
MATHJAX_URL = f"{STATIC}/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
PLOTLY_JS_URL = f"{STATIC}/plotly.min.js"


# ---------------------------------------------------------------------------------------------
# Assets
# ---------------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """Where fetched npm tarballs are kept: ``$DIFFCL_SITE_CACHE`` or ``~/.cache/diffcl_lite/site-assets``."""
    env = os.environ.get("DIFFCL_SITE_CACHE")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "diffcl_lite" / "site-assets"


def sri_sha512(path: Path) -> str:
    """Subresource-integrity string (``sha512-<base64>``) of a file, as npm's ``dist.integrity``."""
    h = hashlib.sha512()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha512-" + base64.b64encode(h.digest()).decode()


def fetch_npm_tarball(asset: NpmAsset, cache_dir: Path | None = None, timeout: float = 120.0) -> Path:
    """The verified tarball of ``asset`` in the cache, fetched with ``npm pack`` (or HTTPS) when missing."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / asset.tarball_name
    if dest.exists() and sri_sha512(dest) == asset.integrity:
        return dest
    errors: list[str] = []
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        got: Path | None = None
        npm = shutil.which("npm")
        if npm:
            spec = f"{asset.name}@{asset.version}"
            try:
                subprocess.run([npm, "pack", spec, "--silent", "--pack-destination", tmp], check=True,
                               capture_output=True, text=True, timeout=timeout)
                got = Path(tmp) / asset.tarball_name
                if not got.exists():
                    errors.append(f"npm pack {spec} wrote no {asset.tarball_name}")
                    got = None
            except (subprocess.SubprocessError, OSError) as exc:
                detail = getattr(exc, "stderr", "") or str(exc)
                errors.append(f"npm pack {spec}: {detail.strip()[-300:]}")
        if got is None:
            got = Path(tmp) / asset.tarball_name
            try:
                with urllib.request.urlopen(asset.tarball_url, timeout=timeout) as resp, open(got, "wb") as f:
                    shutil.copyfileobj(resp, f)
            except OSError as exc:
                errors.append(f"GET {asset.tarball_url}: {exc}")
                raise SiteBuildError(
                    f"Could not fetch {asset.name}@{asset.version} for the site's offline scripts "
                    f"({'; '.join(errors)}). Connect to the npm registry once (the tarball is then cached in "
                    f"{cache}), or copy {asset.tarball_name} there by hand.") from exc
        digest = sri_sha512(got)
        if digest != asset.integrity:
            raise SiteBuildError(
                f"{asset.tarball_name}: sha512 {digest} does not match the pinned {asset.integrity} "
                f"(diffcl_lite/course/site.py NPM_ASSETS). Delete {dest} and retry; if the registry changed the "
                "file, do not use it.")
        os.replace(got, dest)
    return dest


def _extract_members(asset: NpmAsset, tarball: Path, static_dir: Path) -> list[Path]:
    """Copy ``asset.members`` from an npm tarball (``package/...``) into ``static_dir``."""
    written: list[Path] = []
    matched: set[str] = set()
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.startswith("package/"):
                continue
            inner = member.name[len("package/"):]
            for src, dst in asset.members:
                src = src.rstrip("/")
                if inner == src:
                    target = static_dir / dst
                elif inner.startswith(src + "/"):
                    rest = inner[len(src) + 1:]
                    if any(s in rest for s in asset.skip):
                        break
                    target = static_dir / dst / rest
                else:
                    continue
                if ".." in Path(dst).parts or ".." in Path(inner).parts:
                    raise SiteBuildError(f"{tarball.name}: unsafe member path {member.name!r}.")
                target.parent.mkdir(parents=True, exist_ok=True)
                fobj = tar.extractfile(member)
                if fobj is None:
                    break
                with fobj, open(target, "wb") as out:
                    shutil.copyfileobj(fobj, out)
                written.append(target)
                matched.add(src)
                break
    missing = [src for src, _ in asset.members if src.rstrip("/") not in matched]
    if missing:
        raise SiteBuildError(f"{tarball.name}: {missing} not found inside the package; the member list of "
                             f"{asset.name}@{asset.version} in diffcl_lite/course/site.py NPM_ASSETS is wrong.")
    return written


def install_static_assets(static_dir: Path, cache_dir: Path | None = None) -> dict[str, str]:
    """Fill ``static_dir`` with require.js, the widget renderer, MathJax and plotly.js; return their versions."""
    import plotly
    from plotly.offline import get_plotlyjs

    static_dir.mkdir(parents=True, exist_ok=True)
    versions: dict[str, str] = {}
    for asset in NPM_ASSETS:
        tarball = fetch_npm_tarball(asset, cache_dir)
        _extract_members(asset, tarball, static_dir)
        versions[asset.name] = asset.version
    (static_dir / "plotly.min.js").write_text(get_plotlyjs(), encoding="utf-8")
    versions["plotly.js (from plotly.py " + plotly.__version__ + ")"] = _plotlyjs_version(get_plotlyjs())
    (static_dir / "site.css").write_text(SITE_CSS, encoding="utf-8")
    return versions


def _plotlyjs_version(js: str) -> str:
    m = re.search(r"plotly\.js v([0-9][^\s*]*)", js[:400])
    return m.group(1) if m else "unknown"


# ---------------------------------------------------------------------------------------------
# Executing and exporting notebooks
# ---------------------------------------------------------------------------------------------
def execute_notebook(path: Path, fast: bool = True, kernel_name: str = KERNEL_NAME, cell_timeout: int | None = 600,
                     figures_dir: Path | None = None) -> Any:
    """Run ``path`` top to bottom in its own folder and return the executed notebook (widget state kept).

    ``DIFFCL_FAST`` is set for the kernel in fast mode; ``figures_dir`` (full mode) redirects
    ``ctx.save_figure`` so that a site build never rewrites the committed ``figures/``. Cells that
    take more than a minute are logged with their run time.
    """
    import nbformat
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    from .runner import run_notebook

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    started: dict[int, float] = {}

    def on_start(cell: Any, cell_index: int) -> None:
        started[cell_index] = time.monotonic()

    def on_done(cell: Any, cell_index: int, execute_reply: Any) -> None:
        secs = time.monotonic() - started.get(cell_index, time.monotonic())
        if secs > 60:
            log.warning("%s: cell %d ran %.0f s: %s", path.name, cell_index, secs, cell.source[:60].replace("\n", " "))

    # plotly inlines plotly.js with this renderer, so the static pages draw their charts offline
    env = {"PLOTLY_RENDERER": "plotly_mimetype+notebook"}
    if figures_dir:
        env["DIFFCL_FIGURES"] = str(figures_dir)
    try:
        run_notebook(nb, path.parent, fast=fast, timeout=cell_timeout, kernel_name=kernel_name, env=env,
                     store_widget_state=True, on_cell_start=on_start, on_cell_executed=on_done)
    except (CellExecutionError, CellTimeoutError) as exc:
        mode = "DIFFCL_FAST=1 " if fast else ""
        raise SiteBuildError(
            f"{path}: a cell failed while building the site ({type(exc).__name__}). Reproduce with "
            f"`{mode}.venv/bin/python -m pytest --nbval-lax {path}`.\n{str(exc)[-2000:]}") from exc
    return nb


def notebook_title(nb: Any, fallback: str) -> str:
    """The first ``# `` heading of the notebook's first markdown cell, without the ``#``."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
            break
    return fallback


SITE_TEMPLATE = r"""
{%- extends 'index.html.j2' -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<link rel="stylesheet" href="{{ resources.diffcl.static }}/site.css">
{%- endblock extra_css -%}
{%- macro diffcl_nav(nav) -%}
<nav class="diffcl-nav">
  {%- if nav.prev %}<a class="diffcl-prev" href="{{ nav.prev.href }}">&larr; {{ nav.prev.title | e }}</a>{% else %}<span></span>{% endif -%}
  <a class="diffcl-home" href="index.html">Course index</a>
  {%- if nav.next %}<a class="diffcl-next" href="{{ nav.next.href }}">{{ nav.next.title | e }} &rarr;</a>{% else %}<span></span>{% endif -%}
</nav>
{%- endmacro -%}
{%- block body_header -%}
{{ super() }}
{{ diffcl_nav(resources.diffcl) }}
{%- endblock body_header -%}
{%- block body_footer -%}
{{ diffcl_nav(resources.diffcl) }}
<p class="diffcl-built">Executed in {{ resources.diffcl.mode }} mode on {{ resources.diffcl.built }}.</p>
{{ super() }}
{%- endblock body_footer -%}
"""

SITE_CSS = """
.diffcl-nav { display: flex; justify-content: space-between; gap: 1em; max-width: 1100px;
  margin: 0.8em auto; padding: 0.5em 1em; font-family: var(--jp-ui-font-family, sans-serif);
  border-bottom: 1px solid #ddd; }
.diffcl-nav a { text-decoration: none; }
.diffcl-built { color: #777; font-size: 0.85em; text-align: center; font-family: var(--jp-ui-font-family, sans-serif); }
/* the widget renderer's controls use the page's UI font, not the browser's serif default */
.jupyter-widgets, .widget-label, .widget-readout { font-family: var(--jp-ui-font-family, sans-serif);
  font-size: var(--jp-ui-font-size1, 13px); }
body.diffcl-index { font-family: system-ui, sans-serif; max-width: 820px; margin: 2em auto; padding: 0 1em;
  line-height: 1.5; }
body.diffcl-index li { margin: 0.4em 0; }
body.diffcl-index .meta { color: #777; font-size: 0.85em; }
"""


def _exporter() -> Any:
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="lab",
        template_file="diffcl_site.html.j2",
        extra_loaders=[DictLoader({"diffcl_site.html.j2": SITE_TEMPLATE})],
        require_js_url=REQUIRE_JS_URL,
        mathjax_url=MATHJAX_URL,
        widget_renderer_url=WIDGET_RENDERER_URL,
        mermaid_js_url="",
        mermaid_layout_elk_js_url="",
        exclude_anchor_links=False,
    )


def render_html(nb: Any, nav: dict[str, Any]) -> str:
    """Export an executed notebook to one HTML page (lab template, local script URLs, page navigation)."""
    exporter = _exporter()
    body, _ = exporter.from_notebook_node(nb, resources={"diffcl": nav})
    return body


_PLOTLY_MATHJAX_CDN = re.compile(
    r"<script\s+src=\"https://cdnjs\.cloudflare\.com/ajax/libs/mathjax/[^\"]*\"\s*>\s*</script>")
_IPYNB_LINK = re.compile(r"""href=(["'])(?![a-z][a-z0-9+.-]*:|/|#)([^"'#?]+?)\.ipynb(#[^"']*)?\1""", re.I)


def rewrite_offline(page: str) -> tuple[str, dict[str, int]]:
    """Make a page load nothing from another host; returns the new page and what was changed.

    - plotly.js inlined by plotly's ``notebook`` renderer -> ``<script src="_static/plotly.min.js">``
      (the same file, from the installed plotly package; saves ~4.6 MB a page);
    - the MathJax-3 CDN ``<script>`` tag plotly puts before each figure is dropped (the page loads
      MathJax 2 from ``_static`` already);
    - links between lessons (``04_x.ipynb``) point at the HTML pages.
    """
    from plotly.offline import get_plotlyjs

    changes: dict[str, int] = {}
    inline = "<script>" + get_plotlyjs() + "</script>"
    changes["plotly.js inline -> _static"] = page.count(inline)
    page = page.replace(inline, f'<script src="{PLOTLY_JS_URL}"></script>')
    page, changes["plotly MathJax CDN tags dropped"] = _PLOTLY_MATHJAX_CDN.subn("", page)
    page, changes[".ipynb links -> .html"] = _IPYNB_LINK.subn(lambda m: f"href={m.group(1)}{m.group(2)}.html"
                                                             f"{m.group(3) or ''}{m.group(1)}", page)
    return page, changes


_SCRIPT_BLOCK = re.compile(r"(<script\b[^>]*>)(.*?)(</script>)", re.S | re.I)
_ATTR_URL = re.compile(r"<(script|link|img|iframe|source|video|audio|embed)\b[^>]*?\s(?:src|href)\s*=\s*[\"']"
                       r"((?:https?:)?//[^\"']+)[\"']", re.I)
_CSS_URL = re.compile(r"""(?:url\(\s*["']?|@import\s+["'])((?:https?:)?//[^"')\s]+)""", re.I)
_JS_LOAD = re.compile(r"""(?:import\s*\(\s*|import\s+|widgetRendererSrc\s*=\s*|\.src\s*=\s*)["']((?:https?:)?//[^"']+)["']""")


def _is_local(url: str) -> bool:
    host = re.sub(r"^(?:https?:)?//", "", url).split("/")[0].split(":")[0]
    return host in ("127.0.0.1", "localhost", "[::1]")


def external_references(page: str) -> list[str]:
    """URLs on other hosts that the page would load (not plain ``<a>`` links), plus CDN mentions in markup.

    Tags (``script``/``link``/``img``... ``src``/``href``), CSS ``url()``/``@import`` and the script loaders
    nbconvert/plotly write (``import(...)``, ``widgetRendererSrc = ...``, ``.src = ...``) are checked.
    Big inline libraries (plotly.js) mention map-tile and font hosts they only fetch for map
    traces; their bodies are skipped for the CDN-marker scan, but their loader calls are checked.
    """
    found: list[str] = []
    found += [m.group(2) for m in _ATTR_URL.finditer(page)]
    found += [m.group(1) for m in _CSS_URL.finditer(page)]
    for m in _SCRIPT_BLOCK.finditer(page):
        body = m.group(2)
        if len(body) < 200_000:  # loaders in nbconvert/plotly glue code; a vendored library is skipped
            found += [u.group(1) for u in _JS_LOAD.finditer(body)]
    markup = _SCRIPT_BLOCK.sub(lambda m: m.group(1) + m.group(3), page)
    markup = re.sub(r"<a\b[^>]*>", "<a>", markup, flags=re.I)
    for marker in CDN_MARKERS:
        for m in re.finditer(re.escape(marker), markup):
            found.append(f"{marker!r} in markup: ...{markup[max(0, m.start() - 60):m.end() + 60]}...")
    return sorted({u for u in found if not _is_local(u)})


# ---------------------------------------------------------------------------------------------
# The site
# ---------------------------------------------------------------------------------------------
@dataclass
class PageReport:
    source: str
    page: str
    title: str
    seconds: float
    changes: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0
    widgets: bool = False


@dataclass
class SiteReport:
    out_dir: Path
    mode: str
    pages: list[PageReport]
    assets: dict[str, str]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "seconds": round(self.seconds, 1), "assets": self.assets,
                "pages": [vars(p) for p in self.pages]}


def find_notebooks(notebooks_dir: Path, only: Sequence[str] | None = None) -> list[Path]:
    """Lesson notebooks ``NN_name.ipynb`` in course order; ``only`` keeps those whose name starts with a prefix."""
    paths = sorted(Path(notebooks_dir).glob(NOTEBOOK_GLOB))
    if only:
        paths = [p for p in paths if any(p.name.startswith(o) for o in only)]
    if not paths:
        raise SiteBuildError(f"No notebooks matching {NOTEBOOK_GLOB!r}"
                             f"{' and ' + repr(list(only)) if only else ''} in {notebooks_dir}; "
                             "pass --notebooks DIR (or --only with a matching prefix).")
    return paths


def write_index(out_dir: Path, pages: list[PageReport], mode: str, built: str) -> Path:
    """``index.html``: the lessons in order, with their run time."""
    items = "\n".join(
        f'<li><a href="{html_lib.escape(p.page)}">{html_lib.escape(p.title)}</a> '
        f'<span class="meta">(ran in {p.seconds:.1f} s{", with widgets" if p.widgets else ""})</span></li>'
        for p in pages)
    text = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>diffcl_lite · DiffCL, one notebook at a time</title>
<link rel="stylesheet" href="{STATIC}/site.css">
</head>
<body class="diffcl-index">
<h1>diffcl_lite · DiffCL, one notebook at a time</h1>
<p>The lesson notebooks, executed and rendered with their figures and widgets. Read them in order.
Sliders show the state they were saved in; to move them, run the notebooks in JupyterLab
(<code>make lab</code>).</p>
<ol>
{items}
</ol>
<p class="meta">Executed in {mode} mode on {built}. Built with <code>make site</code>; works offline.</p>
</body>
</html>
"""
    path = out_dir / "index.html"
    path.write_text(text, encoding="utf-8")
    return path


def build_site(notebooks_dir: Path | str = "notebooks", out_dir: Path | str = "site", mode: str = "fast",
               only: Sequence[str] | None = None, execute: bool = True, cache_dir: Path | None = None,
               cell_timeout: int | None = None, paths: Sequence[Path] | None = None, jobs: int = 1) -> SiteReport:
    """Execute the notebooks (``mode`` "fast" or "full") and write the HTML site into ``out_dir``.

    ``paths`` (explicit notebook files) overrides ``notebooks_dir``/``only``; ``jobs`` notebooks run at
    once (each in its own kernel). Raises
    :class:`SiteBuildError` when a notebook fails or a page would still load something from another host.
    """
    from tqdm.auto import tqdm

    if mode not in ("fast", "full"):
        raise SiteBuildError(f"mode={mode!r}: use 'fast' (DIFFCL_FAST=1, ~10 s a notebook) or 'full'.")
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nb_paths = [Path(p) for p in paths] if paths else find_notebooks(Path(notebooks_dir), only)
    assets = install_static_assets(out / STATIC, cache_dir)
    built = time.strftime("%Y-%m-%d %H:%M %Z")
    titles = [(p, p.stem.replace("_", " ")) for p in nb_paths]
    pages: list[PageReport] = []
    executed: list[tuple[Path, Any, float]] = []
    import nbformat

    timeout = cell_timeout if cell_timeout is not None else (600 if mode == "fast" else None)

    def run(p: Path) -> tuple[Path, Any, float]:
        t = time.perf_counter()
        if not execute:
            return p, nbformat.read(p, as_version=4), 0.0
        nb = execute_notebook(p, fast=mode == "fast", cell_timeout=timeout,
                              figures_dir=(out / "_figures") if mode == "full" else None)
        return p, nb, time.perf_counter() - t

    # one kernel per notebook; with jobs > 1 several run at once (DIFFCL_FAST is the same for all)
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        for res in tqdm(pool.map(run, nb_paths), total=len(nb_paths), desc=f"executing ({mode})", disable=None):
            executed.append(res)
    titles = [(p, notebook_title(nb, p.stem)) for p, nb, _ in executed]
    for i, (p, nb, secs) in enumerate(executed):
        nav = {"static": STATIC, "mode": mode, "built": built,
               "prev": {"href": titles[i - 1][0].stem + ".html", "title": titles[i - 1][1]} if i > 0 else None,
               "next": ({"href": titles[i + 1][0].stem + ".html", "title": titles[i + 1][1]}
                        if i + 1 < len(titles) else None)}
        page, changes = rewrite_offline(render_html(nb, nav))
        refs = external_references(page)
        if refs:
            raise SiteBuildError(f"{p.name}: the HTML page would still load from another host: {refs[:5]}. "
                                 "Add a rewrite to diffcl_lite/course/site.py rewrite_offline (or remove the "
                                 "reference from the notebook).")
        name = p.stem + ".html"
        (out / name).write_text(page, encoding="utf-8")
        pages.append(PageReport(source=str(p), page=name, title=titles[i][1], seconds=round(secs, 2),
                                changes=changes, size_bytes=len(page.encode()),
                                widgets="widgets" in nb.metadata))
    write_index(out, pages, mode, built)
    report = SiteReport(out_dir=out, mode=mode, pages=pages, assets=assets, seconds=time.perf_counter() - t0)
    (out / "_build.json").write_text(json.dumps(report.to_json(), indent=1), encoding="utf-8")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``make site``: ``python -m diffcl_lite.course.site --mode fast --out site``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m diffcl_lite.course.site", description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("fast", "full"), default="fast", help="execution mode (default: fast)")
    ap.add_argument("--notebooks", default="notebooks", help="folder of NN_name.ipynb lessons")
    ap.add_argument("--out", default="site", help="output folder (default: site/)")
    ap.add_argument("--only", nargs="*", help="notebook name prefixes to build, e.g. 03 07")
    ap.add_argument("--no-execute", action="store_true", help="render the notebooks as saved (no kernel)")
    ap.add_argument("--cache", default=None, help="npm tarball cache (default: $DIFFCL_SITE_CACHE or "
                                                   "~/.cache/diffcl_lite/site-assets)")
    ap.add_argument("--cell-timeout", type=int, default=None, help="seconds per cell (fast: 600, full: none)")
    ap.add_argument("--jobs", "-j", type=int, default=1, help="notebooks executed at once (default: 1)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        rep = build_site(args.notebooks, args.out, args.mode, args.only, not args.no_execute,
                         Path(args.cache) if args.cache else None, args.cell_timeout, jobs=args.jobs)
    except SiteBuildError as exc:
        log.error("site: %s", exc)
        return 1
    for p in rep.pages:
        log.info("  %-32s %6.1f s  %5.1f MB", p.page, p.seconds, p.size_bytes / 1e6)
    log.info("site: %d pages in %s (%s mode, %.0f s); open %s", len(rep.pages), rep.out_dir, rep.mode,
             rep.seconds, (rep.out_dir / "index.html").resolve())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
