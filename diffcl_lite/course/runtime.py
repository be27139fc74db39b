"""Grader code that runs inside a grading kernel (the grader injects the calls; learners never use this).

Two kinds of kernel run it, each in its own sandbox (:mod:`diffcl_lite.course.sandbox`):

**A submission's kernel** (``install("student", ...)``) runs the learner's cells and the master's
check cells, but *judges nothing*: in a check cell, ``check``/``run_check`` only record the value
they are given, and every exercise function the cell calls is wrapped so that what it returns (or
raises) is recorded too. The expected values are never computed there — the grader strips them
from the check cells first (:func:`diffcl_lite.course.grade.strip_expected`) — and the records
are written, cell by cell, as plain data (:mod:`diffcl_lite.course.values`). Whatever the learner's
code patches in this process (``numpy``, the package, the checks, this module, IPython hooks) can
change only what it records, which is no more than what its functions could return anyway.

**The judge** (``install("calibrate", ...)``) is a kernel that runs the master notebook with its own
solutions and never runs a learner's code. At each check cell it keeps a deep copy of every name
the cell reads, records the solution's return values exactly as a submission's kernel would, and
the check's verdicts. Then, for each submission, :func:`judge` re-executes every check cell of the
master in that clean state, with the exercise functions replaced by *replayers* that return the
submission's recorded values in call order: the verdicts come from the master's own code and the
package's own ``check``, with the learner's values as plain data. A check cell whose replay does not
reproduce the master's verdicts with the master's own values (its value comes from a side effect,
such as a gradient) is instead judged by comparing the value recorded in the submission's kernel
with the master's expected value; when that value was computed in the learner's process rather than
returned by an exercise function, it counts only when the exercise's other checks pass.

Learner cells are still wrapped in guards (``enter``/``leave``) that undo the obvious patches
(``np.allclose = ...``, rebinding the notebook's data) so that the master's cells keep working;
what they undo is reported as a flag, never trusted for a verdict.
"""
from __future__ import annotations

import builtins
import copy
import json
import os
import sys
import types
from collections import deque
from typing import Any

__all__ = ["MIME", "WATCHED", "CHECK_NAMES", "CHECKS_MODULE", "CHECKS_FILE", "install", "enter", "leave", "begin",
           "end", "final", "NotRecorded", "self_replay", "judge"]

MIME = "application/vnd.diffcl.grade+json"
WATCHED = ("builtins", "math", "numpy", "numpy.linalg", "numpy.random", "torch", "torch.nn.functional",
           "torch.linalg", "scipy.sparse", "diffcl_lite")
CHECK_NAMES = ("check", "run_check", "CheckResult")
#: the module student notebooks import the checks from, and its file (this file is course/runtime.py)
CHECKS_MODULE = "diffcl_lite.lessons.checks"
CHECKS_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lessons", "checks.py")
_IPY_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}
#: module attributes the kernel itself replaces at every cell (ipykernel's stdin forwarding)
_VOLATILE = {"builtins": {"input", "raw_input", "_", "__", "___"}}
_MISSING = object()

_state: dict[str, Any] = {"mode": None, "src": None, "file": None, "functions": [], "out": None, "names": {},
                          "mods": {}, "dicts": {}, "restored": [], "rec": None, "enc": None, "wrapped": {},
                          "depth": 0, "calib": {}, "order": [], "facts": [], "replayable": {}}


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
        if name in WATCHED or (name.startswith("diffcl_lite.") and not name.startswith("diffcl_lite.course")):
            out[name] = mod
    return out


def install(mode: str, functions: list[str], out: str | None = None, facts: str | None = None) -> None:
    """First cell of a graded run: remember the pristine checks source, the exercise functions and the mode.

    ``mode``: ``student`` (record only) or ``calibrate`` (the judge); ``out``: folder of the records;
    ``facts``: the grader's JSON description of the calibration notebook's cells (calibrate only).
    """
    with open(CHECKS_FILE, encoding="utf-8") as fh:  # read, never imported: the learner's copy may be patched
        _state["src"] = fh.read()
    _state.update(mode=mode, file=CHECKS_FILE, functions=list(functions), out=out)
    if facts:
        with open(facts, encoding="utf-8") as fh:
            _state["facts"] = json.load(fh)


