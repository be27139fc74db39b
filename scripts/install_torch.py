"""Install PyTorch into the current environment, choosing the build that suits this machine.

Run by ``make install`` / ``make lab`` before the package itself (``pyproject.toml`` only asks for
``torch>=2.2``, which the torch installed here then satisfies, so pip pulls nothing more)::

    python scripts/install_torch.py --spec "torch==2.13.0" --index auto

``--index`` (``make ... TORCH_INDEX=...``):

* ``auto`` (default): on Linux without an NVIDIA GPU, PyTorch's CPU wheel index
  (https://download.pytorch.org/whl/cpu, about 200 MB instead of several GB of CUDA wheels);
  everywhere else (an NVIDIA GPU, macOS, Windows) the default index, whose wheels carry CUDA on
  Linux and are CPU/MPS builds on macOS;
* ``cpu``: PyTorch's CPU wheel index on any system;
* ``default``: pip's configured index (PyPI unless pip.conf says otherwise);
* any URL: that index (for example https://download.pytorch.org/whl/cu126 for a CUDA 12.6 build).

When the chosen PyTorch index cannot be reached (offline mirrors, firewalls), the script says so in
one line and installs the same spec from the default index instead. Standard library only: it runs
before anything else is installed.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def has_nvidia_gpu() -> bool:
    """True when an NVIDIA driver is loaded (``/proc/driver/nvidia``) or ``nvidia-smi`` lists a GPU."""
    if os.path.exists("/proc/driver/nvidia/version"):
        return True
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def choose_index(index: str, system: str | None = None, nvidia: bool | None = None) -> str | None:
    """The index URL to install torch from, or ``None`` for pip's default index."""
    index = index.strip()
    if index in ("default", "pypi", ""):
        return None
    if index == "cpu":
        return CPU_INDEX
    if index == "auto":
        system = system or platform.system()
        if system != "Linux":
            return None
        return None if (has_nvidia_gpu() if nvidia is None else nvidia) else CPU_INDEX
    if index.startswith(("http://", "https://", "file://")):
        return index
    raise SystemExit(f"install_torch: --index {index!r} is not auto, cpu, default or an index URL "
                     f"(e.g. {CPU_INDEX}); set TORCH_INDEX accordingly.")


def reachable(url: str, timeout: float = 10.0) -> bool:
    """True when ``url`` answers an HTTP request within ``timeout`` seconds."""
    if url.startswith("file://"):
        return os.path.isdir(url[len("file://"):])
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=timeout):
            return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def pip_command(spec: str, index_url: str | None, python: str = sys.executable) -> list[str]:
    """The pip command line that installs ``spec`` (from ``index_url`` when given)."""
    cmd = [python, "-m", "pip", "install", spec]
    if index_url:
        cmd += ["--index-url", index_url]
    return cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=os.environ.get("TORCH_SPEC", "torch==2.13.0"),
                        help="pip requirement for torch [torch==2.13.0]")
    parser.add_argument("--index", default=os.environ.get("TORCH_INDEX", "auto"),
                        help="auto, cpu, default or an index URL [auto]")
    parser.add_argument("--dry-run", action="store_true", help="print the pip command instead of running it")
    args = parser.parse_args(argv)
    index_url = choose_index(args.index)
    if index_url and not args.dry_run and not reachable(index_url):
        print(f"install_torch: {index_url} cannot be reached; installing {args.spec} from the default index instead",
              flush=True)
        index_url = None
    cmd = pip_command(args.spec, index_url)
    machine = f"{platform.system()} {platform.machine()}"
    if platform.system() == "Linux":
        machine += ", NVIDIA GPU" if has_nvidia_gpu() else ", no NVIDIA GPU"
    print(f"install_torch: {args.spec} from {index_url or 'the default index'} ({machine})", flush=True)
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
