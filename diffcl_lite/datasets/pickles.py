"""Pickled scipy matrices without ``pickle.load``: a restricted unpickler and its writer.

Pickle files can run arbitrary code when loaded. :func:`safe_load_pickle` uses an unpickler that
only admits numpy arrays and scipy sparse matrices, and checks the matrix indices before anything
else touches them; :func:`save_sparse_pickle` writes the DiffMM layout's ``coo_matrix`` files.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import DataFormatError
from ..fileutil import atomic_write_bytes

__all__ = ["safe_load_pickle", "save_sparse_pickle"]


def _numpy_attr(module_new: str, module_old: str, name: str) -> Any:
    """Look up ``name`` in numpy's private module (``numpy._core`` since 2.0, ``numpy.core`` before)."""
    import importlib

    try:
        mod = importlib.import_module(module_new)
    except ImportError:  # numpy < 2
        mod = importlib.import_module(module_old)
    return getattr(mod, name)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals a DiffMM ``.pkl`` file may reference, mapped to today's objects.

    Old pickles name classes by their historic location (``numpy.core.multiarray``,
    ``scipy.sparse.coo``); they map to the current objects, so no deprecated module is imported.
    """
    import copyreg
    import codecs

    reconstruct = _numpy_attr("numpy._core.multiarray", "numpy.core.multiarray", "_reconstruct")
    scalar = _numpy_attr("numpy._core.multiarray", "numpy.core.multiarray", "scalar")
    frombuffer = _numpy_attr("numpy._core.numeric", "numpy.core.numeric", "_frombuffer")
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = reconstruct  # ndarray.__reduce__ (protocols 0-4)
        allowed[(mod, "scalar")] = scalar  # numpy scalars, e.g. inside a shape tuple
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = frombuffer  # ndarray.__reduce_ex__(5)
    sparse_classes = {
        "coo_matrix": sp.coo_matrix,
        "csr_matrix": sp.csr_matrix,
        "coo_array": getattr(sp, "coo_array", sp.coo_matrix),
        "csr_array": getattr(sp, "csr_array", sp.csr_matrix),
    }
    for cls_name, cls in sparse_classes.items():
        short = cls_name.split("_")[0]  # coo / csr
        for mod in (f"scipy.sparse.{short}", f"scipy.sparse._{short}", "scipy.sparse._arrays", "scipy.sparse"):
            allowed[(mod, cls_name)] = cls
    # Protocols 0 and 1 rebuild objects through copyreg._reconstructor(cls, object, None);
    # the class it receives still has to pass this list. Protocol 2 written by Python 3 stores
    # bytes as _codecs.encode(text, "latin1") (a pure data transformation).
    for mod in ("copyreg", "copy_reg"):
        allowed[(mod, "_reconstructor")] = copyreg._reconstructor
    for mod in ("builtins", "__builtin__"):
        allowed[(mod, "object")] = object
    allowed[("_codecs", "encode")] = codecs.encode
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` admits only numpy arrays and scipy sparse matrices."""

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self._source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataFormatError(
                f"{self._source}: refusing to unpickle {module}.{name}: only numpy arrays and scipy sparse "
                f"matrices are allowed in DiffMM .pkl files (loading other objects from a pickle can run "
                f"arbitrary code). If you trust this file, convert it in a separate Python process: "
                f"`import pickle, scipy.sparse as sp; from diffcl_lite.datasets.pickles import save_sparse_pickle; "
                f"save_sparse_pickle(sp.coo_matrix(pickle.load(open({self._source!r}, 'rb'))), {self._source!r})` "
                f"(this runs whatever code the file holds, so do it only for files from a source you trust)."
            ) from None


def _check_sparse_indices(obj: Any, source: str) -> None:
    """Check a freshly unpickled sparse matrix before any scipy routine touches its arrays.

    Unpickling bypasses the constructors, so indices could point outside the matrix; scipy's
    C routines do not bounds-check them.
    """
    shape = obj.__dict__.get("_shape")
    try:
        n_rows, n_cols = (int(np.asarray(s).item()) for s in shape)
        if n_rows < 0 or n_cols < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise DataFormatError(f"{source}: the pickled matrix has no valid 2-D shape ({shape!r}); the file is damaged.") from None
    obj._shape = (n_rows, n_cols)  # old pickles store numpy integers here
    data = np.asarray(obj.__dict__.get("data"))
    if data.ndim != 1 or not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
        raise DataFormatError(
            f"{source}: the pickled matrix values have shape {data.shape} / dtype {data.dtype}; expected a 1-D "
            f"numeric array. The file is damaged."
        )
    if getattr(obj, "format", None) == "coo":
        state = obj.__dict__
        # scipy >= 1.13 stores ``coords``; older versions ``row`` and ``col``.
        coords = state.get("coords")
        if coords is None:
            coords = (state.get("row"), state.get("col"))
        if not isinstance(coords, tuple) or len(coords) != 2 or any(c is None for c in coords):
            raise DataFormatError(f"{source}: the pickled coo matrix has no (row, col) coordinates; the file is damaged.")
        row, col = (np.asarray(c) for c in coords)
        for what, arr, limit in (("row", row, n_rows), ("col", col, n_cols)):
            if arr.ndim != 1 or len(arr) != len(data) or not np.issubdtype(arr.dtype, np.integer):
                raise DataFormatError(
                    f"{source}: the pickled coo matrix has {what} indices of shape {arr.shape} / dtype {arr.dtype} "
                    f"for {len(data)} values; the file is damaged."
                )
            if len(arr) and (arr.min() < 0 or arr.max() >= limit):
                raise DataFormatError(
                    f"{source}: the pickled coo matrix has {what} indices outside 0..{limit - 1}; the file is damaged."
                )
    else:  # csr
        try:
            obj.check_format(full_check=True)
        except Exception as exc:  # scipy raises ValueError / TypeError / AttributeError
            raise DataFormatError(f"{source}: the pickled csr matrix is inconsistent ({exc}); the file is damaged.") from None


def safe_load_pickle(path: "str | os.PathLike[str]") -> Any:
    """Load a DiffMM ``.pkl`` file that must hold one scipy sparse matrix, without running code.

    Only numpy arrays, numpy scalars/dtypes and scipy ``coo``/``csr`` matrices may appear in the
    file (old module names such as ``scipy.sparse.coo`` and ``numpy.core.multiarray`` are mapped
    to today's classes). Anything else raises :class:`DataFormatError` before it is created.
    Used in notebook 08 (real data).
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found.")
    with open(path, "rb") as fh:
        try:
            obj = _RestrictedUnpickler(fh, str(path)).load()
        except DataFormatError:
            raise
        except Exception as exc:  # UnpicklingError, EOFError, ValueError, ...
            raise DataFormatError(
                f"{path}: cannot read the file as a pickle ({type(exc).__name__}: {exc}). "
                f"Fix: download the file again; DiffMM .pkl files hold one pickled scipy sparse matrix."
            ) from None
    if not sp.issparse(obj):
        raise DataFormatError(
            f"{path}: holds a {type(obj).__module__}.{type(obj).__name__}, expected a scipy sparse matrix "
            f"(users x items). Fix: save the interactions with diffcl_lite.datasets.pickles.save_sparse_pickle()."
        )
    _check_sparse_indices(obj, str(path))
    return obj


def save_sparse_pickle(matrix: Any, path: "str | os.PathLike[str]") -> None:
    """Write a scipy sparse matrix as a DiffMM-style pickled ``coo_matrix`` (atomically)."""
    coo = sp.coo_matrix(matrix)
    atomic_write_bytes(path, pickle.dumps(coo, protocol=4))

