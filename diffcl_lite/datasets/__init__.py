"""Datasets: named synthetic and public datasets, the two file formats, verified downloads, data cards.

One call gives a validated :class:`~diffcl_lite.data.RecDataset`::

    from diffcl_lite import datasets
    ds = datasets.load("synthetic")              # small, instant, the default of every notebook
    ds = datasets.load("synthetic-baby")         # Amazon-Baby sized, made up (no download)
    ds = datasets.load("tiktok")                 # downloads the DiffMM copy once (about 15 MB)
    ds = datasets.load("mmrec:/data/baby")       # an MMRec folder you downloaded yourself
    print(datasets.data_card("tiktok"))          # source, terms, sizes, citation

=============  ==================================================================
module         what it holds
=============  ==================================================================
``registry``   ``DatasetSpec``, ``RemoteFile``, ``REGISTRY``, ``list_datasets``, ``data_card``
``download``   the bounded pooch downloader, pinned sizes and blob ids, the cache, ``fetch``
``loading``    ``load``: registered names, ``mmrec:``/``diffmm:`` folders, plain folders
``formats``    the MMRec and DiffMM layouts: readers, writers, ``detect_format``
``remap``      ``remap_ids``, ``remap_folder``: raw ids renumbered 0..n-1 (``data remap``)
``pickles``    the restricted unpickler (``safe_load_pickle``) and ``save_sparse_pickle``
``cards/``     one markdown data card per dataset
=============  ==================================================================

Used from notebook 08 (real data) and the command line (``data list|card|download|remap``).
Only :mod:`diffcl_lite.data` (the dataset container and ``make_synthetic``) and the small
``errors``/``fileutil`` helpers are imported from the rest of the package. ``import
diffcl_lite.datasets`` needs neither numpy nor torch: the formats load on first use.
The package never ships the data files themselves: their terms do not allow redistribution.
"""
from __future__ import annotations

import importlib
from typing import Any

from .download import cache_dir, fetch, git_blob_sha1
from .loading import load
from .registry import (DIFFMM_BASE, DIFFMM_COMMIT, REGISTRY, DatasetSpec, RemoteFile, data_card, list_datasets,
                       register, unregister)

#: names of the format modules, loaded on first use (they import numpy and scipy)
_LAZY = {name: "formats" for name in ("load_mmrec", "load_diffmm", "load_folder", "save_mmrec", "save_diffmm",
                                       "detect_format", "feature_files")}
_LAZY.update({"remap_ids": "remap", "remap_folder": "remap", "safe_load_pickle": "pickles", "save_sparse_pickle": "pickles"})


def __getattr__(name: str) -> Any:
    """``datasets.load_folder``, ``datasets.safe_load_pickle``, ...: the format functions, imported on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "RemoteFile",
    "DatasetSpec",
    "REGISTRY",
    "DIFFMM_BASE",
    "DIFFMM_COMMIT",
    "register",
    "unregister",
    "load",
    "fetch",
    "list_datasets",
    "data_card",
    "cache_dir",
    "git_blob_sha1",
]
