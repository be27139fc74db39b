"""pyproject.toml, environment.yml and the Makefile must describe the same environment.

Someone who adds a dependency to only one of pyproject.toml and environment.yml,
or changes a range in one of them, makes these tests fail. Both files must list
exactly the same packages (core dependencies plus the ``lessons``, ``course`` and
``test`` extras; the ``dev`` extra is not in environment.yml) with the same version range,
after mapping PyPI names to conda-forge names. environment.yml may add only
``python`` and ``pip``. Ranges, never exact ``==`` pins, in pyproject.toml.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]

# PyPI name -> conda-forge name, only where the two differ. Packages listed in
# the pip section of environment.yml keep their PyPI name.
PYPI_TO_CONDA = {"torch": "pytorch"}
CONDA_TO_PYPI = {conda: pypi for pypi, conda in PYPI_TO_CONDA.items()}
# pyproject extras that environment.yml must also provide.
COMPARED_EXTRAS = ("lessons", "course", "test")
# Entries environment.yml may have that pyproject.toml does not.
ENV_ONLY_ALLOWED = frozenset({"python", "pip"})

Deps = dict[str, SpecifierSet]


def _add(deps: Deps, name: str, spec: SpecifierSet, source: str) -> None:
    key = canonicalize_name(name)
    if key in deps:
        raise ValueError(f"{source}: {name!r} is listed twice; keep one entry.")
    deps[key] = spec


def pyproject_deps(pyproject: dict) -> Deps:
    """Core dependencies plus the compared extras, as {canonical PyPI name: specifier}."""
    project = pyproject["project"]
    lines = list(project.get("dependencies", []))
    extras = project.get("optional-dependencies", {})
    for extra in COMPARED_EXTRAS:
        if extra not in extras:
            raise ValueError(f"pyproject.toml: extra {extra!r} is missing from [project.optional-dependencies].")
        lines += extras[extra]
    deps: Deps = {}
    for line in lines:
        req = Requirement(line)
        _add(deps, req.name, req.specifier, "pyproject.toml")
    return deps


def parse_conda_spec(spec: str) -> tuple[str, SpecifierSet]:
    """Split a conda match spec such as ``numpy>=1.24`` or ``python=3.11`` into (name, specifier).

    Conda's ``name=1.2`` means ``1.2.*``. Forms without a PEP 440 equivalent
    (``|`` alternatives, build strings) raise ValueError.
    """
    m = re.fullmatch(r"\s*(?:[\w.-]+::)?([A-Za-z0-9][A-Za-z0-9_.\-]*)\s*(.*?)\s*", spec)
    if m is None:
        raise ValueError(f"environment.yml: cannot parse conda spec {spec!r}; write it as 'name>=X.Y'.")
    name, version = m.groups()
    if "|" in version or " " in version:
        raise ValueError(f"environment.yml: conda spec {spec!r} is not a plain range; write it as 'name>=X.Y'.")
    if re.fullmatch(r"=[^=].*", version):  # conda's fuzzy pin: =1.2 -> 1.2.*
        version = "==" + version[1:] + ("" if version.endswith("*") else ".*")
    try:
        return name, SpecifierSet(version)
    except InvalidSpecifier as exc:
        raise ValueError(f"environment.yml: bad version range in {spec!r}: {exc}") from exc


def environment_deps(env: dict) -> Deps:
    """Conda and pip entries of environment.yml, as {canonical PyPI name: specifier}."""
    deps: Deps = {}
    for item in env.get("dependencies", []):
        if isinstance(item, dict):
            for line in item.get("pip", []):
                if line.strip().startswith("-"):  # pip options and "-e ." (the package itself)
                    continue
                req = Requirement(line)
                _add(deps, req.name, req.specifier, "environment.yml (pip section)")
        else:
            name, spec = parse_conda_spec(str(item))
            _add(deps, CONDA_TO_PYPI.get(canonicalize_name(name), name), spec, "environment.yml")
    return deps


def compare_deps(pyproject: Deps, env: Deps, env_only_allowed=ENV_ONLY_ALLOWED) -> list[str]:
    """Return one human-readable problem per mismatch (empty when the files agree)."""
    problems = []
    for name in sorted(pyproject.keys() - env.keys()):
        conda = PYPI_TO_CONDA.get(name, name)
        problems.append(f"{name}{pyproject[name]} is in pyproject.toml but not in environment.yml; add '{conda}{pyproject[name]}' there.")
    for name in sorted(env.keys() - pyproject.keys() - set(env_only_allowed)):
        problems.append(f"{name}{env[name]} is in environment.yml but not in pyproject.toml; add it there or remove it.")
    for name in sorted(pyproject.keys() & env.keys()):
        if pyproject[name] != env[name]:
            problems.append(
                f"{name}: pyproject.toml says '{pyproject[name]}' but environment.yml says '{env[name]}'; use the same range in both."
            )
    return problems


def exact_pins(lines) -> list[str]:
    """Requirements of ``lines`` that pin an exact version (== or ===)."""
    pinned = []
    for line in lines:
        req = Requirement(line)
        if any(s.operator in ("==", "===") for s in req.specifier):
            pinned.append(line)
    return pinned


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


@pytest.fixture(scope="module")
def environment() -> dict:
    with open(ROOT / "environment.yml", encoding="utf-8") as f:
        return yaml.safe_load(f)


# --------------------------------------------------------------------------- the real files


def test_pyproject_and_environment_yml_agree(pyproject, environment):
    problems = compare_deps(pyproject_deps(pyproject), environment_deps(environment))
    assert not problems, "pyproject.toml and environment.yml disagree:\n" + "\n".join(problems)


def test_pyproject_has_no_exact_pins(pyproject):
    project = pyproject["project"]
    lines = list(project.get("dependencies", []))
    for extra_lines in project.get("optional-dependencies", {}).values():
        lines += extra_lines
    lines += pyproject.get("build-system", {}).get("requires", [])
    assert exact_pins(lines) == [], "use ranges such as 'pkg>=X.Y' in pyproject.toml, not exact pins"


def test_environment_yml_has_no_exact_pins(environment):
    pinned = [
        str(item)
        for item in environment["dependencies"]
        if not isinstance(item, dict)
        and parse_conda_spec(str(item))[0] != "python"
        and any(s.operator in ("==", "===") for s in parse_conda_spec(str(item))[1])
    ]
    assert pinned == [], f"environment.yml pins exact versions: {pinned}; use ranges such as 'pkg>=X.Y'"


def test_environment_python_satisfies_requires_python(pyproject, environment):
    pythons = [parse_conda_spec(str(i))[1] for i in environment["dependencies"] if not isinstance(i, dict) and str(i).startswith("python")]
    assert len(pythons) == 1, "environment.yml must list python exactly once (e.g. python=3.11)"
    env_python = str(pythons[0]).removeprefix("==").removesuffix(".*")
    assert SpecifierSet(pyproject["project"]["requires-python"]).contains(env_python)


def test_environment_uses_conda_forge(environment):
    assert environment.get("channels") == ["conda-forge"]


def test_makefile_torch_spec_satisfies_pyproject(pyproject):
    """`make install` installs TORCH_SPEC first; if it fell outside pyproject's torch range,
    the later `pip install -e .` would replace it with a multi-GB CUDA build."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    m = re.search(r"^TORCH_SPEC\s*\?=\s*(\S+)\s*$", text, re.MULTILINE)
    assert m, "Makefile must define 'TORCH_SPEC ?= torch==X.Y.Z'"
    torch_spec = Requirement(m.group(1))
    assert torch_spec.name == "torch"
    pinned = [s.version for s in torch_spec.specifier if s.operator == "=="]
    assert len(pinned) == 1, f"TORCH_SPEC must pin one exact torch version, got {m.group(1)!r}"
    torch_range = pyproject_deps(pyproject)["torch"]
    assert torch_range.contains(pinned[0]), f"TORCH_SPEC {m.group(1)} is outside pyproject's torch{torch_range}"


