"""What the grader reads from cell sources without running them (Python's ``ast`` only).

* :func:`strip_expected` — the check cells a submission's kernel runs, with every expected value
  removed (``check(name, value, EXPECTED)`` becomes ``check(name, value, None)``, and an assignment
  that only feeds expected values becomes ``name = None``): the reference values are then never
  computed in a learner's process, so its code can neither read nor copy them.
* :func:`loads`, :func:`stores`, :func:`is_direct` — the facts the judge needs to replay a check
  cell (which names it reads and writes, whether its checked values are what an exercise function
  returned).
* :func:`reference_names` and :func:`exercise_findings` — what an exercise's function uses: the
  package's own implementation of the exercise (the function the checks compare with), or code that
  reaches outside its inputs (frames, the notebook's namespace, files, processes, patching a
  module). Such an exercise scores 0 and is flagged for a human; honest solutions never need either.
"""
from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path
from typing import Iterable

__all__ = ["CHECK_FUNCS", "PACKAGE_DIR", "GENERIC", "OUTSIDE", "REVIEW", "parse", "is_check_call",
           "expected_nodes", "loads", "stores", "is_direct", "strip_expected", "expected_only_names",
           "package_names", "reference_names", "exercise_findings", "inplace_changes", "review_flags"]

CHECK_FUNCS = ("check", "run_check")
#: the diffcl_lite package folder
PACKAGE_DIR = Path(__file__).resolve().parents[1]

#: names common enough in honest array code that they never count as "the reference implementation"
GENERIC = frozenset("""to item numpy shape sum mean forward size get copy T data values keys items append update run
fit stack cat float int tensor array all any max min norm dot reshape view clone detach cpu long double abs exp log
sqrt toarray to_dense tolist flatten train eval step zero_grad backward argsort sort unique where zeros ones full
arange linspace matmul mm bmm transpose permute squeeze unsqueeze expand repeat index_add_ scatter_ gather topk
isin bincount cumprod prod diagonal fill_diagonal normalize softmax log_softmax logsumexp sigmoid relu tanh rsqrt
pow square astype nonzero flatnonzero count_nonzero len range zip enumerate sorted list tuple dict set print format
round isfinite allclose isclose shape_of numel dim type dtype device new_zeros new_ones manual_seed Generator""".split())

#: what reaches outside a function's inputs: label -> (names, attribute names)
OUTSIDE = {
    "frames or code objects": ({"inspect", "gc", "ctypes"},
                               {"_getframe", "f_back", "f_locals", "f_globals", "f_code", "__code__", "__globals__",
                                "__closure__", "settrace", "setprofile", "tb_frame", "gi_frame", "cr_frame"}),
    "the notebook's namespace": ({"get_ipython", "In", "Out", "_ih", "_oh", "globals", "vars", "locals",
                                  "__builtins__", "builtins", "__main__"}, {"user_ns", "user_global_ns", "__dict__"}),
    "dynamic code": ({"eval", "exec", "compile", "__import__", "importlib", "marshal", "pickle", "dill"}, set()),
    "the checks or the grader": ({"checks", "_compare", "_record", "RESULTS", "results_json", "course",
                                  "classroom_runtime", "__dg__", "check", "run_check", "CheckResult"},
                                 {"checks", "_compare", "_record", "RESULTS", "results_json", "course",
                                  "classroom_runtime", "classroom_exec", "classroom_grade"}),
    "the interpreter's internals": ({"sys"}, {"modules", "meta_path", "path_hooks"}),
    "files, processes or the network": ({"open", "os", "subprocess", "socket", "signal", "shutil", "pathlib", "Path",
                                         "urllib", "requests", "http", "multiprocessing", "threading", "pty", "fcntl",
                                         "mmap"},
                                        {"system", "fork", "kill", "killpg", "setsid", "_exit", "Popen",
                                         "urlopen", "listdir", "scandir", "read_text", "read_bytes"}),
}

#: patterns over all of a learner's code: worth a human look, never scored (the ``flags`` column)
REVIEW = [(r"diffcl_lite\.(lessons\.)?checks|\bRESULTS\b|results_json|\b_compare\b|\b_record\b", "the checks module"),
          (r"diffcl_lite\.course|classroom_runtime|classroom_exec|classroom_grade|__dg__", "the grader's code"),
          (r"sys\.modules", "sys.modules"),
          (r"__code__|__globals__|sys\._getframe|\binspect\.|f_back|f_locals", "code objects or frames"),
          (r"\bgc\.|\bctypes\b", "gc/ctypes"), (r"\bbuiltins\b|__builtins__", "builtins"),
          (r"^\s*(check|run_check)\s*=|^\s*def\s+(check|run_check)\s*\(", "a redefinition of check"),
          (r"events\.register|post_run_cell|pre_run_cell|post_execute|set_custom_exc|register_magic", "IPython hooks"),
          (r"/proc\b|/etc/|\.ipynb|grades\.csv|\.\./", "files outside the working folder"),
          (r"\bsubprocess\b|os\.system|os\.fork|os\.kill|os\.killpg|setsid|\bsignal\.|os\._exit|Popen|multiprocessing",
           "processes or signals"),
          (r"\bsocket\b|urllib|requests\.|http\.client|urlopen", "the network"),
          (r"\bexec\s*\(|\beval\s*\(|\bcompile\s*\(|__import__|importlib", "dynamic code"),
          (r"^\s*[A-Za-z_][\w.]*\.[A-Za-z_]\w*\s*=(?!=)|\bsetattr\s*\(", "assigns an attribute of a module or object")]


def parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):
        return None


def is_check_call(node: ast.AST) -> bool:
    """``check(...)``, ``run_check(...)`` or ``<anything>.check(...)``."""
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Name) and f.id in CHECK_FUNCS) or (isinstance(f, ast.Attribute) and f.attr in CHECK_FUNCS)


def _expected_slot(call: ast.Call) -> tuple[str, int | str] | None:
    if len(call.args) >= 3:
        return ("arg", 2)
    for k, kw in enumerate(call.keywords):
        if kw.arg == "expected":
            return ("kw", k)
    return None


def expected_nodes(tree: ast.AST) -> list[ast.AST]:
    """The expected-value expressions of every check call in ``tree``."""
    out = []
    for node in ast.walk(tree):
        if is_check_call(node):
            slot = _expected_slot(node)  # type: ignore[arg-type]
            if slot:
                out.append(node.args[2] if slot[0] == "arg" else node.keywords[slot[1]].value)  # type: ignore
    return out


def loads(source: str | ast.AST) -> set[str]:
    """Every name a cell reads (anywhere, also inside its functions); empty when it does not parse."""
    tree = parse(source) if isinstance(source, str) else source
    if tree is None:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Load, ast.Del))}


def _target_names(t: ast.AST) -> set[str]:
    if isinstance(t, ast.Name):
        return {t.id}
    if isinstance(t, (ast.Tuple, ast.List)):
        return set().union(*(_target_names(e) for e in t.elts)) if t.elts else set()
    if isinstance(t, ast.Starred):
        return _target_names(t.value)
    if isinstance(t, (ast.Attribute, ast.Subscript)):  # x.attr = ..., x[i] = ...: x is modified
        base = t.value
        while isinstance(base, (ast.Attribute, ast.Subscript)):
            base = base.value
        return {base.id} if isinstance(base, ast.Name) else set()
    return set()


def stores(source: str | ast.AST) -> set[str]:
    """Names a cell (re)binds or modifies at module level (not inside its functions and classes)."""
    tree = parse(source) if isinstance(source, str) else source
    if tree is None:
        return set()
    out: set[str] = set()

    def visit(nodes: Iterable[ast.AST]) -> None:
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.add(node.name)
                continue
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    out.update(_target_names(t))
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                out.update(_target_names(node.target))
            elif isinstance(node, (ast.For, ast.AsyncFor)):
                out.update(_target_names(node.target))
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    if item.optional_vars is not None:
                        out.update(_target_names(item.optional_vars))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    out.add((alias.asname or alias.name).split(".")[0])
            elif isinstance(node, ast.Delete):
                for t in node.targets:
                    out.update(_target_names(t))
            elif isinstance(node, ast.ExceptHandler) and node.name:
                out.add(node.name)
            for sub in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) else ():
                if isinstance(sub, ast.NamedExpr):
                    out.update(_target_names(sub.target))
            for field in ("body", "orelse", "finalbody", "handlers"):
                visit(getattr(node, field, []) or [])

    visit(tree.body)
    return out


def _direct_value(node: ast.AST, functions: set[str], assigned: dict[str, ast.AST]) -> bool:
    if isinstance(node, ast.Lambda):
        node = node.body
    if isinstance(node, ast.Name) and node.id in assigned:
        node = assigned[node.id]
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in functions


def is_direct(source: str, functions: set[str]) -> bool:
    """True when every value the cell checks is what an exercise function returned (not computed from it)."""
    tree = parse(source)
    if tree is None:
        return False
    assigned: dict[str, ast.AST] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            assigned[node.targets[0].id] = node.value
    calls = [n for n in ast.walk(tree) if is_check_call(n)]
    return bool(calls) and all(len(c.args) >= 2 and _direct_value(c.args[1], functions, assigned) for c in calls)


