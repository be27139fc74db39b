"""The public names: ``import diffcl_lite as dl; dl.DiffCL ...``, every module's ``__all__``, star imports."""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "diffcl_lite"

#: the method's public API on the package, and where each name is defined
PUBLIC = {
    "DiffCL": "diffcl_lite.model", "DiffCLConfig": "diffcl_lite.model", "run_experiment": "diffcl_lite.training",
    "make_synthetic": "diffcl_lite.data", "load_dataset": "diffcl_lite.datasets.loading",
    "make_schedule": "diffcl_lite.diffusion", "GaussianDiffusion": "diffcl_lite.diffusion",
    "DiffusionViews": "diffcl_lite.views", "info_nce": "diffcl_lite.losses", "align_to_anchor": "diffcl_lite.losses",
    "item_item_graph": "diffcl_lite.graphs", "evaluate": "diffcl_lite.evaluation",
}

#: modules whose ``__all__`` is still missing or lists imported names, with the reason (drop an entry once fixed)
NOT_YET: dict[str, str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = sorted(module_name(p) for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")


def module_level_names(path: Path) -> tuple[set[str], set[str], object]:
    """``(names defined, names bound by an import, the literal __all__ or None)`` at module level."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defined: set[str] = set()
    imported: set[str] = set()
    all_value = None

    def scan(body: list[ast.stmt]) -> None:
        nonlocal all_value
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    defined.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
                    if isinstance(t, ast.Name) and t.id == "__all__" and node.value is not None:
                        all_value = ast.literal_eval(node.value)
            elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id == "__all__":
                all_value = list(all_value or []) + list(ast.literal_eval(node.value))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                imported.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, (ast.If, ast.Try)):
                scan(node.body)
                scan(node.orelse)
                for h in getattr(node, "handlers", []):
                    scan(h.body)
                scan(getattr(node, "finalbody", []))

    scan(tree.body)
    return defined, imported, all_value


def path_of(name: str) -> Path:
    rel = Path(*name.split("."))
    pkg = PACKAGE.parent / rel / "__init__.py"
    return pkg if pkg.exists() else PACKAGE.parent / rel.with_suffix(".py")


@pytest.mark.parametrize("name", MODULES)
def test_all_names_only_what_the_module_defines(name):
    if name in NOT_YET:
        pytest.skip(NOT_YET[name])
    path = path_of(name)
    defined, _, names = module_level_names(path)
    assert isinstance(names, list), f"{path}: no literal __all__ list"
    assert len(names) == len(set(names)), f"{path}: __all__ repeats a name"
    if path.name == "__init__.py":
        # a package offers its submodules' names: each must resolve to an object defined in the package
        module = importlib.import_module(name)
        for n in names:
            obj = getattr(module, n)
            home = getattr(obj, "__module__", None)
            if home is not None and callable(obj):
                assert home.startswith("diffcl_lite"), f"{name}.{n} comes from {home}"
            layer = ".".join(name.split(".")[:2])  # diffcl_lite.datasets, diffcl_lite.lessons, ...
            if name != "diffcl_lite":
                assert home is None or not callable(obj) or home.startswith(layer), f"{name}.{n} comes from {home}"
        return
    missing = [n for n in names if n not in defined]
    assert not missing, f"{path}: __all__ lists names defined elsewhere: {missing}"


def test_not_yet_entries_exist():
    missing = [name for name in NOT_YET if name not in MODULES]
    assert not missing, f"modules in NOT_YET that do not exist: {missing}"


def test_star_import_of_every_module():
    # a module whose __all__ names something it does not have raises here
    bad = []
    for name in MODULES:
        try:
            exec(f"from {name} import *", {})  # noqa: S102 - our own module names
        except Exception as exc:  # noqa: BLE001 - collect every failure
            bad.append(f"{name}: {type(exc).__name__}: {exc}")
    assert not bad, "\n".join(bad)


def test_public_api_resolves_lazily():
    code = ("import sys\n"
            "import diffcl_lite as dl\n"
            "heavy = [m for m in ('torch', 'numpy', 'scipy') if m in sys.modules]\n"
            "assert not heavy, f'import diffcl_lite imported {heavy}'\n"
            f"for name, home in {PUBLIC!r}.items():\n"
            "    obj = getattr(dl, name)\n"
            "    assert obj.__module__ == home, (name, obj.__module__, home)\n"
            "    assert name in dl.__all__ and name in dir(dl), name\n"
            "assert 'diffcl_lite.course' not in sys.modules\n"
            "assert 'diffcl_lite.lessons' not in sys.modules, 'the method API must not load the lessons'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stderr[-2000:]


def test_load_dataset_is_datasets_load():
    import diffcl_lite as dl
    from diffcl_lite import datasets

    assert dl.load_dataset is datasets.load
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        dl.not_a_name  # noqa: B018
