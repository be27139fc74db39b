"""The docstrings' "Introduced in notebook NN" are true: checked against the notebooks' code cells.

* a **module** that says it is introduced in notebook NN is imported (the module or a name from
  it) first by notebook NN; ``utils`` and ``errors`` (used through ``setup_notebook`` from the
  start) may name an earlier notebook than their first direct import;
* a **function or class** that says so is used by notebook NN: its name appears in NN's code, or
  NN's code calls a function of the package that uses it (followed through the package's source).
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "diffcl_lite"
CLAIM = re.compile(r"Introduced in notebooks? (\d{2})")
#: modules used through setup_notebook before any notebook imports them directly
THROUGH_SETUP = {"diffcl_lite.utils", "diffcl_lite.errors"}
#: claims known to be out of date, with the fix (drop the entry once the docstring is fixed)
STALE: dict[tuple[str, str], str] = {}


def notebook_code() -> dict[str, str]:
    out = {}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        out[path.name[:2]] = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    return out


CODE = notebook_code()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def parse_package() -> tuple[dict[str, ast.Module], dict[str, set[str]]]:
    trees, uses = {}, {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        trees[module_name(path)] = tree
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
                names |= {a.name for n in ast.walk(node) if isinstance(n, ast.ImportFrom) for a in n.names}
                uses.setdefault(node.name, set()).update(names - {node.name})
    return trees, uses


TREES, USES = parse_package()


def reached_by(code: str) -> set[str]:
    """Every package function or class the code names, and everything those use, transitively."""
    words = set(re.findall(r"\b[A-Za-z_][A-Za-z0-9_]*\b", code))
    seen, todo = set(), [w for w in words if w in USES]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(u for u in USES.get(name, ()) if u in USES and u not in seen)
    return seen | words


REACHED = {nb: reached_by(code) for nb, code in CODE.items()}


def importers(module: str) -> list[str]:
    parent, _, short = module.rpartition(".")
    out = []
    for nb, code in CODE.items():
        direct = re.search(rf"(from|import) {re.escape(module)}\b", code)
        by_parent = re.search(rf"from {re.escape(parent)} import [^\n]*\b{short}\b", code)
        if direct or by_parent:
            out.append(nb)
    return out


def claims() -> list[tuple[str, str, str, int]]:
    """``(module, name or '', claimed notebook, line)`` for every claim in the package."""
    out = []
    for module, tree in TREES.items():
        m = CLAIM.search(ast.get_docstring(tree) or "")
        if m:
            out.append((module, "", m.group(1), 1))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                m = CLAIM.search(ast.get_docstring(node) or "")
                if m:
                    out.append((module, node.name, m.group(1), node.lineno))
    return out


CLAIMS = claims()


def test_there_are_claims_and_notebooks():
    assert len(CODE) >= 9 and len(CLAIMS) > 30


@pytest.mark.parametrize("module, name, nb, line", CLAIMS, ids=[f"{c[0]}.{c[1] or '<module>'}" for c in CLAIMS])
def test_introduced_in_is_true(module, name, nb, line):
    where = f"{module.replace('.', '/')}.py:{line}"
    if (module, name) in STALE:
        pytest.xfail(STALE[(module, name)])
    assert nb in CODE, f"{where}: notebook {nb} does not exist (notebooks: {sorted(CODE)})"
    if not name:
        users = importers(module)
        if module in THROUGH_SETUP:
            assert not users or nb <= users[0], f"{where}: says notebook {nb}, first imported by {users[0]}"
        else:
            assert users and users[0] == nb, f"{where}: says notebook {nb}, imported by notebooks {users}"
        return
    users = sorted(k for k, names in REACHED.items() if name in names)
    assert nb in users, f"{where}: {name} says notebook {nb}, but is used by notebooks {users}"


def test_reach_follows_the_package_source():
    # plot_topic_agreement (notebook 02's figure) calls lessons.measures.graphs.topic_agreement_sweep
    assert "topic_agreement_sweep" in reached_by("viz.plot_topic_agreement(feats, labels)")
    assert "topic_agreement_sweep" not in reached_by("viz.plot_degrees(u, i)")