def strip_expected(source: str, removable: set[str]) -> str:
    """``source`` with every expected value of its checks replaced by ``None`` (see the module docstring).

    ``removable``: names that only ever feed expected values (:func:`expected_only_names`); an
    assignment to them becomes ``name = None``. A cell that does not parse is returned unchanged.
    """
    tree = parse(source)
    if tree is None:
        return source
    for node in ast.walk(tree):
        if is_check_call(node):
            slot = _expected_slot(node)  # type: ignore[arg-type]
            if not slot:
                continue
            if slot[0] == "arg":
                node.args[2] = ast.Constant(None)
            else:
                node.keywords[slot[1]].value = ast.Constant(None)
    if removable:
        for node in ast.walk(tree):
            if (isinstance(node, ast.Assign) and node.targets
                    and all(isinstance(t, ast.Name) and t.id in removable for t in node.targets)):
                node.value = ast.Constant(None)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id in removable:
                node.value = ast.Constant(None)
    return ast.unparse(ast.fix_missing_locations(tree))


def expected_only_names(check_sources: list[str], other_sources: list[str]) -> set[str]:
    """Names whose every read (across the notebook) is inside an expected value of a check."""
    inside: set[str] = set()
    outside: set[str] = set()
    for src in check_sources:
        tree = parse(src)
        if tree is None:
            continue
        exp = expected_nodes(tree)
        for e in exp:
            inside |= loads(e)
        ids = {id(n) for e in exp for n in ast.walk(e)}
        outside |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
                    and id(n) not in ids}
    for src in other_sources:
        outside |= loads(src)
    return inside - outside


# ---------------------------------------------------------------- the reference implementation of an exercise


@lru_cache(maxsize=1)
def package_names() -> frozenset[str]:
    """Functions, methods and attributes the package defines (the candidates for "the reference implementation")."""
    names: set[str] = set()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR).parts
        if rel[0] == "course" or rel == ("lessons", "checks.py") or "__pycache__" in rel:
            continue
        tree = parse(path.read_text(encoding="utf-8"))
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and isinstance(node.value, ast.Name) \
                    and node.value.id == "self":
                names.add(node.attr)
    return frozenset(n for n in names if not n.startswith("_") and n not in GENERIC)


def _heads(node: ast.AST, defs: dict[str, ast.AST], seen: set[str]) -> set[str]:
    """Package-defined names an expected-value expression calls or reads, outermost first (not their arguments).

    ``graphs.propagate_layers(graphs.bipartite_adjacency(...), E, 1)[1]`` gives ``propagate_layers``;
    ``torch.stack([losses.alignment(a, b), losses.uniformity(a)])`` gives ``alignment`` and ``uniformity``;
    a helper defined in the notebook's check cells counts with what it calls.
    """
    pkg = package_names()
    if isinstance(node, ast.Call):
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
        if name in defs:
            out = {name}
            if name not in seen:
                seen.add(name)
                out |= _heads(defs[name], defs, seen)
            return out
        if name in pkg:
            return {name}
        out = set()
        for child in [f, *node.args, *(k.value for k in node.keywords)]:
            out |= _heads(child, defs, seen)
        return out
    if isinstance(node, ast.Attribute):
        return {node.attr} if node.attr in pkg else _heads(node.value, defs, seen)
    out = set()
    for child in ast.iter_child_nodes(node):
        out |= _heads(child, defs, seen)
    return out


def reference_names(check_sources: list[str], functions: set[str]) -> set[str]:
    """The package functions (and notebook helpers) the expected values of an exercise's checks come from."""
    defs: dict[str, ast.AST] = {}
    assigns: dict[str, list[ast.AST]] = {}
    trees = [t for t in (parse(s) for s in check_sources) if t is not None]
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defs[node.name] = node
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    for n in _target_names(t):
                        assigns.setdefault(n, []).append(node.value)
    out: set[str] = set()
    seen: set[str] = set()
    for tree in trees:
        for e in expected_nodes(tree):
            out |= _heads(e, defs, seen)
            if isinstance(e, ast.Name):  # expected = graphs.knn_indices(...)  ...  check(..., expected)
                for value in assigns.get(e.id, []):
                    out |= _heads(value, defs, seen)
    return out


def _vocabulary(node: ast.AST) -> tuple[set[str], set[str], set[str], list[str]]:
    """(names read, attribute names, string constants, patches) of a piece of learner code."""
    names, attrs, strings, patches = set(), set(), set(), []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            names.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            attrs.add(sub.attr)
            if isinstance(sub.ctx, ast.Store):
                patches.append(ast.unparse(sub))
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str) and len(sub.value) < 200:
            strings.add(sub.value)
        elif isinstance(sub, ast.alias):  # `from diffcl_lite.stats import mean_sd` inside the function
            names.add(sub.name.split(".")[-1])
            names.add(sub.name.split(".")[0])
        elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id in ("getattr", "setattr",
                                                                                               "delattr"):
            if len(sub.args) >= 2 and not isinstance(sub.args[1], ast.Constant):
                names.add("getattr()")  # a computed attribute name: dynamic code
            if sub.func.id != "getattr":
                patches.append(ast.unparse(sub)[:80])
    return names, attrs, strings, patches