def _fresh_checks(hidden: bool) -> tuple[types.ModuleType, list[dict[str, Any]], list[Any]]:
    """A new ``diffcl_lite.lessons.checks`` built from the pristine source; its verdicts go to a private list.

    Returns ``(module, verdicts, captured)``: ``captured`` gets ``(value, expected, kwargs)`` of each
    verdict that came from a comparison (None for a ``run_check`` whose function raised).
    """
    mod = types.ModuleType(CHECKS_MODULE)
    mod.__file__ = _state["file"]
    exec(compile(_state["src"], _state["file"], "exec"), vars(mod))  # noqa: S102 - the pristine checks source
    mod._HIDE_EXPECTED = bool(hidden)
    verdicts: list[dict[str, Any]] = []
    captured: list[Any] = []
    pending: list[Any] = []
    inner_check = mod.check

    def check(name: Any, value: Any, expected: Any = None, *, exercise: Any = None, **kwargs: Any) -> Any:
        pending.append((value, expected, kwargs))
        return inner_check(name, value, expected, exercise=exercise, **kwargs)

    def _record(result: Any, exercise_id: Any) -> Any:
        verdicts.append({"name": str(result.name), "passed": bool(result.passed), "points": float(result.points),
                         "message": str(result.message)})
        captured.append(pending.pop() if pending else None)
        result.exercise = exercise_id
        return result

    mod.check = check
    mod._record = _record
    return mod, verdicts, captured


def _bind_checks(ns: dict[str, Any], mod: types.ModuleType) -> None:
    """Point every way the notebook reaches the checks (``check``, ``import ... as C``) at ``mod``."""
    sys.modules[CHECKS_MODULE] = mod
    package = sys.modules.get(CHECKS_MODULE.rpartition(".")[0])
    if package is not None:
        package.checks = mod
    for key, value in list(ns.items()):
        try:
            if isinstance(value, types.ModuleType) and value.__name__ == CHECKS_MODULE:
                ns[key] = mod
            elif (isinstance(value, (types.FunctionType, type)) and value.__module__ == CHECKS_MODULE
                  and hasattr(mod, value.__name__)):
                ns[key] = getattr(mod, value.__name__)
        except Exception:  # an object with a hostile __getattr__: leave it
            continue
    for name in CHECK_NAMES:
        ns[name] = getattr(mod, name)


# ---------------------------------------------------------------- guards around learner cells


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


# ---------------------------------------------------------------- recording (both modes)


def _wrap(name: str, fn: Any, calls: list[dict[str, Any]], enc: Any) -> Any:
    """``fn`` recording what each outermost call returns or raises (nested calls of exercise functions are not)."""

    def recorded(*args: Any, **kwargs: Any) -> Any:
        if _state["depth"]:
            return fn(*args, **kwargs)
        _state["depth"] += 1
        try:
            out = fn(*args, **kwargs)
        except Exception as exc:
            calls.append({"fn": name, "raised": type(exc).__name__, "message": str(exc)[:2000]})
            raise
        finally:
            _state["depth"] -= 1
        calls.append({"fn": name, "value": enc.encode(out)})
        return out

    recorded.__wrapped__ = fn  # type: ignore[attr-defined]
    recorded.__name__ = getattr(fn, "__name__", name)
    recorded.__doc__ = getattr(fn, "__doc__", None)
    return recorded


def _wrap_functions(ns: dict[str, Any], calls: list[dict[str, Any]], enc: Any) -> None:
    wrapped = {}
    for name in _state["functions"]:
        fn = ns.get(name)
        if callable(fn):
            w = _wrap(name, fn, calls, enc)
            ns[name] = w
            wrapped[name] = (fn, w)
    _state["wrapped"] = wrapped


def _unwrap_functions(ns: dict[str, Any]) -> None:
    for name, (fn, w) in _state["wrapped"].items():
        if ns.get(name) is w:
            ns[name] = fn
    _state["wrapped"] = {}
    _state["depth"] = 0


