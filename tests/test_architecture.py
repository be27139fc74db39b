"""The package's layers, read from the imports of its source files (AST, imports inside functions too).

Layers, bottom to top:

* **basics** ``errors``, ``utils``, ``fileutil``: import only each other;
* **method** ``data``, ``graphs``, ``diffusion``, ``views``, ``losses``, ``model``, ``training``,
  ``evaluation``, ``experiments`` and their helpers: import only each other and the basics;
* **datasets** ``datasets/``: imports itself, the basics and :mod:`diffcl_lite.data` (the
  ``RecDataset`` container it fills and ``make_synthetic`` behind the synthetic names);
* **lessons** ``lessons/`` (the exercise checks included): may import the method, the datasets and the basics;
* **course** ``course/``: imports only itself and the basics (the grader reads ``lessons/checks.py`` as a
  file, never imports it);
* **entry points** the package ``__init__``, ``cli``, ``__main__``: anything, but the course
  tools only inside functions (so ``python -m diffcl_lite --help`` stays light).

No import cycle anywhere. What is still out of line is listed in ``ALLOWED`` and ``ALLOWED_CYCLES``
with the reason; an entry that no longer matches anything raises a warning, to be dropped.
"""
from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "diffcl_lite"
BASICS = {"diffcl_lite.errors", "diffcl_lite.utils", "diffcl_lite.fileutil"}
ENTRY = {"diffcl_lite", "diffcl_lite.cli", "diffcl_lite.cli_args", "diffcl_lite.__main__"}
COURSE_PREFIX = "diffcl_lite.course"

#: (importer, imported) pairs that break the layer rules today, each with its reason.
ALLOWED: dict[tuple[str, str], str] = {}

#: import cycles that exist today (each held off by an import inside a function), as sets of modules.
ALLOWED_CYCLES: list[tuple[frozenset[str], str]] = [
]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = all_modules()


def imports_of(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """``(imported diffcl_lite module, line, at module level)`` for every import statement in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` / `try:` blocks at module level count as module level
        if isinstance(node, (ast.If, ast.Try)):
            top_level.update(id(n) for n in ast.walk(node))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import diffcl_lite.checks as c`, `from x import attr`
                target = target.rpartition(".")[0]
            if target.startswith("diffcl_lite") and target != name:
                out.append((target, node.lineno, id(node) in top_level))
    return out


def layer(name: str) -> str:
    if name in ENTRY:
        return "entry"
    if name in BASICS:
        return "basics"
    if name == "diffcl_lite.datasets" or name.startswith("diffcl_lite.datasets."):
        return "datasets"
    if name == "diffcl_lite.lessons" or name.startswith("diffcl_lite.lessons."):
        return "lessons"
    if name == COURSE_PREFIX or name.startswith(COURSE_PREFIX + "."):
        return "course"
    return "method"


#: which layers each layer may import
MAY_IMPORT = {
    "basics": {"basics"},
    "method": {"basics", "method"},
    "datasets": {"basics", "datasets"},
    "lessons": {"basics", "method", "datasets", "lessons"},
    "course": {"basics", "course"},
    "entry": {"basics", "method", "datasets", "lessons", "course", "entry"},
}
#: single method modules the datasets layer may import (documented in diffcl_lite/datasets/__init__.py)
DATASETS_MAY_IMPORT = {"diffcl_lite.data"}


def edges() -> dict[str, list[tuple[str, int, bool]]]:
    return {name: imports_of(name, path) for name, path in MODULES.items()}


EDGES = edges()


def test_the_layers_exist():
    layers = {layer(n) for n in MODULES}
    assert layers == set(MAY_IMPORT), layers
    for must in ("diffcl_lite.data", "diffcl_lite.model", "diffcl_lite.datasets.formats",
                 "diffcl_lite.lessons.notebook", "diffcl_lite.lessons.viz", "diffcl_lite.lessons.checks",
                 "diffcl_lite.course.classroom", "diffcl_lite.course.runner"):
        assert must in MODULES, must


def test_parser_sees_imports_inside_functions():
    # an independent reading of one known case: viz.common imports the lessons' fast_mode inside embed_2d
    targets = {(t, top) for t, _, top in EDGES["diffcl_lite.lessons.viz.common"]}
    assert ("diffcl_lite.lessons.notebook", False) in targets
    assert ("diffcl_lite.errors", True) in targets


def test_every_import_respects_the_layers():
    bad, used = [], set()
    for name, imps in EDGES.items():
        for target, line, _ in imps:
            src, dst = layer(name), layer(target)
            ok = dst in MAY_IMPORT[src] or (src == "datasets" and target in DATASETS_MAY_IMPORT)
            if not ok:
                if (name, target) in ALLOWED:
                    used.add((name, target))
                else:
                    bad.append(f"{MODULES[name].relative_to(PACKAGE.parent)}:{line}: {name} ({src}) imports "
                               f"{target} ({dst})")
    assert not bad, "imports across the layers:\n" + "\n".join(bad)
    if used != set(ALLOWED):
        warnings.warn(f"allow-list entries that no longer match, drop them: {set(ALLOWED) - used}", stacklevel=1)


def test_entry_points_load_the_course_lazily():
    for name in ENTRY:
        eager = [t for t, _, top in EDGES[name] if top and layer(t) == "course"]
        assert not eager, f"{name} imports the course tools at module level: {eager}"


def _cycles() -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    graph = {n: sorted({t for t, _, _ in imps}) for n, imps in EDGES.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    found = _cycles()
    allowed = {c for c, _ in ALLOWED_CYCLES}
    new = [sorted(c) for c in found if c not in allowed]
    assert not new, f"import cycles: {new}"
    if set(found) != allowed:
        warnings.warn(f"allow-listed cycles that are gone, drop them: {allowed - set(found)}", stacklevel=1)


@pytest.mark.parametrize("source, expected", [
    ("from .a import b\n", {"diffcl_lite.pkg.a"}),
    ("def f():\n    from ..errors import X\n", {"diffcl_lite.errors"}),
    ("import diffcl_lite.checks as c\n", {"diffcl_lite.checks"}),
    ("from diffcl_lite import checks, data\n", {"diffcl_lite.checks", "diffcl_lite.data"}),
])
def test_import_reader_on_known_sources(tmp_path, monkeypatch, source, expected):
    fake = {"diffcl_lite.pkg.a": Path("a.py"), "diffcl_lite.errors": Path("e.py"), "diffcl_lite.checks": Path("c.py"),
            "diffcl_lite.data": Path("d.py"), "diffcl_lite": Path("i.py"), "diffcl_lite.pkg": Path("p.py")}
    monkeypatch.setitem(globals(), "MODULES", fake)
    path = tmp_path / "m.py"
    path.write_text(source)
    assert {t for t, _, _ in imports_of("diffcl_lite.pkg.m", path)} == expected
