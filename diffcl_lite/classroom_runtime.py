"""Grader helpers that run *inside* a submission's kernel (the grader injects the calls; learners never use this).

The graded notebook built by :mod:`diffcl_lite.classroom_grade` looks like::

    [setup]   install()                      before any learner code: keep the checks' source
    ...       master cells (parameters, imports, explanations' code)
    [guard]   enter()                        snapshot the namespace and the watched modules
    [learner] the learner's exercise cell (or a cell the learner added)
    [guard]   leave(names)                   undo what the learner's cell rebound or patched
    [check]   begin("NN.k", kind) + master self-check / hidden-check source
    [collect] end("NN.k", kind)              emit this cell's verdicts (output of a grader cell)
    ...
    [final]   final()                        marks a complete run, repeats all verdicts

Defences, and their limits (see the README's instructor section):

* ``begin`` builds a *fresh* ``diffcl_lite.checks`` module from the source read in ``install``
  (before any learner code ran) and rebinds ``check``/``run_check``/``CheckResult`` in the
  namespace, so redefining ``check``, monkeypatching ``diffcl_lite.checks`` or editing/deleting
  checks.py on disk does not change a verdict; verdicts go to a private list, not ``RESULTS``.
* ``leave`` restores every namespace name the learner's cell rebound (except the names the
  exercise itself defines) and every attribute of the watched modules (``builtins``, ``math``,
  ``numpy``, ``torch``, ``torch.nn.functional``, ``diffcl_lite.*``...) the cell replaced, e.g.
  ``np.allclose = lambda *a, **k: True``. What it restored is reported (the grader shows it).
* ``end`` compares the watched modules with their state at ``begin``: if the learner's function,
  called by the check, patched them while the check ran, the cell's verdicts are rejected.

Not defended: in-place mutation of objects (``x.zero_()`` on the notebook's data, patching
methods of classes such as ``torch.Tensor``), threads or processes left running, ``gc``/frame
tricks and anything else a determined author of arbitrary code in the same process can do.
"""
from __future__ import annotations

import sys
import types
from typing import Any

MIME = "application/vnd.diffcl.grade+json"
WATCHED = ("builtins", "math", "numpy", "numpy.linalg", "numpy.random", "torch", "torch.nn.functional",
           "torch.linalg", "scipy.sparse", "diffcl_lite")
_IPY_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}
#: module attributes the kernel itself replaces at every cell (ipykernel's stdin forwarding)
_VOLATILE = {"builtins": {"input", "raw_input", "_", "__", "___"}}
_MISSING = object()

_state: dict[str, Any] = {"src": None, "file": None, "names": {}, "mods": {}, "dicts": {}, "fresh": None,
                          "private": [], "at_begin": {}, "results": [], "restored": []}


def _ns() -> dict[str, Any]:
    from IPython import get_ipython

    return get_ipython().user_ns


def _emit(payload: dict[str, Any]) -> None:
    from IPython.display import display

    display({MIME: payload}, raw=True)


def _watched_modules() -> dict[str, types.ModuleType]:
    out = {}
    for name, mod in list(sys.modules.items()):
        if not isinstance(mod, types.ModuleType):
            continue
        if name in WATCHED or (name.startswith("diffcl_lite.") and not name.startswith("diffcl_lite.classroom")):
            out[name] = mod
    return out


def install() -> None:
    """Keep the pristine source of ``diffcl_lite.checks`` (called before any learner code)."""
    import diffcl_lite.checks as checks

    with open(checks.__file__, encoding="utf-8") as fh:
        _state["src"] = fh.read()
    _state["file"] = checks.__file__


def enter() -> None:
    """Before a learner's cell: remember the namespace bindings and the watched modules' attributes."""
    ns = _ns()
    _state["names"] = {k: v for k, v in ns.items() if not k.startswith("_") and k not in _IPY_NAMES}
    mods = _watched_modules()
    _state["mods"] = mods
    _state["dicts"] = {name: dict(vars(mod)) for name, mod in mods.items()}