def _student_recorders(rec: dict[str, Any], enc: Any, mod: types.ModuleType) -> None:
    """Make ``mod.check``/``mod.run_check`` record the value they get (no comparison in this process)."""
    result_cls = mod.CheckResult

    def check(name: Any, value: Any, expected: Any = None, *, exercise: Any = None, **kwargs: Any) -> Any:
        rec["checks"].append({"value": enc.encode(value)})
        return result_cls(str(name), False, "recorded; the grader compares it outside this notebook")

    def run_check(name: Any, fn: Any, expected: Any = None, *, exercise: Any = None, **kwargs: Any) -> Any:
        try:
            value = fn()
        except Exception as exc:
            rec["checks"].append({"raised": type(exc).__name__, "message": str(exc)[:2000]})
            return result_cls(str(name), False, "recorded; the grader compares it outside this notebook")
        return check(name, value, expected, exercise=exercise, **kwargs)

    mod.check, mod.run_check = check, run_check


def begin(exercise: str, kind: str, cell: int) -> None:
    """Before master check cell number ``cell`` (of exercise ``exercise``, ``kind`` self-check/hidden-check)."""
    from .values import Encoder

    if _state["src"] is None:
        raise RuntimeError("diffcl_lite.course.runtime.install() was not called")
    ns = _ns()
    enc = Encoder()
    rec: dict[str, Any] = {"cell": cell, "exercise": exercise, "kind": kind, "calls": [], "checks": [],
                           "done": False}
    mod, verdicts, captured = _fresh_checks(kind == "hidden-check")
    if _state["mode"] == "student":
        _student_recorders(rec, enc, mod)
    else:
        _snapshot(ns, cell)
    _bind_checks(ns, mod)
    _wrap_functions(ns, rec["calls"], enc)
    _state.update(rec=rec, enc=enc, verdicts=verdicts, captured=captured)


def end(exercise: str, kind: str, cell: int) -> None:
    """After master check cell ``cell``: write its records (student) or keep its state and verdicts (judge)."""
    ns = _ns()
    _unwrap_functions(ns)
    rec, enc = _state["rec"], _state["enc"]
    if rec is None or rec["cell"] != cell:  # begin() did not run (it raised): nothing recorded
        _emit({"exercise": exercise, "kind": kind, "recorded": 0})
        return
    rec["done"] = True
    if _state["mode"] == "student":
        from .values import dump_cell

        if _state["out"]:
            dump_cell(_state["out"], f"cell-{cell}", rec, enc.arrays)
        _emit({"exercise": exercise, "kind": kind, "recorded": len(rec["calls"]) + len(rec["checks"])})
    else:
        entry = _state["calib"].setdefault(cell, {})
        # the solution's own calls and check values, encoded exactly like a submission's
        checks = [{"value": enc.encode(c[0])} if c is not None else {"raised": "Exception", "message": "raised"}
                  for c in _state["captured"]]
        entry.update(exercise=exercise, kind=kind, record={**rec, "checks": checks}, arrays=enc.arrays,
                     verdicts=list(_state["verdicts"]), captured=list(_state["captured"]))
        _state["order"].append(cell)
        _emit({"exercise": exercise, "kind": kind, "results": list(_state["verdicts"])})
    _state["rec"] = None


def final() -> None:
    """Last cell of a graded run: marks it complete (and repeats what the guards restored)."""
    if _state["mode"] == "student" and _state["out"]:
        from .values import dump_cell

        dump_cell(_state["out"], "final", {"final": True}, {})
    _emit({"final": True, "restored": _state["restored"]})


# ---------------------------------------------------------------- the judge (calibration kernel only)


def _facts_of(cell: int) -> dict[str, Any]:
    for f in _state["facts"]:
        if f.get("role") == "check" and f.get("cell") == cell:
            return f
    return {}


def _is_module(x: Any) -> bool:
    return isinstance(x, types.ModuleType)


