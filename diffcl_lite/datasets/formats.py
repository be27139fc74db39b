"""Reading and writing the two on-disk dataset formats: MMRec and DiffMM.

Used in notebook 08 (real data): the public datasets of the DiffCL paper come either in the
MMRec layout (one ``<name>.inter`` table plus ``*_feat.npy`` files) or in the DiffMM layout
(pickled scipy matrices ``trnMat.pkl`` / ``valMat.pkl`` / ``tstMat.pkl`` plus ``*_feat.npy``).
Both loaders return a validated :class:`~diffcl_lite.data.RecDataset`.

MMRec layout (``folder/``)::

    baby.inter        tab-separated, header line; columns userID, itemID, x_label
                      (0 = train, 1 = valid, 2 = test); rating and timestamp optional
    image_feat.npy    (n_items, d_image) float, row i = item i
    text_feat.npy     (n_items, d_text)

DiffMM layout (``folder/``)::

    trnMat.pkl, valMat.pkl, tstMat.pkl   pickled scipy sparse matrices, users x items
    image_feat.npy, text_feat.npy, ...   float16 or float32, row i = item i

Every ``*_feat.npy`` file in the folder is one modality, named after the file stem without
``_feat`` (``audio_feat.npy`` -> ``"audio"``); modalities are ordered alphabetically unless
``features=[...]`` picks (and orders) them.

Pickled matrices are read with :func:`~diffcl_lite.datasets.pickles.safe_load_pickle` (never
``pickle.load``).
"""
from __future__ import annotations

import csv
import io as _io
import logging
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from ..data import SPLITS, RecDataset
from ..errors import DataFormatError
from ..fileutil import atomic_write_bytes
from .pickles import safe_load_pickle, save_sparse_pickle

log = logging.getLogger(__name__)

INTER_REQUIRED = ("userID", "itemID", "x_label")
INTER_OPTIONAL = ("rating", "timestamp")
DIFFMM_FILES = {"train": "trnMat.pkl", "valid": "valMat.pkl", "test": "tstMat.pkl"}
FEATURE_SUFFIX = "_feat.npy"
NO_LINES_FIX = ("Fix: add one line per interaction under the header (userID, itemID and x_label separated by tabs, "
                "e.g. '0\\t12\\t0'), or point to the .inter file that holds the interactions.")
#: ids may leave gaps (users without interactions), but n = max id + 1 beyond this many times the
#: number of distinct ids, plus ID_SLACK, means raw ids that were never remapped to 0..n-1
ID_GAP_FACTOR = 2
ID_SLACK = 100_000
MAX_IDS = 1 << 31  # more rows than any embedding table here can hold

__all__ = [
    "load_mmrec",
    "load_diffmm",
    "load_folder",
    "save_mmrec",
    "save_diffmm",
    "detect_format",
    "feature_files",
]


# ====================================================================== features
def feature_files(folder: "str | os.PathLike[str]") -> dict[str, Path]:
    """``{modality: path}`` for every ``*_feat.npy`` in ``folder``, alphabetical by modality."""
    folder = Path(folder)
    found = {p.name[: -len(FEATURE_SUFFIX)]: p for p in folder.glob(f"*{FEATURE_SUFFIX}") if p.is_file()}
    return {k: found[k] for k in sorted(found)}


def _select_features(folder: Path, features: Sequence[str] | None) -> dict[str, Path]:
    files = feature_files(folder)
    if features is None:
        return files
    if isinstance(features, str):
        features = [features]
    missing = [f for f in features if f not in files]
    if missing:
        raise DataFormatError(
            f"{folder}: no feature file for modality {missing} (looked for "
            f"{', '.join(m + FEATURE_SUFFIX for m in missing)}); available: {list(files) or 'none'}. "
            f"Fix: pass features=None for all, or a subset of {list(files)}."
        )
    return {f: files[f] for f in features}