def exercise_findings(learner_sources: list[str], functions: set[str], references: set[str],
                      own_functions: set[str]) -> list[str]:
    """Why an exercise's function must not score (empty: nothing found).

    ``learner_sources``: every cell of the submission that the grader runs as the learner's;
    ``functions``: the exercise's function names; ``references``: :func:`reference_names` of its checks;
    ``own_functions``: every exercise function of the notebook (a call of another exercise is fine).
    """
    defs: dict[str, list[ast.AST]] = {}

    def collect(nodes: Iterable[ast.AST]) -> None:  # module level, also inside if/try/with/for blocks
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defs.setdefault(node.name, []).append(node)
                continue
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    for n in _target_names(t):
                        if node.value is not None:
                            defs.setdefault(n, []).append(node.value)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:  # `from pkg import impl as f`: f stands for `impl`
                    defs.setdefault((alias.asname or alias.name).split(".")[0], []).append(
                        ast.Name(id=alias.name.split(".")[-1], ctx=ast.Load()))
            for field in ("body", "orelse", "finalbody", "handlers"):
                collect(getattr(node, field, []) or [])

    for src in learner_sources:
        tree = parse(src)
        if tree is not None:
            collect(tree.body)
    missing = sorted(f for f in functions if f not in defs)
    todo = [f for f in functions if f in defs]
    seen: set[str] = set(todo)
    names, attrs, strings, patches = set(), set(), set(), []
    while todo:
        name = todo.pop()
        for node in defs[name]:
            n, a, s, p = _vocabulary(node)
            names |= n
            attrs |= a
            strings |= s
            patches += p
            for dep in n:
                if dep in defs and dep not in seen and dep not in own_functions - functions:
                    seen.add(dep)
                    todo.append(dep)
    found = []
    if missing and len(missing) == len(functions) and any(f"{m}" in src for m in missing for src in learner_sources):
        # the function exists only at run time (exec, globals()[...] = ...): its code cannot be read
        found.append(f"is not defined by a `def` in your notebook ({', '.join(missing)} is made at run time), so "
                     f"the grader cannot read it")
    used_refs = sorted((attrs & references) | (names & (references - own_functions)) | (strings & references))
    if used_refs:
        found.append("uses " + ", ".join(f"`{r}`" for r in used_refs) + ", the package's own implementation that "
                     "the checks compare with")
    hits: dict[str, set[str]] = {}
    for label, (name_words, attr_words) in OUTSIDE.items():
        words = (names & name_words) | (attrs & attr_words)
        if words:
            hits[label] = words
    if "getattr()" in names:
        hits.setdefault("dynamic code", set()).add("getattr with a computed name")
    for label, words in sorted(hits.items()):
        found.append(f"reaches {label} ({', '.join(sorted(words)[:4])})")
    module_patches = [p for p in patches if not p.startswith("self.")]
    if module_patches:
        found.append("assigns attributes (" + ", ".join(sorted(set(module_patches))[:3]) + ")")
    return found


def inplace_changes(learner_sources: list[str]) -> list[str]:
    """Names of the notebook's data (not defined by the learner) that learner code changes in place at top level:
    ``x[:] = 0``, ``ds.train = ...``, ``emb.zero_()``. The guards cannot undo these; the judge never sees them."""
    own: set[str] = set()
    trees = [t for t in (parse(s) for s in learner_sources) if t is not None]
    for tree in trees:
        for node in tree.body:
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                own |= {t.id for t in targets if isinstance(t, ast.Name)}
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                own |= {(a.asname or a.name).split(".")[0] for a in node.names}
    changed: set[str] = set()

    def base(node: ast.AST) -> str | None:
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        return node.id if isinstance(node, ast.Name) else None

    for tree in trees:
        for node in tree.body:
            targets: list[ast.AST] = []
            if isinstance(node, ast.Assign):
                targets = list(node.targets)
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                f = node.value.func
                if isinstance(f, ast.Attribute) and f.attr.endswith("_") and not f.attr.startswith("_"):
                    targets = [f.value]
            for t in targets:
                if isinstance(t, (ast.Attribute, ast.Subscript)) or (isinstance(t, ast.Name) and targets
                                                                    and not isinstance(node, ast.Assign)):
                    name = base(t)
                    if name and name not in own and name not in ("np", "torch", "F", "math"):
                        changed.add(name)
    return sorted(changed)


def review_flags(sources: list[str]) -> list[str]:
    """What a learner's code touches that is worth a human look (reported, never scored)."""
    return [label for pat, label in REVIEW if any(re.search(pat, s, flags=re.MULTILINE) for s in sources)]