def _rng_state() -> dict[str, Any]:
    import random

    state: dict[str, Any] = {"random": random.getstate()}
    np = sys.modules.get("numpy")
    if np is not None:
        state["numpy"] = np.random.get_state()
    torch = sys.modules.get("torch")
    if torch is not None:
        state["torch"] = torch.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import random

    random.setstate(state["random"])
    if "numpy" in state:
        sys.modules["numpy"].random.set_state(state["numpy"])
    if "torch" in state and "torch" in sys.modules:
        sys.modules["torch"].set_rng_state(state["torch"])


def _snapshot(ns: dict[str, Any], cell: int) -> None:
    """Keep a deep copy of every name check cell ``cell`` reads, as it is now (the judge replays from it)."""
    facts = _facts_of(cell)
    skip = set(_state["functions"]) | set(CHECK_NAMES) | _IPY_NAMES
    values, shared = {}, {}
    for name in facts.get("reads", []):
        if name in skip or name not in ns:
            continue
        v = ns[name]
        if _is_module(v):
            shared[name] = v
        else:
            values[name] = v
    try:
        copied = copy.deepcopy(values)
    except Exception:  # something not deep-copyable: copy name by name, share what cannot be copied
        copied = {}
        for k, v in values.items():
            try:
                copied[k] = copy.deepcopy(v)
            except Exception:
                shared[k] = v
    _state["calib"][cell] = {"snapshot": copied, "shared": shared, "rng": _rng_state(), "source": facts.get("source", ""),
                             "reads": facts.get("reads", []), "stores": facts.get("stores", []),
                             "direct": bool(facts.get("direct"))}


class NotRecorded(RuntimeError):
    """A replayed exercise function was called more often than the submission's kernel recorded."""


def _exception(call: dict[str, Any]) -> BaseException:
    name, message = str(call.get("raised", "Exception"))[:100], str(call.get("message", ""))[:2000]
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and cls not in (SystemExit, KeyboardInterrupt):
        try:
            return cls(message)
        except Exception:
            pass
    return RuntimeError(f"{name}: {message}")


def _replayers(record: dict[str, Any], arrays: dict[str, Any]) -> dict[str, Any]:
    from .values import Unsupported, decode

    queues: dict[str, deque] = {}
    for call in record.get("calls", []):
        if isinstance(call, dict) and isinstance(call.get("fn"), str):
            queues.setdefault(call["fn"], deque()).append(call)
    # what the check cell's run_check saw raised in the submission's kernel (e.g. NameError: the
    # function was never defined): the most faithful answer for a call that recorded nothing
    raised = deque(c for c in record.get("checks", []) if isinstance(c, dict) and "raised" in c)
    out = {}
    for name in _state["functions"]:
        q = queues.get(name, deque())

        def replay(*args: Any, _q: deque = q, _name: str = name, **kwargs: Any) -> Any:
            if not _q:
                if raised:
                    raise _exception(raised.popleft())
                raise NotRecorded(f"{_name}() gave no value in your notebook's run of this check (is it defined? "
                                  f"did its cell or an earlier one fail?)")
            call = _q.popleft()
            if "raised" in call:
                raise _exception(call)
            value = decode(call.get("value"), arrays)
            if isinstance(value, Unsupported):
                raise TypeError(f"{_name}() returned a value of type {value.what}, which the grader cannot "
                                f"compare; return a number, a string, a tuple/list, a NumPy array or a torch tensor")
            return value

        replay.__name__ = name
        out[name] = replay
    return out