def _load_feature(path: Path) -> np.ndarray:
    """Load one ``*_feat.npy`` (no pickles), as float32, checking shape and finiteness."""
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DataFormatError(
            f"{path}: cannot load ({exc}). Feature files must be plain numeric .npy arrays (no object arrays)."
        ) from None
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read the .npy file ({exc}); download it again.") from None
    if arr.ndim != 2:
        raise DataFormatError(f"{path}: features must be a 2-D array (n_items, d); got shape {arr.shape}.")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise DataFormatError(f"{path}: features have dtype {arr.dtype}; expected float16/float32/float64.")
    # float16 (DiffMM) and float64 both become float32, the dtype every model uses.
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise DataFormatError(
            f"{path}: {len(bad)} rows hold NaN or inf (first: row {int(bad[0])} = item {int(bad[0])}). "
            f"Fix: impute or zero those rows (e.g. np.nan_to_num) and save the file again."
        )
    return arr


def _load_features(files: dict[str, Path]) -> dict[str, np.ndarray]:
    feats = {name: _load_feature(p) for name, p in files.items()}
    rows = {files[k].name: v.shape[0] for k, v in feats.items()}
    if len(set(rows.values())) > 1:
        listing = ", ".join(f"{n}: {r} rows" for n, r in rows.items())
        raise DataFormatError(
            f"{next(iter(files.values())).parent}: the feature files disagree on the number of items ({listing}). "
            f"Fix: every feature file needs one row per item, in the same item order."
        )
    return feats


# ====================================================================== id sanity
def _remap_hint(source: Path) -> str:
    folder = source if source.is_dir() else source.parent
    return (f"Fix: remap the ids to 0..n-1 with `python -m diffcl_lite data remap {folder} {folder}-remapped` "
            f"(in Python: diffcl_lite.datasets.remap.remap_folder), then load {folder}-remapped.")


def _check_id_space(source: Path, what: str, n: int, distinct: int, detail: str = "") -> None:
    """Refuse an id space far larger than the ids in use (raw, un-remapped ids) or beyond memory."""
    if n > MAX_IDS or n > ID_GAP_FACTOR * distinct + ID_SLACK:
        raise DataFormatError(
            f"{source}: {what} ids run up to {n - 1:,}{detail} but only {distinct:,} distinct {what} ids occur; "
            f"n = max id + 1 = {n:,} rows would be allocated for them. The ids look like raw ids that were never "
            f"remapped to 0..n-1. {_remap_hint(source)}"
        )


