"""``load(name)``: a registered name, a ``mmrec:``/``diffmm:`` folder or a plain folder, as a validated dataset."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataFormatError, DiffCLError
from .download import _fetch, fetch
from .registry import MMREC_PUBLISHED, REGISTRY, DatasetSpec, list_datasets

if TYPE_CHECKING:  # numpy / scipy are imported when a dataset is loaded, not for `data list`
    from ..data import RecDataset

log = logging.getLogger(__name__)

__all__ = ["FETCH_KEYS", "load"]


def _check_expected(ds: "RecDataset", expected: dict[str, int], label: str) -> None:
    got = {
        "users": ds.n_users,
        "items": ds.n_items,
        "train": len(ds.train),
        "valid": len(ds.valid),
        "test": len(ds.test),
        "interactions": len(ds.train) + len(ds.valid) + len(ds.test),
    }
    diffs = [f"{k}: {got[k]:,} (published {v:,})" for k, v in expected.items() if k in got and got[k] != v]
    if diffs:
        log.warning("%s differs from the published sizes: %s", label, "; ".join(diffs))


def _check_mmrec_published(ds: "RecDataset", folder: Path) -> None:
    key = next((k for k in (ds.name.lower(), folder.name.lower()) if k in MMREC_PUBLISHED), None)
    if key is None:
        return
    users, items, inter = MMREC_PUBLISHED[key]
    _check_expected(ds, {"users": users, "items": items, "interactions": inter}, f"{folder} (MMRec {key})")


FETCH_KEYS = ("base_url", "progress", "timeout", "rehash", "retries")


def _folder_of(name: str, prefix: str) -> Path:
    text = name[len(prefix):].strip()
    if not text:
        raise DiffCLError(
            f"dataset {name!r}: the folder after {prefix!r} is empty. Fix: name the folder, e.g. "
            f"--dataset {prefix}data/baby (or an absolute path)."
        )
    return Path(text).expanduser()


def _load_remote(spec: DatasetSpec, root: "str | os.PathLike[str] | None", download: bool,
                 fetch_kwargs: dict[str, Any], kwargs: dict[str, Any]) -> "RecDataset":
    from .formats import load_folder

    folder = fetch(spec, root=root, download=download, **fetch_kwargs)
    try:
        ds = load_folder(folder, format=spec.format, **kwargs)
    except DataFormatError as exc:
        # A cached file that does not load may have changed in place: hash every file again and
        # fetch the ones that no longer match; then load once more.
        args = {**fetch_kwargs, "rehash": True}
        _, replaced = _fetch(spec, root, download, args.get("base_url"), args.get("progress", True),
                             args.get("timeout"), True, args.get("retries", 0))
        if not replaced:
            raise DataFormatError(
                f"{exc} (the cached files of {spec.name!r} in {folder} all match their pinned checksums, so the "
                f"file is as published; report it, or load a corrected copy as a folder.)"
            ) from None
        log.warning("%s: %s changed since it was verified and was downloaded again", folder, ", ".join(replaced))
        ds = load_folder(folder, format=spec.format, **kwargs)
    ds.name = spec.name
    ds.meta.update({"dataset": spec.name, "cache": str(folder)})
    if spec.expected:
        _check_expected(ds, spec.expected, f"dataset {spec.name!r}")
    return ds


def load(
    name: "str | os.PathLike[str] | DatasetSpec",
    root: "str | os.PathLike[str] | None" = None,
    download: bool = True,
    **kwargs: Any,
) -> "RecDataset":
    """Load a dataset by name and return a validated :class:`~diffcl_lite.data.RecDataset`.

    Names: see :func:`list_datasets` — ``"synthetic"``, ``"synthetic-baby"``,
    ``"synthetic-tiktok"`` (keyword arguments go to :func:`~diffcl_lite.data.make_synthetic`),
    ``"tiktok"``, ``"baby"`` (downloaded into the cache folder ``root`` on first use; keyword
    arguments ``base_url``, ``progress``, ``timeout``, ``rehash``, ``retries`` go to :func:`fetch`,
    ``features`` and ``allow_split_overlap`` to the loader), ``"mmrec:<folder>"``,
    ``"diffmm:<folder>"`` or the path of an existing folder. Download keywords are ignored for
    synthetic data and folders. Used in notebook 08 (real data).
    """
    from .formats import load_diffmm, load_folder, load_mmrec

    if isinstance(name, DatasetSpec):
        spec: DatasetSpec | None = name
    else:
        name = os.fspath(name)
        spec = REGISTRY.get(name)
    fetch_kwargs = {k: kwargs.pop(k) for k in FETCH_KEYS if k in kwargs}
    if spec is None:
        assert isinstance(name, str)
        if name.startswith("mmrec:"):
            folder = _folder_of(name, "mmrec:")
            ds = load_mmrec(folder, **kwargs)
            _check_mmrec_published(ds, folder)
            return ds
        if name.startswith("diffmm:"):
            return load_diffmm(_folder_of(name, "diffmm:"), **kwargs)
        if not name.strip():
            raise DiffCLError(f"dataset name is empty. Known names: {', '.join(list_datasets())}.")
        if Path(name).expanduser().is_dir():
            ds = load_folder(Path(name).expanduser(), **kwargs)
            if ds.meta.get("format") == "mmrec":
                _check_mmrec_published(ds, Path(name).expanduser())
            return ds
        raise DiffCLError(
            f"unknown dataset {name!r}: not a registered name and not an existing folder. Known names: "
            f"{', '.join(list_datasets())}."
        )
    if spec.kind == "synthetic":
        assert spec.factory is not None
        kwargs.pop("allow_split_overlap", None)  # synthetic splits never overlap
        return spec.factory(**{**spec.defaults, **kwargs})
    return _load_remote(spec, root, download, fetch_kwargs, kwargs)
