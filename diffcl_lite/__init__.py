"""diffcl_lite — DiffCL (diffusion-based contrastive learning for multimodal recommendation), explained.

One module per concept of the method:

=================  ==========================================================  ==========
module             what it holds                                              notebook
=================  ==========================================================  ==========
``data``           ``RecDataset``, ``make_synthetic``, ``split_per_user``       00
``io``             MMRec / DiffMM file formats, the restricted unpickler       08
``datasets``       named datasets, checksum-verified downloads, data cards     08
``graphs``         normalised user-item graph, LightGCN, kNN item-item graph   01, 02
``diffusion``      noise schedules, ``q_sample``, ``p_sample``, the denoiser    03, 04
``views``          diffusion views and random-noise (SimGCL) views            05
``losses``         BPR, InfoNCE, ID-anchored alignment, L2                     05, 06
``model``          ``DiffCL``, ``LightGCN``, ``MF``, ``DiffCLConfig``           08
``training``       sampler, early stopping, checkpoints, ``run_experiment``    08
``evaluation``     full-ranking Recall / NDCG / Precision@K                    08
``viz``            figures and the UMAP/PCA 2-D helper                         all
``widgets``        thin ipywidgets wrappers over pure functions               01-07
=================  ==========================================================  ==========

Heavy optional libraries (umap, plotly, ipywidgets) are imported only inside the functions
that need them. ``import diffcl_lite`` itself imports neither torch nor scipy: the names below
are loaded on first use (so ``python -m diffcl_lite --help`` answers at once).
"""
from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from .errors import DataFormatError, DiffCLError, DownloadError

if TYPE_CHECKING:  # pragma: no cover
    from .data import RecDataset, make_synthetic, split_per_user
    from .utils import get_device, seed_everything

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

_LAZY = {"RecDataset": "data", "make_synthetic": "data", "split_per_user": "data",
         "get_device": "utils", "seed_everything": "utils"}


def __getattr__(name: str) -> Any:
    """Load ``RecDataset``, ``make_synthetic``, ... (numpy, scipy, torch) on first use (PEP 562)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "RecDataset", "make_synthetic", "split_per_user", "DiffCLError", "DataFormatError", "DownloadError",
    "get_device", "seed_everything", "__version__",
]
