"""Self-checks for the exercises: friendly verdicts, never a bare traceback, never the solution.

Introduced in notebook 00. Each exercise in the notebooks follows one convention:

1. a stub cell (tag ``exercise``) defining a function that returns a placeholder of the right
   type and shape, so an unfinished notebook still runs top to bottom;
2. a solution cell right after it (tag ``solution``; removed from student copies);
3. a visible self-check cell (tag ``self-check``) calling :func:`check` — it prints the learner's
   value next to what is expected (shape, or a value the learner could compute by hand) and
   "correct" or "not yet: ..." with a hint;
4. optionally hidden checks (tag ``hidden-check``) that only the grader runs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = ["CheckResult", "RESULTS", "results_json", "check", "run_check"]

log = logging.getLogger(__name__)


@dataclass
class CheckResult:
    name: str
    passed: bool
    message: str
    points: float = 1.0
    exercise: str | None = None

    def __repr__(self) -> str:
        mark = "✅" if self.passed else "❌"
        return f"{mark} {self.name}: {self.message}"

    def _repr_html_(self) -> str:
        color = "#1a7f37" if self.passed else "#b35900"
        text = self.message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        mark = "✅" if self.passed else "❌"
        return f'<div style="color:{color};font-family:monospace">{mark} <b>{self.name}</b>: {text}</div>'


#: every result of this kernel, in order (see ``results_json``)
RESULTS: list[CheckResult] = []

#: set by the grader for hidden checks: never print an expected value, whatever ``reveal`` says
_HIDE_EXPECTED = False


def results_json() -> list[dict[str, Any]]:
    """The recorded results as plain dicts (exercise, name, passed, points, message)."""
    return [{"exercise": r.exercise, "name": r.name, "passed": r.passed, "points": r.points, "message": r.message}
            for r in RESULTS]


def _record(r: CheckResult, exercise: str | None) -> CheckResult:
    r.exercise = exercise
    RESULTS.append(r)
    return r


def _to_numpy(x: Any) -> Any:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(x, (list, tuple)) and x and all(isinstance(v, (int, float, np.number)) for v in x):
        return np.asarray(x)
    return x


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        if x.size <= 6:
            return f"{np.array2string(x, precision=4)} (shape {x.shape})"
        return f"array of shape {x.shape}"
    if isinstance(x, float):
        return f"{x:.6g}"
    return repr(x)


def check(name: str, value: Any, expected: Any = None, *, exercise: str | None = None, **kwargs: Any) -> CheckResult:
    """Compare a learner's ``value`` with ``expected`` (and/or ``shape=``, ``predicate=``), record and return the verdict.

    Keyword arguments: ``shape``, ``atol``, ``rtol``, ``hint``, ``predicate``, ``reveal``,
    ``points``. ``exercise`` is the exercise id (e.g. ``"03.1"``) the grader groups results by.
    Any exception while comparing becomes a "not yet" with the reason. ``reveal=False`` (default)
    never prints the expected value, only its shape/type; ``reveal=True`` is for values the
    learner is meant to compare by hand.
    """
    return _record(_compare(name, value, expected, **kwargs), exercise)


def _compare(
    name: str,
    value: Any,
    expected: Any = None,
    *,
    shape: tuple[int, ...] | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    hint: str = "",
    predicate: Callable[[Any], bool] | None = None,
    reveal: bool = False,
    points: float = 1.0,
) -> CheckResult:
    reveal = reveal and not _HIDE_EXPECTED
    try:
        v = _to_numpy(value)
        e = _to_numpy(expected)
        if v is None or v is Ellipsis:
            return CheckResult(name, False, "not yet: the function returned None — did you forget `return`?" + _h(hint), points)
        if shape is not None:
            got = tuple(np.shape(v))
            if got != tuple(shape):
                return CheckResult(name, False, f"not yet: expected shape {tuple(shape)}, got {got}." + _h(hint), points)
        if predicate is not None and not bool(predicate(value)):
            return CheckResult(name, False, "not yet: the value does not have the required property." + _h(hint), points)
        if expected is not None:
            if isinstance(e, np.ndarray) or isinstance(v, np.ndarray):
                va, ea = np.asarray(v, dtype=float), np.asarray(e, dtype=float)
                if va.shape != ea.shape:
                    return CheckResult(name, False, f"not yet: expected shape {ea.shape}, got {va.shape}." + _h(hint), points)
                if not np.all(np.isfinite(va)):
                    return CheckResult(name, False, "not yet: the result contains NaN or inf." + _h(hint), points)
                if not np.allclose(va, ea, atol=atol, rtol=rtol):
                    err = float(np.max(np.abs(va - ea)))
                    shown = f" expected {_describe(ea)}," if reveal else ""
                    return CheckResult(name, False, f"not yet:{shown} got {_describe(va)} (max abs error {err:.3g})." + _h(hint), points)
            elif isinstance(e, (int, float, np.number)) and not isinstance(e, bool):
                fv = float(v)
                if not np.isclose(fv, float(e), atol=atol, rtol=rtol):
                    shown = f"expected {float(e):.6g}, " if reveal else ""
                    return CheckResult(name, False, f"not yet: {shown}got {fv:.6g}." + _h(hint), points)
            elif v != e:
                shown = f"expected {e!r}, " if reveal else ""
                return CheckResult(name, False, f"not yet: {shown}got {_describe(v)}." + _h(hint), points)
        got = _describe(v)
        return CheckResult(name, True, f"correct — your value: {got}", points)
    except Exception as exc:  # a learner's wrong answer must never produce a traceback here
        return CheckResult(name, False, f"not yet: checking failed with {type(exc).__name__}: {exc}." + _h(hint), points)


def _h(hint: str) -> str:
    return f" Hint: {hint}" if hint else ""


def run_check(name: str, fn: Callable[[], Any], expected: Any = None, *, exercise: str | None = None,
              **kwargs: Any) -> CheckResult:
    """Call ``fn()`` (the learner's code) and check its result; an exception inside it is a "not yet"."""
    pts = kwargs.get("points", 1.0)
    try:
        value = fn()
    except NotImplementedError:
        return _record(CheckResult(name, False, "not yet: the exercise is not filled in (NotImplementedError).", pts), exercise)
    except Exception as exc:
        return _record(CheckResult(name, False, f"not yet: your code raised {type(exc).__name__}: {exc}", pts), exercise)
    return check(name, value, expected, exercise=exercise, **kwargs)
