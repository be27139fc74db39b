"""Values that cross from a learner's sandbox to the grader: plain data only, never code.

The learner's kernel records what its exercise functions return (:mod:`diffcl_lite.course.runtime`)
and writes it with :func:`dump_cell`: one JSON file (numbers, strings, lists, dicts, ``None``) and one
``.npz`` with the arrays, written with ``allow_pickle=False``. The clean judge reads them back with
:func:`load_cell`, which refuses anything else: object arrays, oversized files, deep nesting, links.
A learner-made object with a lying ``__eq__`` or ``__array__`` therefore never reaches a comparison:
it is recorded as ``unsupported`` and the check fails with a message that says what to return.

This module imports numpy only (torch and scipy are used when the value is one of theirs).
"""
from __future__ import annotations

import io
import json
import math
import os
import stat
import sys
from typing import Any

__all__ = ["MAX_JSON_BYTES", "MAX_NPZ_BYTES", "MAX_DEPTH", "MAX_ITEMS", "MAX_STR", "ARRAY_KINDS", "ValueFileError",
           "Encoder", "encode", "dump_cell", "read_regular", "load_arrays", "Unsupported", "decode", "load_cell"]

#: limits on what one graded run can hand to the grader
MAX_JSON_BYTES = 8 * 2**20
MAX_NPZ_BYTES = 64 * 2**20
MAX_DEPTH = 12
MAX_ITEMS = 100_000
MAX_STR = 20_000
ARRAY_KINDS = "biufcUS"  # bool, int, uint, float, complex, str, bytes; never object or void


class ValueFileError(ValueError):
    """A recorded value file that breaks the format or the limits (the message says which)."""


def _qualname(x: Any) -> str:
    t = type(x)
    return f"{t.__module__}.{t.__qualname__}"


class Encoder:
    """Turns a returned value into JSON plus named arrays (``arrays``), within the limits."""

    def __init__(self) -> None:
        self.arrays: dict[str, Any] = {}
        self.items = 0

    def _array(self, a: Any) -> str:
        import numpy as np

        key = f"a{len(self.arrays)}"
        arr = np.array(a, copy=True)
        if arr.dtype.kind not in ARRAY_KINDS:
            raise TypeError(f"an array of dtype {arr.dtype}")
        self.arrays[key] = arr
        return key

    def encode(self, x: Any, depth: int = 0) -> Any:
        self.items += 1
        if self.items > MAX_ITEMS or depth > MAX_DEPTH:
            return {"t": "unsupported", "type": "a value too large or too deeply nested"}
        try:
            return self._encode(x, depth)
        except Exception as exc:  # a value whose conversion fails: say what it was
            return {"t": "unsupported", "type": f"{_qualname(x)} ({type(exc).__name__})"}

    def _encode(self, x: Any, depth: int) -> Any:
        if x is None:
            return {"t": "none"}
        if isinstance(x, bool):
            return {"t": "bool", "v": bool(x)}
        if isinstance(x, int):
            v = int(x)
            return {"t": "int", "v": v} if abs(v) < 10**300 else {"t": "unsupported", "type": "an enormous int"}
        if isinstance(x, float):
            v = float(x)
            return {"t": "float", "v": v if math.isfinite(v) else repr(v)}
        if isinstance(x, complex):
            return {"t": "complex", "v": [repr(float(x.real)), repr(float(x.imag))]}
        if isinstance(x, str):
            s = str.__str__(x)
            return {"t": "str", "v": s[:MAX_STR], "cut": len(s) > MAX_STR}
        if isinstance(x, (list, tuple)):
            return {"t": "tuple" if isinstance(x, tuple) else "list", "v": [self.encode(v, depth + 1) for v in list(x)]}
        if isinstance(x, dict):
            keys = list(x.keys())
            return {"t": "dict", "k": [self.encode(k, depth + 1) for k in keys],
                    "v": [self.encode(x[k], depth + 1) for k in keys]}
        np = sys.modules.get("numpy")
        if np is not None:
            if isinstance(x, np.ndarray):
                return {"t": "ndarray", "a": self._array(np.asarray(x))}
            if isinstance(x, np.generic):
                return {"t": "npscalar", "a": self._array(np.asarray(x))}
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(x, torch.Tensor):
            t = x.detach().cpu()
            if t.is_sparse:
                t = t.to_dense()
            dtype = str(t.dtype).replace("torch.", "")
            if t.dtype == torch.bfloat16 or t.dtype == torch.float16:
                t = t.float()
            return {"t": "tensor", "a": self._array(t.numpy()), "dtype": dtype, "grad": bool(x.requires_grad)}
        sp = sys.modules.get("scipy.sparse")
        if sp is not None and sp.issparse(x):
            csr = sp.csr_matrix(x)
            return {"t": "sparse", "shape": [int(s) for s in csr.shape], "data": self._array(csr.data),
                    "indices": self._array(csr.indices), "indptr": self._array(csr.indptr)}
        return {"t": "unsupported", "type": _qualname(x)}


def encode(x: Any) -> tuple[Any, dict[str, Any]]:
    """``(json tree, arrays)`` for one value."""
    enc = Encoder()
    return enc.encode(x), enc.arrays


