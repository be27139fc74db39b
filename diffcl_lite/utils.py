"""Small helpers used everywhere: device choice, seeding, hashing.

Introduced in notebook 00 (welcome): ``get_device()`` and ``seed_everything()`` are the first
two calls of every notebook (through ``diffcl_lite.lessons.notebook.setup_notebook``).
"""
from __future__ import annotations

import hashlib
import logging
import os
import random
from typing import Any, Mapping

import numpy as np
import torch

from .errors import DiffCLError

log = logging.getLogger(__name__)

__all__ = ["get_device", "seed_everything", "features_hash", "to_numpy"]

_DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def get_device(preference: str | torch.device | None = "auto") -> torch.device:
    """Return the device to compute on: CUDA, then Apple MPS, then CPU.

    ``preference`` may force one of ``"cpu"``, ``"cuda"``, ``"mps"`` (or ``"cuda:1"``); ``"auto"``
    (or ``None``) picks the best available one. The environment variable ``DIFFCL_DEVICE``
    overrides ``"auto"``. Asking for a device that is not available raises a ``DiffCLError``.
    """
    if isinstance(preference, torch.device):
        return preference
    pref = (preference or "auto").lower()
    source = f"device={preference!r}"
    if pref == "auto" and os.environ.get("DIFFCL_DEVICE"):
        pref = os.environ["DIFFCL_DEVICE"].lower()
        source = f"the environment variable DIFFCL_DEVICE={os.environ['DIFFCL_DEVICE']!r}"
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = pref.split(":")[0]
    if kind not in _DEVICE_CHOICES:
        raise DiffCLError(f"{source} is not known; use one of {', '.join(_DEVICE_CHOICES)}.")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DiffCLError(
            f"{source} asks for CUDA, but CUDA is not available in this PyTorch "
            f"(torch {torch.__version__}); use 'auto' or 'cpu', or install a CUDA build of torch."
        )
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DiffCLError(f"{source} asks for Apple MPS, but it is not available; use 'auto' or 'cpu'.")
    return torch.device(pref)


def seed_everything(seed: int, deterministic: bool = True) -> int:
    """Seed Python, NumPy and PyTorch (CPU and all GPUs) with one number.

    With ``deterministic=True`` PyTorch is asked for deterministic algorithms where they exist
    (``warn_only`` so that CUDA kernels without a deterministic version still run). The same
    seed gives bit-identical numbers on CPU. Returns the seed.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DiffCLError(f"seed={seed!r} must be a non-negative integer.")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
    return seed


def features_hash(features: Mapping[str, np.ndarray], **params: Any) -> str:
    """A sha256 over named arrays (name, shape, dtype, bytes) and keyword parameters.

    Used as a cache key, e.g. for the frozen item-item graph (notebook 02).
    """
    h = hashlib.sha256()
    for name in sorted(features):
        arr = np.ascontiguousarray(features[name])
        h.update(name.encode())
        h.update(str(arr.shape).encode())
        h.update(str(arr.dtype).encode())
        h.update(arr.tobytes())
    for key in sorted(params):
        h.update(f"{key}={params[key]!r}".encode())
    return h.hexdigest()


def to_numpy(x: Any) -> np.ndarray:
    """``x`` as a numpy array: a tensor is detached and moved to the CPU first (same dtype, no copy if possible)."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
