"""What lets the project run on machines other than the developers': the torch installer, the Colab
install cell, plotly's own renderer detection, Binder, and the licence files."""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from unittest import mock

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _load_install_torch():
    spec = importlib.util.spec_from_file_location("install_torch", REPO / "scripts" / "install_torch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------ torch installer
def test_torch_index_choice():
    it = _load_install_torch()
    assert it.choose_index("auto", system="Linux", nvidia=False) == it.CPU_INDEX
    assert it.choose_index("auto", system="Linux", nvidia=True) is None  # the default (CUDA) build
    assert it.choose_index("auto", system="Darwin", nvidia=False) is None
    assert it.choose_index("auto", system="Windows", nvidia=False) is None
    assert it.choose_index("cpu") == it.CPU_INDEX
    assert it.choose_index("default") is None
    url = "https://download.pytorch.org/whl/cu126"
    assert it.choose_index(url) == url
    with pytest.raises(SystemExit, match="TORCH_INDEX"):
        it.choose_index("cuda please")


def test_torch_pip_command():
    it = _load_install_torch()
    assert it.pip_command("torch==2.13.0", it.CPU_INDEX, python="py") == [
        "py", "-m", "pip", "install", "torch==2.13.0", "--index-url", it.CPU_INDEX]
    assert it.pip_command("torch==2.13.0", None, python="py") == ["py", "-m", "pip", "install", "torch==2.13.0"]


def test_unreachable_torch_index_falls_back_in_one_line():
    it = _load_install_torch()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/whl/cpu"
    assert not it.reachable(url, timeout=2)
    calls = []
    with mock.patch.object(it.subprocess, "call", side_effect=lambda cmd: calls.append(cmd) or 0), \
            mock.patch("builtins.print") as printed:
        assert it.main(["--spec", "torch==2.13.0", "--index", url]) == 0
    assert calls == [[sys.executable, "-m", "pip", "install", "torch==2.13.0"]]
    lines = [str(c.args[0]) for c in printed.call_args_list]
    assert any("cannot be reached" in line and "default index instead" in line for line in lines), lines


def test_makefile_installs_torch_through_the_installer():
    text = (REPO / "Makefile").read_text()
    assert 'scripts/install_torch.py --spec "$(TORCH_SPEC)" --index "$(TORCH_INDEX)"' in text
    assert "TORCH_INDEX ?= auto" in text


# ------------------------------------------------------------------------------ Colab / Binder
def _install_block(notebook: str) -> str:
    nb = json.loads((REPO / "notebooks" / notebook).read_text())
    source = "".join(nb["cells"][2]["source"])
    return source.split("\n\n", 1)[0]


def test_install_cell_is_a_no_op_where_the_package_is_installed():
    with mock.patch("subprocess.check_call", side_effect=AssertionError("must not install")):
        exec(compile(_install_block("00_welcome.ipynb"), "install-cell", "exec"), {})


def test_install_cell_builds_the_right_pip_command_when_missing():
    calls = []
    with mock.patch("importlib.util.find_spec", return_value=None), \
            mock.patch("subprocess.check_call", side_effect=lambda cmd: calls.append(cmd)):
        exec(compile(_install_block("05_contrastive_views.ipynb"), "install-cell", "exec"), {})
    repo = PYPROJECT["project"]["urls"]["Repository"]
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", f"diffcl-lite[lessons] @ git+{repo}"]]


def test_setup_notebook_leaves_the_plotly_renderer_to_plotly():
    code = ("import os; from diffcl_lite.lessons.notebook import setup_notebook; setup_notebook(); "
            "import plotly.io as pio; print(repr(os.environ.get('PLOTLY_RENDERER'))); print(repr(pio.renderers.default))")
    env = {k: v for k, v in os.environ.items() if k != "PLOTLY_RENDERER"}
    plain = subprocess.run([sys.executable, "-c", "import plotly.io as pio; print(repr(pio.renderers.default))"],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    forced, default = out.stdout.strip().splitlines()[-2:]
    assert forced == "None", "setup_notebook must not set PLOTLY_RENDERER"
    assert default == plain, "plotly's own environment detection must decide the renderer"


def test_binder_registers_the_kernel():
    post = REPO / "binder" / "postBuild"
    assert post.exists() and os.access(post, os.X_OK), "binder/postBuild must exist and be executable"
    text = post.read_text()
    assert "pip install" in text and "ipykernel install" in text and "diffcl-lite" in text
    readme = (REPO / "README.md").read_text()
    assert "mybinder.org" in readme and "colab.research.google.com" in readme


# ------------------------------------------------------------------------------ licence, citation
def test_licence_files_and_metadata():
    for name in PYPROJECT["project"]["license-files"]:
        assert (REPO / name).is_file(), f"pyproject lists {name} as a licence file"
    assert "MIT" in (REPO / "LICENSE").read_text() and "Creative Commons" in (REPO / "LICENSE-notebooks").read_text()
    assert PYPROJECT["project"]["license"] == "MIT AND CC-BY-4.0"
    data = PYPROJECT["tool"]["setuptools"]["package-data"]["diffcl_lite"]
    if "py.typed" in data:
        assert (REPO / "diffcl_lite" / "py.typed").is_file()


def test_citation_cites_the_paper_and_the_package():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"].startswith("1.2") and cff["title"] and cff["version"] == PYPROJECT["project"]["version"]
    ref = cff["preferred-citation"] if "2501.01066" in str(cff.get("preferred-citation")) else None
    refs = [r for r in cff.get("references", []) if "2501.01066" in str(r)]
    assert ref or refs, "CITATION.cff must cite the DiffCL paper (arXiv 2501.01066)"
