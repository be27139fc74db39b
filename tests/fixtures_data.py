"""Helpers that build dataset fixture files for tests/test_datasets_formats.py and tests/test_datasets.py."""
from __future__ import annotations

import copyreg
import hashlib
import io
import os
import pickle
import socket
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from diffcl_lite.data import make_synthetic


def tiny_dataset(seed: int = 0, **kwargs: Any):
    """A small synthetic dataset (30 users, 20 items, image 6-d + text 4-d)."""
    args = dict(
        n_users=30, n_items=20, n_topics=3, interactions_per_user=6.0, min_interactions=4,
        modality_dims={"image": 6, "text": 4}, seed=seed, name="tiny",
    )
    args.update(kwargs)
    return make_synthetic(**args)


def write_inter(path: Path, header: str, rows: list[str]) -> Path:
    """Write an MMRec .inter file: ``header`` and ``rows`` are tab-separated lines."""
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def inter_rows(ds) -> list[str]:
    """The lines of a valid ``userID itemID x_label`` table for ``ds``."""
    rows = []
    for k, split in enumerate(("train", "valid", "test")):
        rows += [f"{u}\t{i}\t{k}" for u, i in getattr(ds, split).tolist()]
    return rows


def git_blob_sha1(data: bytes) -> str:
    """``git hash-object`` of ``data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# ---------------------------------------------------------------------- pickles
class OldNamesPickler(pickle._Pickler):  # the pure-Python pickler lets us rename globals
    """Writes pickles the way old numpy/scipy did: ``numpy.core.multiarray._reconstruct``,
    ``scipy.sparse.coo.coo_matrix``, and a coo state with ``row``/``col`` (no ``coords``)."""

    RENAMES = {
        ("numpy._core.multiarray", "_reconstruct"): ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"): ("numpy.core.multiarray", "scalar"),
        ("scipy.sparse._coo", "coo_matrix"): ("scipy.sparse.coo", "coo_matrix"),
    }

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is sp.coo_matrix:
            state = {
                "_shape": tuple(np.int64(s) for s in obj.shape),
                "maxprint": 50,
                "row": np.asarray(obj.row, dtype=np.int32),
                "col": np.asarray(obj.col, dtype=np.int32),
                "data": np.asarray(obj.data),
                "has_canonical_format": False,
            }
            if self.proto >= 2:
                return copyreg.__newobj__, (sp.coo_matrix,), state
            return copyreg._reconstructor, (sp.coo_matrix, object, None), state
        return NotImplemented

    def save_global(self, obj: Any, name: str | None = None) -> None:
        key = (getattr(obj, "__module__", None), name or getattr(obj, "__qualname__", None))
        if key not in self.RENAMES:
            return super().save_global(obj, name)
        module_name, new_name = self.RENAMES[key]
        if self.proto >= 4:
            self.save(module_name)
            self.save(new_name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module_name}\n{new_name}\n".encode("ascii"))
        self.memoize(obj)


def old_scipy_pickle_bytes(matrix: sp.coo_matrix, protocol: int = 2) -> bytes:
    buf = io.BytesIO()
    OldNamesPickler(buf, protocol=protocol).dump(matrix)
    return buf.getvalue()


def pickle_globals(data: bytes) -> set[str]:
    """``module.name`` of every global a pickle references."""
    import pickletools

    out: set[str] = set()
    strings: list[str] = []
    memo: dict[int, Any] = {}
    last: Any = None
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("GLOBAL", "INST"):
            out.add(str(arg).replace(" ", "."))
            last = None
        elif "UNICODE" in op.name:
            strings.append(str(arg))
            last = str(arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = last
        elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg)] = last
        elif op.name in ("GET", "BINGET", "LONG_BINGET"):
            last = memo.get(int(arg))
            if isinstance(last, str):
                strings.append(last)
        elif op.name == "STACK_GLOBAL":
            out.add(f"{strings[-2]}.{strings[-1]}")
            last = None
        else:
            last = None
    return out


class RunsCommand:
    """Unpickling this would run ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


# ---------------------------------------------------------------------- ports
# (the local HTTP server of the download tests is tests/http_mirrors.Mirror)
def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