def _drop_duplicates(source: Path, users: np.ndarray, items: np.ndarray, labels: np.ndarray,
                     line_of: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Drop repeated (user, item, split) rows, keeping the first; warn with their count."""
    n_items = int(items.max()) + 1 if len(items) else 1
    key = (users * n_items + items) * 3 + labels  # < 2^63: both id spaces were checked before
    _, first = np.unique(key, return_index=True)
    if len(first) == len(key):
        return users, items, labels, line_of
    keep = np.sort(first)
    dropped = np.setdiff1d(np.arange(len(key)), keep)
    where = f" (first: line {int(line_of[dropped[0]])})" if line_of is not None else ""
    log.warning("%s: dropped %d duplicate interaction row(s) (same user, item and split)%s", source, len(dropped), where)
    return users[keep], items[keep], labels[keep], (line_of[keep] if line_of is not None else None)


def _check_split_overlap(source: Path, users: np.ndarray, items: np.ndarray, labels: np.ndarray, allow: bool,
                         line_of: np.ndarray | None = None) -> None:
    """A (user, item) pair in two splits is an error unless ``allow`` (then a warning)."""
    n_items = int(items.max()) + 1 if len(items) else 1
    pair = users * n_items + items
    uniq, inverse, counts = np.unique(pair, return_inverse=True, return_counts=True)
    twice = counts[inverse] > 1
    if not twice.any():
        return
    n_pairs = int((counts > 1).sum())
    first = np.flatnonzero(twice)[0]
    same = np.flatnonzero(pair == pair[first])
    names = ("train", "valid", "test")
    if line_of is not None:
        where = " and ".join(f"line {int(line_of[j])} ({names[int(labels[j])]})" for j in same[:2])
    else:
        where = " and ".join(names[int(labels[j])] for j in same[:2])
    text = (f"{source}: {n_pairs} (user, item) pair(s) appear in two splits (first: user {int(users[first])}, "
            f"item {int(items[first])} in {where})")
    if allow:
        log.warning("%s; kept, as allow_split_overlap=True asks", text)
        return
    raise DataFormatError(
        f"{text}. Train items are excluded from the ranking, so such a valid/test item can never be hit. Fix: "
        f"remove one of the two rows, or pass allow_split_overlap=True (CLI: --allow-split-overlap) to keep them."
    )


# ====================================================================== MMRec
def _line_text(path: Path, lineno: int) -> str:
    """Text of line ``lineno`` (1-based) of a text file, for error messages."""
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        for i, line in enumerate(fh, start=1):
            if i == lineno:
                return line.rstrip("\r\n")
    return ""


def _find_inter(folder: Path, name: str | None) -> Path:
    inters = sorted(p.name for p in folder.glob("*.inter"))
    if name is not None:
        path = folder / (name if name.endswith(".inter") else f"{name}.inter")
        if not path.is_file():
            raise DataFormatError(
                f"{path}: not found; .inter files in {folder}: {inters or 'none'}. Fix: pass name= one of "
                f"{[i[:-6] for i in inters]}."
            )
        return path
    if len(inters) == 1:
        return folder / inters[0]
    if not inters:
        raise DataFormatError(
            f"{folder}: no .inter file found (MMRec format needs <name>.inter next to image_feat.npy / "
            f"text_feat.npy). Fix: point to the folder that holds e.g. baby.inter."
        )
    raise DataFormatError(
        f"{folder}: several .inter files ({', '.join(inters)}); pass name= one of {[i[:-6] for i in inters]}."
    )


def _read_inter(path: Path, with_lines: bool = False) -> Any:
    """Parse an MMRec ``.inter`` table into (users, items, labels) int64 arrays (and each row's line)."""
    raw_cols, cols = _inter_header(path)
    df = _inter_table(path, cols, raw_cols)
    users, items, labels, line_of = _inter_ids(path, df)
    return (users, items, labels, line_of) if with_lines else (users, items, labels)


def _inter_header(path: Path) -> tuple[list[str], list[str]]:
    """``(the header's fields, their column names)``; the required columns must be there."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        header_line = fh.readline().rstrip("\r\n")
    if not header_line.strip():
        raise DataFormatError(
            f"{path}: the first line is empty; expected a tab-separated header with columns "
            f"{', '.join(INTER_REQUIRED)} (rating, timestamp optional)."
        )
    raw_cols = header_line.split("\t")
    # RecBole-style headers ("userID:token") name the column before the colon.
    cols = [c.strip().split(":")[0] for c in raw_cols]
    missing = [c for c in INTER_REQUIRED if c not in cols]
    if missing:
        hint = ""
        if len(cols) == 1 and ("," in cols[0] or " " in cols[0]):
            hint = " The header has no tab: the file looks comma- or space-separated; MMRec .inter files are tab-separated."
        raise DataFormatError(
            f"{path}: missing column(s) {missing}; found columns {raw_cols}; required: "
            f"{list(INTER_REQUIRED)} (rating and timestamp are optional).{hint} Fix: the first line must be the "
            f"tab-separated header, e.g. 'userID\\titemID\\trating\\ttimestamp\\tx_label'."
        )
    return raw_cols, cols


def _inter_table(path: Path, cols: list[str], raw_cols: list[str]) -> Any:
    """The lines after the header as a string table (pandas); a line with more fields than the header raises."""
    import pandas as pd

    names = cols + ["__extra__"]
    try:
        df = pd.read_csv(
            path,
            sep="\t",
            header=None,
            skiprows=1,
            names=names,
            dtype=str,
            na_filter=False,
            skip_blank_lines=False,
            quoting=csv.QUOTE_NONE,
            index_col=False,
            encoding="utf-8",
            encoding_errors="replace",
        )
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{path}: the file has a header but no interaction lines. {NO_LINES_FIX}") from None
    except pd.errors.ParserError as exc:
        m = re.search(r"line (\d+)", str(exc))
        lineno = int(m.group(1)) if m else -1
        raise DataFormatError(
            f"{path}, line {lineno}: cannot parse the line {_line_text(path, lineno)!r}: it has more tab-separated "
            f"fields than the header ({len(cols)}). Fix: remove the extra fields or add the missing column names "
            f"to the header."
        ) from None
    except ValueError as exc:  # e.g. duplicate column names in the header
        raise DataFormatError(f"{path}: cannot read the table ({exc}). Fix: check the header line {raw_cols}.") from None
    if len(df) == 0:
        raise DataFormatError(f"{path}: the file has a header but no interaction lines. {NO_LINES_FIX}")
    extra = df["__extra__"].to_numpy() != ""
    if extra.any():
        lineno = int(np.flatnonzero(extra)[0]) + 2
        raise DataFormatError(
            f"{path}, line {lineno}: cannot parse the line {_line_text(path, lineno)!r}: it has more tab-separated "
            f"fields than the header ({len(cols)}). Fix: remove the extra fields or add the missing column names "
            f"to the header."
        )
    return df


def _inter_ids(path: Path, df: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(users, items, labels, file line of each)`` from the table; blank lines dropped, bad ids raise."""
    import pandas as pd

    values = {c: df[c].str.strip().to_numpy() for c in INTER_REQUIRED}
    blank = np.logical_and.reduce([v == "" for v in values.values()])
    out = []
    for c in INTER_REQUIRED:
        num = pd.to_numeric(pd.Series(values[c]), errors="coerce").to_numpy(dtype=np.float64)
        bad = (np.isnan(num) | (num != np.floor(num)) | (np.abs(num) > 2**62)) & ~blank
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            lineno = i + 2
            raise DataFormatError(
                f"{path}, line {lineno}: cannot read {c}={values[c][i]!r} as an integer; the line is "
                f"{_line_text(path, lineno)!r}. Fix: every line needs integer userID, itemID and x_label "
                f"separated by tabs (rating and timestamp may be empty); {bad.sum()} line(s) have this problem."
            )
        out.append(num[~blank].astype(np.int64))
    line_of = np.flatnonzero(~blank) + 2  # file line of each kept row
    users, items, labels = out
    if len(users) == 0:
        raise DataFormatError(f"{path}: the file has a header but no interaction lines. {NO_LINES_FIX}")
    for what, ids in (("userID", users), ("itemID", items)):
        if len(ids) and ids.min() < 0:
            i = int(np.argmax(ids < 0))
            raise DataFormatError(
                f"{path}, line {int(line_of[i])}: negative {what} {int(ids[i])} in {_line_text(path, int(line_of[i]))!r}. "
                f"Fix: MMRec ids are 0-based (0..n-1); remap the ids."
            )
    bad_label = ~np.isin(labels, (0, 1, 2))
    if bad_label.any():
        i = int(np.argmax(bad_label))
        raise DataFormatError(
            f"{path}, line {int(line_of[i])}: x_label={int(labels[i])} is not 0, 1 or 2 (train/valid/test); "
            f"values found: {sorted(set(np.unique(labels).tolist()))}. Fix: x_label must be 0 (train), 1 (valid) "
            f"or 2 (test)."
        )
    return users, items, labels, line_of


def load_mmrec(
    folder: "str | os.PathLike[str]", name: str | None = None, features: Sequence[str] | None = None,
    allow_split_overlap: bool = False,
) -> RecDataset:
    """Load an MMRec-format folder: ``<name>.inter`` + ``*_feat.npy``.

    ``name`` picks the ``.inter`` file (default: the only one in the folder). ``features``
    restricts (and orders) the modalities to load; ``[]`` loads none. ``n_users = max userID + 1``
    and ``n_items = max(max itemID + 1, feature rows)`` (MMRec ids are already 0-based and
    contiguous). Float16 features become float32. Used in notebook 08 (real data).

    Sanity checks: ids far beyond the number of distinct ids stop with a pointer to
    :func:`remap_folder`; repeated lines are dropped with a warning; a (user, item) pair in two
    splits is an error unless ``allow_split_overlap=True``.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataFormatError(f"{folder}: not a folder. Fix: pass the folder that holds <name>.inter and *_feat.npy.")
    inter = _find_inter(folder, name)
    users, items, labels, line_of = _read_inter(inter, with_lines=True)
    for what, ids in (("user", users), ("item", items)):
        top = int(ids.max())
        i = int(np.argmax(ids == top))
        _check_id_space(inter, what, top + 1, len(np.unique(ids)), f" (line {int(line_of[i])})")
    users, items, labels, line_of = _drop_duplicates(inter, users, items, labels, line_of)
    _check_split_overlap(inter, users, items, labels, allow_split_overlap, line_of)
    feats = _load_features(_select_features(folder, features))
    n_users = int(users.max()) + 1
    max_item = int(items.max())
    if feats:
        first_name, first = next(iter(feats.items()))
        rows = first.shape[0]
        if max_item >= rows:
            i = int(np.argmax(items == max_item))
            raise DataFormatError(
                f"{inter}: itemID {max_item} is out of range for the features: {first_name}{FEATURE_SUFFIX} has "
                f"{rows} rows (items 0..{rows - 1}). Fix: use the feature files that belong to this .inter file "
                f"(row i describes item i)."
            )
        n_items = max(max_item + 1, rows)
    else:
        n_items = max_item + 1
    splits = {}
    for k, split in enumerate(SPLITS):
        mask = labels == k
        if not mask.any():
            raise DataFormatError(
                f"{inter}: the {split} split has no users: no line has x_label={k}. Fix: x_label must mark "
                f"train (0), valid (1) and test (2) interactions; build them with diffcl_lite.data.split_per_user() "
                f"if the file has no split."
            )
        splits[split] = np.stack([users[mask], items[mask]], axis=1)
    return _dataset(inter.stem, "mmrec", inter, folder, n_users, n_items, feats, splits)


# ====================================================================== DiffMM
def _matrix_pairs(m: Any, source: str) -> tuple[np.ndarray, int, int]:
    """(user, item) pairs of the non-zero entries, sorted; how many values were not 0/1; how many repeated."""
    if m.format == "coo":
        row, col = np.asarray(m.row, dtype=np.int64), np.asarray(m.col, dtype=np.int64)
        data = np.asarray(m.data)
    else:  # csr, already checked by check_format
        row = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        col = np.asarray(m.indices, dtype=np.int64)
        data = np.asarray(m.data)
    if data.dtype == bool:
        data = data.astype(np.int8)
    nonzero = data != 0
    non_binary = int(np.count_nonzero(nonzero & (data != 1)))
    all_keys = row[nonzero] * int(m.shape[1]) + col[nonzero]  # < 2^62: the shape was checked before
    keys = np.unique(all_keys)
    pairs = np.stack([keys // int(m.shape[1]), keys % int(m.shape[1])], axis=1)
    return pairs, non_binary, int(len(all_keys) - len(keys))


def _matrix_rows_cols(m: Any) -> tuple[np.ndarray, np.ndarray]:
    if m.format == "coo":
        return np.asarray(m.row, dtype=np.int64), np.asarray(m.col, dtype=np.int64)
    return np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr)), np.asarray(m.indices, dtype=np.int64)


def _check_diffmm_shape(folder: Path, mats: dict[str, Any]) -> None:
    """The pickled shape must be close to the ids in use (see :func:`_check_id_space`)."""
    n_users, n_items = (int(x) for x in mats["train"].shape)
    rows, cols = zip(*(_matrix_rows_cols(m) for m in mats.values()))
    used_rows, used_cols = np.unique(np.concatenate(rows)), np.unique(np.concatenate(cols))
    path = folder / DIFFMM_FILES["train"]
    shape = f" (the pickled shape is {n_users:,} x {n_items:,})"
    _check_id_space(path, "user", n_users, len(used_rows), shape)
    _check_id_space(path, "item", n_items, len(used_cols), shape)


def load_diffmm(folder: "str | os.PathLike[str]", features: Sequence[str] | None = None,
                allow_split_overlap: bool = False) -> RecDataset:
    """Load a DiffMM-format folder: ``trnMat.pkl``, ``valMat.pkl``, ``tstMat.pkl`` + ``*_feat.npy``.

    The three matrices (users x items) are read with :func:`safe_load_pickle` and must have the
    same shape. Stored values that are not 0/1 are binarised (``value != 0`` means an interaction;
    explicit zeros are dropped) and a logging warning says how many values were changed.
    Feature files must have exactly ``n_items`` rows; float16 becomes float32. A shape far beyond
    the ids in use stops with a pointer to :func:`remap_folder`; repeated entries are dropped with
    a warning; a (user, item) pair in two matrices is an error unless ``allow_split_overlap=True``.
    Used in notebook 08 (real data).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataFormatError(f"{folder}: not a folder. Fix: pass the folder that holds trnMat.pkl, valMat.pkl, tstMat.pkl.")
    mats: dict[str, Any] = {}
    for split, fname in DIFFMM_FILES.items():
        path = folder / fname
        if not path.is_file():
            raise DataFormatError(
                f"{path}: missing; the DiffMM format needs {', '.join(DIFFMM_FILES.values())} in one folder "
                f"(some DiffMM copies ship without valMat.pkl). Fix: copy the file from the original dataset, "
                f"or load the interactions yourself and build the splits with diffcl_lite.data.split_per_user()."
            )
        mats[split] = safe_load_pickle(path)
    shapes = {DIFFMM_FILES[s]: tuple(int(x) for x in m.shape) for s, m in mats.items()}
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{f}: {s[0]} x {s[1]}" for f, s in shapes.items())
        raise DataFormatError(
            f"{folder}: the interaction matrices disagree on their shape ({listing}). Fix: all three must be "
            f"n_users x n_items matrices of the same dataset."
        )
    n_users, n_items = shapes[DIFFMM_FILES["train"]]
    _check_diffmm_shape(folder, mats)
    splits = {}
    for split, m in mats.items():
        path = folder / DIFFMM_FILES[split]
        pairs, non_binary, repeated = _matrix_pairs(m, str(path))
        if non_binary:
            log.warning(
                "%s: %d stored values are not 0/1; binarised (value != 0 -> interaction)", path, non_binary
            )
        if repeated:
            log.warning("%s: dropped %d duplicate (user, item) entries", path, repeated)
        if len(pairs) == 0:
            raise DataFormatError(
                f"{path}: the {split} split has no users (no non-zero entry). Fix: use the {DIFFMM_FILES[split]} "
                f"that belongs to this dataset."
            )
        splits[split] = pairs
    stacked = np.concatenate([splits[s] for s in SPLITS])
    labels = np.concatenate([np.full(len(splits[s]), k, dtype=np.int64) for k, s in enumerate(SPLITS)])
    _check_split_overlap(folder, stacked[:, 0], stacked[:, 1], labels, allow_split_overlap)
    files = _select_features(folder, features)
    feats = _load_features(files)
    for mod, arr in feats.items():
        if arr.shape[0] != n_items:
            raise DataFormatError(
                f"{files[mod]}: has {arr.shape[0]} rows but {DIFFMM_FILES['train']} has {n_items} items (columns). "
                f"Fix: use the feature file that belongs to this interaction data (row i describes item i)."
            )
    return _dataset(folder.name, "diffmm", folder, folder, n_users, n_items, feats, splits)


def _dataset(name: str, fmt: str, source: Path, folder: Path, n_users: int, n_items: int,
             feats: dict[str, np.ndarray], splits: dict[str, np.ndarray]) -> RecDataset:
    """The loaded :class:`RecDataset`, validated (its errors name ``source``); ``meta`` says where it came from."""
    meta = {"source": str(source), "format": fmt, "folder": str(folder)}
    ds = RecDataset(name=name, n_users=n_users, n_items=n_items, features=feats, meta=meta, **splits)
    return ds.validate(source=str(source))


# ====================================================================== detection
def detect_format(folder: "str | os.PathLike[str]") -> str:
    """``"diffmm"`` if ``folder`` has ``trnMat.pkl``, ``"mmrec"`` if it has a ``*.inter`` file."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataFormatError(f"{folder}: not a folder (or it does not exist).")
    if (folder / DIFFMM_FILES["train"]).is_file():
        return "diffmm"
    if any(folder.glob("*.inter")):
        return "mmrec"
    listing = sorted(p.name for p in folder.iterdir())[:20]
    raise DataFormatError(
        f"{folder}: cannot tell the dataset format: no trnMat.pkl (DiffMM) and no *.inter file (MMRec); "
        f"found {listing or 'nothing'}. Fix: point to a DiffMM or MMRec dataset folder."
    )


def load_folder(path: "str | os.PathLike[str]", format: str = "auto", **kwargs: Any) -> RecDataset:
    """Load a dataset folder in MMRec or DiffMM format (``format="auto"`` detects it).

    Extra keyword arguments go to :func:`load_mmrec` / :func:`load_diffmm` (e.g. ``features=``).
    """
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "mmrec":
        return load_mmrec(path, **kwargs)
    if fmt == "diffmm":
        return load_diffmm(path, **kwargs)
    raise DataFormatError(f"format={format!r} is not known; use 'auto', 'mmrec' or 'diffmm'.")


# ====================================================================== writers
def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = _io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _write_features(dataset: RecDataset, folder: Path, dtype: Any) -> list[Path]:
    written = []
    for mod, arr in dataset.features.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", mod):
            raise DataFormatError(f"feature name {mod!r} cannot be a file name; use letters, digits, '-', '_' or '.'.")
        path = folder / f"{mod}{FEATURE_SUFFIX}"
        atomic_write_bytes(path, _npy_bytes(np.asarray(arr, dtype=dtype)))
        written.append(path)
    return written


def save_mmrec(
    dataset: RecDataset, folder: "str | os.PathLike[str]", name: str | None = None, feature_dtype: Any = np.float32
) -> Path:
    """Write ``dataset`` as an MMRec folder (``<name>.inter`` + ``<modality>_feat.npy``), each file atomically.

    The ``.inter`` table has columns userID, itemID, x_label. Reading it back gives the same
    interactions and features; ``n_users`` / ``n_items`` are recomputed from the ids (and the
    feature rows), so users without any interaction at the end of the id range are not kept.
    Returns the path of the ``.inter`` file.
    """
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    stem = name or re.sub(r"[^A-Za-z0-9._-]+", "_", dataset.name) or "dataset"
    lines = ["userID\titemID\tx_label"]
    for k, split in enumerate(SPLITS):
        pairs = dataset.split(split)
        lines.extend(f"{u}\t{i}\t{k}" for u, i in pairs.tolist())
    all_users = np.concatenate([dataset.split(s)[:, 0] for s in SPLITS])
    if len(all_users) and int(all_users.max()) + 1 != dataset.n_users:
        log.warning(
            "save_mmrec: users %d..%d have no interaction; MMRec files cannot keep them (n_users is read back as %d)",
            int(all_users.max()) + 1, dataset.n_users - 1, int(all_users.max()) + 1,
        )
    path = folder / f"{stem}.inter"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
    _write_features(dataset, folder, feature_dtype)
    return path


def save_diffmm(dataset: RecDataset, folder: "str | os.PathLike[str]", feature_dtype: Any = np.float32) -> Path:
    """Write ``dataset`` as a DiffMM folder (``trnMat/valMat/tstMat.pkl`` + ``<modality>_feat.npy``), atomically.

    Matrices are ``scipy.sparse.coo_matrix`` of shape ``(n_users, n_items)`` with float32 ones,
    pickled with protocol 4. ``feature_dtype=np.float16`` mimics the original DiffMM files.
    Returns the folder.
    """
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    for split, fname in DIFFMM_FILES.items():
        pairs = dataset.split(split)
        m = sp.coo_matrix(
            (np.ones(len(pairs), dtype=np.float32), (pairs[:, 0], pairs[:, 1])), shape=(dataset.n_users, dataset.n_items)
        )
        save_sparse_pickle(m, folder / fname)
    _write_features(dataset, folder, feature_dtype)
    return folder