def _replay(cell: int, record: dict[str, Any], arrays: dict[str, Any], overlay: dict[str, Any],
            from_check: dict[str, int], replayed: set[int]) -> tuple[list[dict[str, Any]], str | None, dict]:
    """Re-execute master check cell ``cell`` in its clean state with the recorded values; ``(verdicts, error, writes)``."""
    c = _state["calib"][cell]
    user_ns = _ns()
    kind = c.get("kind", "self-check")
    mod, verdicts, _ = _fresh_checks(kind == "hidden-check")
    replayers = _replayers(record, arrays)
    ns: dict[str, Any] = {"__builtins__": builtins, "__name__": "__main__"}
    try:
        copies = copy.deepcopy(c["snapshot"])
    except Exception:
        copies = dict(c["snapshot"])
    for name in c["reads"]:
        if name in from_check and from_check[name] in replayed and name in overlay:
            ns[name] = overlay[name]
        elif name in copies:
            ns[name] = copies[name]
        elif name in c["shared"]:
            ns[name] = c["shared"][name]
        elif name in user_ns and name not in _IPY_NAMES:
            ns[name] = user_ns[name]
    ns.update(replayers)
    saved = {k: user_ns.get(k, _MISSING) for k in list(replayers) + list(CHECK_NAMES)}
    saved_checks = sys.modules.get(CHECKS_MODULE)
    for name in CHECK_NAMES:
        ns[name] = getattr(mod, name)
    user_ns.update(replayers)  # helper functions of the master resolve their globals in the kernel's namespace
    for name in CHECK_NAMES:
        user_ns[name] = getattr(mod, name)
    start = dict(ns)
    error = None
    _set_rng_state(c["rng"])
    try:
        sys.modules[CHECKS_MODULE] = mod
        exec(compile(c["source"], f"<check cell {cell}>", "exec"), ns)  # noqa: S102 - the master's own check cell
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:400]
    finally:
        for k, v in saved.items():
            if v is _MISSING:
                user_ns.pop(k, None)
            else:
                user_ns[k] = v
        if saved_checks is not None:
            sys.modules[CHECKS_MODULE] = saved_checks
    writes = {k: v for k, v in ns.items()
              if not k.startswith("__") and k not in replayers and k not in CHECK_NAMES
              and (k not in start or start[k] is not v)}
    return list(verdicts), error, writes


def _fallback(cell: int, record: dict[str, Any], arrays: dict[str, Any]) -> list[dict[str, Any]]:
    """Compare the values recorded in the submission's kernel with the master's expected values, here."""
    from .values import Unsupported, ValueFileError, decode

    c = _state["calib"][cell]
    mod, verdicts, _ = _fresh_checks(c.get("kind") == "hidden-check")
    got = record.get("checks", [])
    for k, master in enumerate(c.get("verdicts", [])):
        captured = c["captured"][k] if k < len(c.get("captured", [])) else None
        name, pts = master["name"], master.get("points", 1.0)
        if captured is None:
            verdicts.append({"name": name, "passed": False, "points": pts,
                             "message": "not yet: the master's check raised here (see the calibration)"})
            continue
        _, expected, kwargs = captured
        entry = got[k] if k < len(got) and isinstance(got[k], dict) else None
        if entry is None:
            verdicts.append({"name": name, "passed": False, "points": pts,
                             "message": "not yet: no value was recorded for this check"})
            continue
        if "raised" in entry:
            ename = str(entry.get("raised"))[:100]
            msg = ("not yet: the exercise is not filled in (NotImplementedError)." if ename == "NotImplementedError"
                   else f"not yet: your code raised {ename}: {str(entry.get('message', ''))[:500]}")
            verdicts.append({"name": name, "passed": False, "points": pts, "message": msg})
            continue
        try:
            value = decode(entry.get("value"), arrays)
        except ValueFileError as exc:
            verdicts.append({"name": name, "passed": False, "points": pts, "message": f"not yet: {exc}"})
            continue
        if isinstance(value, Unsupported):
            verdicts.append({"name": name, "passed": False, "points": pts,
                             "message": f"not yet: the value is of type {value.what}, which the grader cannot compare"})
            continue
        mod.check(name, value, expected, **{k2: v for k2, v in kwargs.items() if k2 != "exercise"})
    return list(verdicts)