def dump_cell(directory: str, name: str, record: dict[str, Any], arrays: dict[str, Any]) -> None:
    """Write ``name.json`` and ``name.npz`` atomically (temporary file, then rename)."""
    import numpy as np

    os.makedirs(directory, exist_ok=True)
    if arrays:
        tmp = os.path.join(directory, f".{name}.npz.tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, os.path.join(directory, f"{name}.npz"))
    tmp = os.path.join(directory, f".{name}.json.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(record, fh)
    os.replace(tmp, os.path.join(directory, f"{name}.json"))


def read_regular(path: str, limit: int) -> bytes:
    """The bytes of a regular file (never through a link, never a FIFO), at most ``limit``; else ValueFileError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise ValueFileError(f"{os.path.basename(path)}: cannot open ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueFileError(f"{os.path.basename(path)}: not a regular file")
        if st.st_size > limit:
            raise ValueFileError(f"{os.path.basename(path)}: {st.st_size} bytes, more than the limit of {limit}")
        chunks, total = [], 0
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            total += len(b)
            if total > limit:
                raise ValueFileError(f"{os.path.basename(path)}: more than {limit} bytes")
            chunks.append(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


def load_arrays(data: bytes) -> dict[str, Any]:
    """Arrays of an ``.npz`` written by :func:`dump_cell` (``allow_pickle=False``; numeric, bool or text dtypes)."""
    import numpy as np

    out = {}
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        for key in z.files:
            arr = z[key]
            if arr.dtype.kind not in ARRAY_KINDS:
                raise ValueFileError(f"array {key}: dtype {arr.dtype} is not allowed")
            out[key] = arr
    return out


class Unsupported:
    """Stands for a value the grader cannot use (its ``type`` says what the learner returned)."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __repr__(self) -> str:
        return f"<a value of type {self.what}>"


def decode(tree: Any, arrays: dict[str, Any], depth: int = 0) -> Any:
    """The value a JSON tree from :func:`encode` stands for (tensors rebuilt when torch is available)."""
    if depth > MAX_DEPTH + 1 or not isinstance(tree, dict):
        raise ValueFileError("malformed value")
    t = tree.get("t")
    if t == "none":
        return None
    if t == "bool":
        return bool(tree["v"])
    if t == "int":
        v = tree["v"]
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueFileError("malformed int")
        return v
    if t == "float":
        v = tree["v"]
        if isinstance(v, str) and v in ("nan", "inf", "-inf"):
            return float(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        return _bad("float")
    if t == "complex":
        re_, im = tree["v"]
        return complex(float(re_), float(im))
    if t == "str":
        v = tree["v"]
        return v if isinstance(v, str) else _bad("str")
    if t in ("list", "tuple"):
        items = [decode(v, arrays, depth + 1) for v in tree["v"]]
        return tuple(items) if t == "tuple" else items
    if t == "dict":
        keys = [decode(k, arrays, depth + 1) for k in tree["k"]]
        vals = [decode(v, arrays, depth + 1) for v in tree["v"]]
        try:
            return dict(zip(keys, vals))
        except TypeError:
            raise ValueFileError("dict with unhashable keys") from None
    if t in ("ndarray", "npscalar", "tensor"):
        arr = arrays.get(tree.get("a"))
        if arr is None:
            raise ValueFileError("missing array")
        if t == "npscalar":
            return arr[()]
        if t == "ndarray":
            return arr
        import torch

        tensor = torch.from_numpy(arr.copy())
        dtype = getattr(torch, str(tree.get("dtype", "")), None)
        if isinstance(dtype, torch.dtype) and dtype != tensor.dtype:
            tensor = tensor.to(dtype)
        if tree.get("grad") and tensor.is_floating_point():
            tensor.requires_grad_(True)
        return tensor
    if t == "sparse":
        import scipy.sparse as sp

        data, ind, ptr = (arrays.get(tree.get(k)) for k in ("data", "indices", "indptr"))
        if data is None or ind is None or ptr is None:
            raise ValueFileError("missing sparse array")
        return sp.csr_matrix((data, ind, ptr), shape=tuple(int(s) for s in tree["shape"]))
    if t == "unsupported":
        return Unsupported(str(tree.get("type", "?"))[:200])
    raise ValueFileError(f"unknown value kind {str(t)[:40]!r}")


def _bad(what: str) -> Any:
    raise ValueFileError(f"malformed {what}")


def load_cell(directory: str, name: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(record, arrays)`` of ``name.json``/``name.npz`` in ``directory``; None when the record is absent."""
    path = os.path.join(directory, f"{name}.json")
    if not os.path.lexists(path):
        return None
    record = json.loads(read_regular(path, MAX_JSON_BYTES).decode("utf-8"))
    if not isinstance(record, dict):
        raise ValueFileError(f"{name}.json: not an object")
    npz = os.path.join(directory, f"{name}.npz")
    arrays = load_arrays(read_regular(npz, MAX_NPZ_BYTES)) if os.path.lexists(npz) else {}
    return record, arrays