# --------------------------------------------------------------------------- the comparison itself


def _deps(**specs: str) -> Deps:
    return {canonicalize_name(k.replace("_", "-")): SpecifierSet(v) for k, v in specs.items()}


def test_compare_accepts_matching_files():
    pyproject = {"project": {"dependencies": ["torch>=2.2", "umap-learn>=0.5.4"],
                             "optional-dependencies": {"lessons": ["plotly>=5.15"], "course": [], "test": ["playwright>=1.40"]}}}
    env = {"dependencies": ["python=3.11", "pip", "pytorch >=2.2", "umap-learn>=0.5.4", "plotly>=5.15.0",
                            {"pip": ["playwright>=1.40", "-e ."]}]}
    assert compare_deps(pyproject_deps(pyproject), environment_deps(env)) == []


@pytest.mark.parametrize(
    "py, env, fragment",
    [
        (_deps(numpy=">=1.24", rich=">=13"), _deps(numpy=">=1.24"), "rich>=13 is in pyproject.toml but not in environment.yml"),
        (_deps(numpy=">=1.24"), _deps(numpy=">=1.24", rich=">=13"), "rich>=13 is in environment.yml but not in pyproject.toml"),
        (_deps(numpy=">=1.24"), _deps(numpy=">=1.26"), "numpy: pyproject.toml says '>=1.24' but environment.yml says '>=1.26'"),
        (_deps(torch=">=2.2"), _deps(), "add 'pytorch>=2.2' there"),
    ],
)
def test_compare_reports_mismatches(py, env, fragment):
    problems = compare_deps(py, env)
    assert len(problems) == 1 and fragment in problems[0], problems