def _judge_records(records: dict[int, tuple[dict[str, Any], dict[str, Any]] | None],
                   replayable: dict[int, bool] | None) -> dict[int, dict[str, Any]]:
    """Verdicts of every check cell for one set of records (``replayable=None``: replay every cell)."""
    results: dict[int, dict[str, Any]] = {}
    overlay: dict[str, Any] = {}
    last_writer: dict[str, int] = {}
    replayed: set[int] = set()
    order = list(_state["order"])
    for fact in _state["facts"]:
        if fact.get("role") != "check":
            for name in fact.get("stores", []):
                last_writer.pop(name, None)
            continue
        cell = fact.get("cell")
        if cell not in order:
            continue
        from_check = {n: last_writer[n] for n in fact.get("reads", []) if n in last_writer}
        got = records.get(cell)
        if got is None or not got[0].get("done"):
            results[cell] = {"ran": False}
        elif replayable is None or replayable.get(cell):
            verdicts, error, writes = _replay(cell, got[0], got[1], overlay, from_check, replayed)
            overlay.update(writes)
            replayed.add(cell)
            results[cell] = {"ran": True, "mode": "replay", "verdicts": verdicts, "error": error}
        else:
            results[cell] = {"ran": True, "mode": "values", "verdicts": _fallback(cell, got[0], got[1]),
                             "error": None, "weak": not _state["calib"][cell].get("direct")}
        for name in fact.get("stores", []):
            last_writer[name] = cell
    return results


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    return len(a) == len(b) and all(x["name"] == y["name"] and x["passed"] == y["passed"] for x, y in zip(a, b))


def self_replay(path: str) -> None:
    """Judge the master's own records: decide which check cells can be replayed; write the calibration report."""
    calib = _state["calib"]
    own = {cell: (c["record"], c["arrays"]) for cell, c in calib.items() if "record" in c}
    replay = _judge_records(own, None)
    tainted: set[str] = set()
    replayable: dict[int, bool] = {}
    report: dict[str, Any] = {"cells": {}}
    for fact in _state["facts"]:
        role, reads, stores = fact.get("role"), set(fact.get("reads", [])), set(fact.get("stores", []))
        if role == "master":
            if fact.get("mentions") or reads & tainted:
                tainted |= stores
            else:
                tainted -= stores
            continue
        if role == "learner":
            tainted |= stores - set(_state["functions"])
            continue
        cell = fact.get("cell")
        if cell not in calib or "record" not in calib[cell]:
            continue
        r = replay.get(cell, {})
        why = ""
        if reads & tainted:
            why = f"it reads {', '.join(sorted(reads & tainted)[:4])}, computed from exercise code"
        elif r.get("error"):
            why = f"replaying it raised {r['error']}"
        elif not _same(r.get("verdicts", []), calib[cell]["verdicts"]):
            why = "replaying it with the solutions' values does not reproduce the solutions' verdicts"
        replayable[cell] = not why
        if why:
            tainted |= stores
        else:
            tainted -= stores
        report["cells"][str(cell)] = {"exercise": calib[cell]["exercise"], "kind": calib[cell]["kind"],
                                      "verdicts": calib[cell]["verdicts"], "replayable": not why, "why": why,
                                      "direct": calib[cell].get("direct", False)}
    _state["replayable"] = replayable
    fallback = _judge_records(own, replayable)
    for cell, r in fallback.items():
        report["cells"][str(cell)]["judged"] = r.get("verdicts", [])
        report["cells"][str(cell)]["judged_error"] = r.get("error")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(report, fh)
    os.replace(tmp, path)


def judge(records_dir: str, path: str) -> None:
    """Verdicts for one submission's records (a folder of ``cell-N.json``/``.npz``), written to ``path``."""
    from .values import ValueFileError, load_cell

    records: dict[int, Any] = {}
    problems: dict[str, str] = {}
    for cell in _state["order"]:
        try:
            records[cell] = load_cell(records_dir, f"cell-{cell}")
        except (ValueFileError, ValueError, OSError) as exc:
            records[cell] = None
            problems[str(cell)] = f"the values recorded for this check cell are unusable ({exc})"[:300]
    results = _judge_records(records, _state["replayable"])
    out = {"cells": {str(k): v for k, v in results.items()}, "problems": problems,
           "final": os.path.lexists(os.path.join(records_dir, "final.json"))}
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(out, fh)
    os.replace(tmp, path)
