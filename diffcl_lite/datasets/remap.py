"""Raw ids renumbered 0..n-1: ``remap_ids`` and ``remap_folder`` (``python -m diffcl_lite data remap``)."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ..data import SPLITS
from ..errors import DataFormatError
from ..fileutil import atomic_write_bytes
from .formats import (DIFFMM_FILES, _find_inter, _matrix_rows_cols, _npy_bytes, _read_inter, detect_format, feature_files)
from .pickles import safe_load_pickle, save_sparse_pickle

log = logging.getLogger(__name__)

__all__ = ["remap_ids", "remap_folder"]


def remap_ids(ids: "np.ndarray | Sequence[int]") -> tuple[np.ndarray, np.ndarray]:
    """``(new, original)``: ids renumbered 0..k-1 in increasing order of the original id.

    ``original[new[j]] == ids[j]``; ``original`` is the sorted array of distinct ids (the map
    back). Use it to compact raw user/item ids before building a dataset.
    """
    arr = np.asarray(ids)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise DataFormatError(f"remap_ids: ids must be integers, got dtype {arr.dtype}.")
    original, new = np.unique(arr.astype(np.int64, copy=False), return_inverse=True)
    return new.reshape(arr.shape).astype(np.int64), original


def _write_id_map(path: Path, original: np.ndarray) -> None:
    lines = ["new_id,original_id"] + [f"{j},{int(v)}" for j, v in enumerate(original.tolist())]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


def remap_folder(src: "str | os.PathLike[str]", dst: "str | os.PathLike[str]", items: bool | None = None) -> Path:
    """Copy a dataset folder with its ids renumbered 0..n-1; write the maps back; return ``dst``.

    User ids are always compacted (``user_ids.csv``: ``new_id,original_id``). Item ids are compacted
    when ``items=True``, or by default when the folder has no feature files: with feature files,
    row i of every ``*_feat.npy`` describes item i, so with ``items=True`` the rows are reordered
    too (``item_ids.csv``). MMRec folders keep the columns userID, itemID and x_label; DiffMM
    folders get matrices of the compacted shape. Every file is written atomically; ``dst`` must
    not be ``src``.
    """
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if dst.resolve() == src.resolve():
        raise DataFormatError(f"remap_folder: {dst} is the source folder; write the remapped copy to another folder.")
    fmt = detect_format(src)
    feat_files = feature_files(src)
    do_items = (not feat_files) if items is None else bool(items)
    if fmt == "mmrec":
        inter = _find_inter(src, None)
        users, its, labels = _read_inter(inter)
        splits = [(users[labels == k], its[labels == k]) for k in range(3)]
        out_name = inter.name
    else:
        mats = [safe_load_pickle(src / DIFFMM_FILES[s]) for s in SPLITS]
        splits = []
        for m in mats:
            r, c = _matrix_rows_cols(m)
            splits.append((r, c))
        out_name = ""
    all_u = np.concatenate([u for u, _ in splits])
    all_i = np.concatenate([i for _, i in splits])
    new_u, orig_u = remap_ids(all_u)
    if do_items:
        new_i, orig_i = remap_ids(all_i)
    else:
        new_i, orig_i = all_i, None
    dst.mkdir(parents=True, exist_ok=True)
    bounds = np.cumsum([0] + [len(u) for u, _ in splits])
    if fmt == "mmrec":
        lines = ["userID\titemID\tx_label"]
        for k in range(3):
            a, b = bounds[k], bounds[k + 1]
            lines.extend(f"{u}\t{i}\t{k}" for u, i in zip(new_u[a:b].tolist(), new_i[a:b].tolist()))
        atomic_write_bytes(dst / out_name, ("\n".join(lines) + "\n").encode("utf-8"))
    else:
        if orig_i is not None:
            n_items = len(orig_i)
        elif feat_files:  # row i = item i: keep the features' item count
            n_items = int(np.load(next(iter(feat_files.values())), mmap_mode="r", allow_pickle=False).shape[0])
        else:
            n_items = int(all_i.max()) + 1
        for k, s in enumerate(SPLITS):
            a, b = bounds[k], bounds[k + 1]
            m = sp.coo_matrix((np.ones(b - a, dtype=np.float32), (new_u[a:b], new_i[a:b])), shape=(len(orig_u), n_items))
            save_sparse_pickle(m, dst / DIFFMM_FILES[s])
    _write_id_map(dst / "user_ids.csv", orig_u)
    if orig_i is not None:
        _write_id_map(dst / "item_ids.csv", orig_i)
    for mod, path in feat_files.items():
        arr = np.load(path, allow_pickle=False)
        if orig_i is not None:
            if len(orig_i) and int(orig_i.max()) >= arr.shape[0]:
                raise DataFormatError(
                    f"{path}: has {arr.shape[0]} rows but item id {int(orig_i.max())} occurs; the features cannot be "
                    f"reordered. Fix: use the feature files that belong to these interactions."
                )
            arr = arr[orig_i]
        atomic_write_bytes(dst / path.name, _npy_bytes(arr))
    log.info("remapped %s -> %s: %d users%s", src, dst, len(orig_u), f", {len(orig_i)} items" if orig_i is not None else "")
    return dst
