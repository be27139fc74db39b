"""Notebook set-up: one call at the top of every notebook.

Introduced in notebook 00 (welcome)::

    from diffcl_lite.lessons.notebook import setup_notebook
    ctx = setup_notebook(seed=SEED)      # seeds, device, plotting style, fast mode
    ctx                                   # shows device, fast mode, versions

``defined_in(f)`` shows where a package function or class is defined and its source, so a
learner can read the code behind any name a notebook imports (``defined_in(info_nce)``).

Fast mode (smaller sizes, PCA instead of UMAP, fewer epochs) is on when the environment variable
``DIFFCL_FAST=1`` is set, as in the test suite, or when ``fast=True`` is passed.
"""
from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import DiffCLError
from ..utils import get_device, seed_everything

log = logging.getLogger(__name__)

__all__ = ["fast_mode", "find_figures_dir", "save_figure", "NotebookContext", "environment_report", "setup_notebook",
           "DefinedIn", "defined_in"]


def fast_mode(default: bool = False) -> bool:
    """True when ``DIFFCL_FAST`` is set to 1/true/yes."""
    val = os.environ.get("DIFFCL_FAST")
    if val is None:
        return default
    return val.strip().lower() in ("1", "true", "yes", "on")


def find_figures_dir(start: Path | None = None) -> Path:
    """The repository's ``figures/`` folder (``$DIFFCL_FIGURES`` overrides), created if missing."""
    env = os.environ.get("DIFFCL_FIGURES")
    if env:
        path = Path(env)
    else:
        here = (start or Path.cwd()).resolve()
        path = here / "figures"
        for parent in [here, *here.parents]:
            if (parent / "pyproject.toml").exists() and (parent / "diffcl_lite").is_dir():
                path = parent / "figures"
                break
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_figure(fig: Any, name: str, figures_dir: str | Path | None = None, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Save a matplotlib figure (PNG) or a plotly figure (HTML, plotly.js inlined so it works offline) to ``figures/``."""
    folder = Path(figures_dir) if figures_dir else find_figures_dir()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    if hasattr(fig, "savefig"):
        for fmt in formats:
            p = folder / f"{name}.{fmt}"
            fig.savefig(p, dpi=120, bbox_inches="tight")
            paths.append(p)
    elif hasattr(fig, "write_html"):
        p = folder / f"{name}.html"
        fig.write_html(p, include_plotlyjs=True, full_html=True)
        paths.append(p)
    else:
        raise DiffCLError(f"save_figure: {type(fig).__name__} is neither a matplotlib nor a plotly figure.")
    return paths


@dataclass
class NotebookContext:
    seed: int
    device: torch.device
    fast: bool
    figures_dir: Path
    versions: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        vers = ", ".join(f"{k} {v}" for k, v in self.versions.items())
        return f"NotebookContext(seed={self.seed}, device={self.device}, fast={self.fast})\n  {vers}"

    def save_figure(self, fig: Any, name: str) -> list[Path]:
        """Save to ``figures/`` in full mode only (fast runs in tests never overwrite the gallery)."""
        if self.fast and not os.environ.get("DIFFCL_FIGURES"):
            return []
        return save_figure(fig, name, self.figures_dir)

    def pick(self, full: Any, fast: Any) -> Any:
        """``fast`` in fast mode, ``full`` otherwise (sizes, epochs...)."""
        return fast if self.fast else full

    def param(self, value: Any, full: Any, fast: Any) -> Any:
        """A notebook parameter: ``value`` when it was set (not ``None``), else :meth:`pick` of the defaults.

        The ``parameters`` cell holds scalars only (``N_USERS = None``), so
        ``papermill NB.ipynb out.ipynb -p N_USERS 500`` overrides a size in both modes.
        """
        return self.pick(full=full, fast=fast) if value is None else value


def environment_report() -> dict[str, str]:
    """Versions of Python and the main libraries (those installed)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("diffcl_lite", "torch", "numpy", "scipy", "matplotlib", "plotly", "ipywidgets", "umap-learn"):
        try:
            out[pkg] = metadata.version(pkg.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def setup_notebook(seed: int = 0, fast: bool | None = None, device: str = "auto", style: bool = True) -> NotebookContext:
    """Seed everything, choose the device, set a plotting style; return a :class:`NotebookContext`."""
    seed_everything(seed)
    fast = fast_mode() if fast is None else fast
    dev = get_device(device)
    if style:
        try:
            import matplotlib as mpl

            mpl.rcParams.update({"figure.figsize": (6.4, 4.0), "figure.dpi": 100, "axes.grid": True,
                                 "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
                                 "savefig.bbox": "tight"})
        except ImportError:  # pragma: no cover
            pass
        # No plotly renderer is forced: plotly detects JupyterLab, Colab, VS Code and nbconvert itself
        # (the static site sets PLOTLY_RENDERER for its own kernels).
    logging.getLogger("diffcl_lite").setLevel(logging.WARNING)
    return NotebookContext(seed=seed, device=dev, fast=fast, figures_dir=find_figures_dir(), versions=environment_report())


@dataclass(frozen=True)
class DefinedIn:
    """Where a function or class is defined: ``module``, ``path`` (from the package root), first ``line``, ``source``."""

    name: str
    module: str
    path: str
    line: int
    source: str

    def __str__(self) -> str:
        return f"{self.module}.{self.name} is defined in {self.path}, line {self.line}"

    def _repr_markdown_(self) -> str:
        return f"`{self.module}.{self.name}`, defined in `{self.path}` line {self.line}:\n\n```python\n{self.source}```"

    def __repr__(self) -> str:
        return f"{self}:\n\n{self.source}"


def defined_in(obj: Any) -> DefinedIn:
    """Where ``obj`` (a function, class or method of diffcl_lite) is defined, with its source.

    In a notebook, ``defined_in(info_nce)`` as the last line of a cell shows the source under the
    file and line it comes from (the same as ``info_nce??`` in IPython, with the file named).
    """
    import inspect

    target = inspect.unwrap(obj)
    module = getattr(target, "__module__", None) or ""
    if not module.startswith("diffcl_lite"):
        raise DiffCLError(f"defined_in: {obj!r} is not part of diffcl_lite (its module is {module or 'unknown'!r}); "
                          "pass a function or class that a notebook imports from the package.")
    try:
        lines, first = inspect.getsourcelines(target)
        path = Path(inspect.getsourcefile(target) or "")
    except (OSError, TypeError) as exc:
        raise DiffCLError(f"defined_in: no source for {obj!r} ({exc}); pass a function or class, not a value.") from None
    package_root = Path(__file__).resolve().parents[2]
    try:
        shown = path.resolve().relative_to(package_root).as_posix()
    except ValueError:
        shown = path.as_posix()
    return DefinedIn(getattr(target, "__qualname__", str(obj)), module, shown, first, "".join(lines))