def test_compare_flags_dependency_added_to_one_file_only(pyproject, environment):
    one_sided = copy.deepcopy(pyproject)
    one_sided["project"]["optional-dependencies"]["lessons"].append("extra-only-in-pyproject>=1.0")
    assert any("extra-only-in-pyproject" in p for p in compare_deps(pyproject_deps(one_sided), environment_deps(environment)))

    one_sided_env = copy.deepcopy(environment)
    one_sided_env["dependencies"].append("extra-only-in-conda>=1.0")
    assert any("extra-only-in-conda" in p for p in compare_deps(pyproject_deps(pyproject), environment_deps(one_sided_env)))

    pip_only = copy.deepcopy(environment)
    next(i for i in pip_only["dependencies"] if isinstance(i, dict))["pip"].append("extra-only-in-pip>=1.0")
    assert any("extra-only-in-pip" in p for p in compare_deps(pyproject_deps(pyproject), environment_deps(pip_only)))


def test_torch_and_pytorch_are_the_same_package():
    env = environment_deps({"dependencies": ["pytorch>=2.2"]})
    assert env == _deps(torch=">=2.2")


@pytest.mark.parametrize(
    "spec, name, specifier",
    [("python=3.11", "python", "==3.11.*"), ("numpy >=1.24", "numpy", ">=1.24"), ("conda-forge::scipy>=1.10", "scipy", ">=1.10"), ("pip", "pip", "")],
)
def test_parse_conda_spec(spec, name, specifier):
    assert parse_conda_spec(spec) == (name, SpecifierSet(specifier))


@pytest.mark.parametrize("spec", ["numpy 1.24 py311_0", "numpy>=1.24|<1.0", "numpy>=banana"])
def test_parse_conda_spec_rejects_unsupported_forms(spec):
    with pytest.raises(ValueError, match="environment.yml"):
        parse_conda_spec(spec)


def test_exact_pins_are_found():
    assert exact_pins(["torch==2.13.0", "numpy>=1.24", "scipy===1.10"]) == ["torch==2.13.0", "scipy===1.10"]


def test_duplicate_entries_are_rejected():
    with pytest.raises(ValueError, match="listed twice"):
        environment_deps({"dependencies": ["numpy>=1.24", {"pip": ["numpy>=1.24"]}]})


def test_make_lab_installs_no_test_or_course_tools():
    """`make lab` is the student's set-up: torch, diffcl_lite[lessons] and the kernel, nothing for tests."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed")
    out = subprocess.run(["make", "-n", "-B", "lab", "VENV=/nonexistent-venv"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert 'pip install -e ".[lessons]"' in out and "scripts/install_torch.py" in out, out
    for tool in ("pytest", "nbval", "playwright", "papermill", "[test]", ",course", "[course"):  # the extra, not the module
        assert tool not in out, f"`make -n lab` mentions {tool!r}:\n{out}"
    full = subprocess.run(["make", "-n", "-B", "install", "VENV=/nonexistent-venv"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout
    assert 'pip install -e ".[lessons,course,test]"' in full, full