def _restore_modules(mods: dict[str, types.ModuleType], dicts: dict[str, dict]) -> list[str]:
    restored = []
    for name, mod in mods.items():
        if sys.modules.get(name) is not mod:
            sys.modules[name] = mod
            restored.append(f"sys.modules[{name!r}]")
        d = vars(mod)
        volatile = _VOLATILE.get(name, ())
        for key, value in dicts[name].items():
            if key not in volatile and d.get(key, _MISSING) is not value:
                d[key] = value
                restored.append(f"{name}.{key}")
    return restored


def leave(allowed: list[str] | tuple[str, ...] = ()) -> None:
    """After a learner's cell: undo rebinding of names the notebook defined (except ``allowed``) and module patches."""
    ns = _ns()
    restored = []
    allowed_set = set(allowed)
    for key, value in _state["names"].items():
        if key in allowed_set:
            continue
        if ns.get(key, _MISSING) is not value:
            ns[key] = value
            restored.append(key)
    restored += _restore_modules(_state["mods"], _state["dicts"])
    if restored:
        _state["restored"] += restored
        _emit({"restored": restored})


def begin(exercise: str, kind: str = "self-check") -> None:
    """Before a master check cell: a fresh checks module whose verdicts go to a private list."""
    if _state["src"] is None:
        raise RuntimeError("diffcl_lite.classroom_runtime.install() was not called")
    mod = types.ModuleType("diffcl_lite.checks")
    mod.__file__ = _state["file"]
    sys.modules["diffcl_lite.checks"] = mod
    exec(compile(_state["src"], _state["file"], "exec"), vars(mod))  # noqa: S102 - the pristine checks source
    if kind == "hidden-check":
        mod._HIDE_EXPECTED = True
    private: list[dict[str, Any]] = []
    record = mod._record

    def _record_private(result: Any, exercise_id: Any) -> Any:
        private.append({"exercise": exercise, "name": str(result.name), "passed": bool(result.passed),
                        "points": float(result.points), "message": str(result.message)})
        return record(result, exercise_id)

    mod._record = _record_private
    package = sys.modules.get("diffcl_lite")
    if package is not None:
        package.checks = mod
    ns = _ns()
    for key, value in list(ns.items()):  # `import diffcl_lite.checks as C`, `from ... import check as chk`
        try:
            if isinstance(value, types.ModuleType) and value.__name__ == "diffcl_lite.checks":
                ns[key] = mod
            elif (isinstance(value, (types.FunctionType, type)) and value.__module__ == "diffcl_lite.checks"
                  and hasattr(mod, value.__name__)):
                ns[key] = getattr(mod, value.__name__)
        except Exception:  # an object with a hostile __getattr__: leave it
            continue
    for name in ("check", "run_check", "CheckResult"):
        ns[name] = getattr(mod, name)
    _state["fresh"], _state["private"] = mod, private
    mods = _watched_modules()
    _state["at_begin"] = {"mods": mods, "dicts": {n: dict(vars(m)) for n, m in mods.items()},
                          "checks": dict(vars(mod))}


def end(exercise: str, kind: str = "self-check") -> None:
    """After a master check cell: emit its verdicts (rejected if the checks or watched modules were patched)."""
    snap = _state["at_begin"]
    mod = _state["fresh"]
    changed = [f"diffcl_lite.checks.{k}" for k, v in snap.get("checks", {}).items()
               if vars(mod).get(k, _MISSING) is not v]
    changed += _restore_modules(snap.get("mods", {}), snap.get("dicts", {}))
    results = list(_state["private"])
    payload: dict[str, Any] = {"exercise": exercise, "kind": kind, "results": results}
    if changed:
        payload["tampered"] = changed
        for r in results:
            r.update(passed=False, message="rejected: the checking code was modified while this check ran")
    _state["results"] += results
    _emit(payload)


def final() -> None:
    """Last cell of a graded run: all verdicts, and what was restored, in one output."""
    _emit({"final": True, "results": _state["results"], "restored": _state["restored"]})
