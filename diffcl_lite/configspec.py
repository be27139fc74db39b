"""The fields of :class:`~diffcl_lite.model.DiffCLConfig`, read from ``model.py`` without importing torch.

The command line builds one flag per config field (``--lambda-cl``, ``--view-kind``, ...) with
its default, its allowed values and a help text taken from the comments beside the field. Importing
``model.py`` would import torch (seconds), so ``--help`` and ``data list`` read the module's
source with :mod:`ast` instead:

* field name, annotation and default: the annotated assignments of the class body;
* allowed values of a text field: the ``self.<field> in (...)`` checks of ``__post_init__``
  (the rule the config itself enforces), else a module constant named in :data:`EXTRA_CHOICES`;
* help text: the comment at the end of the field's line, else the comment lines right above it.

When the source cannot be read (a frozen install), the fields come from the imported dataclass,
without help texts.
"""
from __future__ import annotations

import ast
import functools
import importlib.util
import io
import logging
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONFIG_MODULE = "diffcl_lite.model"
CONFIG_CLASS = "DiffCLConfig"
#: text fields whose allowed values live in a constant of another module: field -> (module, name)
EXTRA_CHOICES = {"schedule": ("diffcl_lite.diffusion", "_SCHEDULE_KINDS")}

__all__ = ["FieldSpec", "config_fields", "model_names", "field_by_name"]


@dataclass(frozen=True)
class FieldSpec:
    """One config field as the command line sees it."""

    name: str
    kind: str                              # "bool", "int", "float", "str" or "weights"
    optional: bool                         # None is allowed
    default: Any
    help: str = ""
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _source(module: str) -> tuple[ast.Module, str] | None:
    spec = importlib.util.find_spec(module)
    origin = getattr(spec, "origin", None)
    if not origin or not origin.endswith(".py") or not Path(origin).is_file():
        return None
    text = Path(origin).read_text(encoding="utf-8")
    return ast.parse(text), text


def _comments(text: str) -> dict[int, tuple[str, bool]]:
    """``{line: (comment text, whole line is a comment)}`` of a module's source."""
    out: dict[int, tuple[str, bool]] = {}
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            alone = tok.line[: tok.start[1]].strip() == ""
            out[tok.start[0]] = (tok.string.lstrip("#").strip(), alone)
    return out


def _kind(annotation: str) -> tuple[str, bool]:
    parts = [p.strip() for p in annotation.replace("Optional[", "").rstrip("]").split("|")]
    optional = "None" in parts or annotation.startswith("Optional[")
    base = next((p for p in parts if p != "None"), "str")
    if base.startswith("dict"):
        return "weights", optional
    return (base if base in ("bool", "int", "float", "str") else "str"), optional


def _tuple_of_str(node: ast.AST, constants: dict[str, tuple[str, ...]]) -> tuple[str, ...] | None:
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        try:
            values = tuple(ast.literal_eval(node))
        except ValueError:
            return None
        return values if all(isinstance(v, str) for v in values) else None
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def _module_constants(tree: ast.Module) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        value = getattr(node, "value", None)
        for t in targets:
            if isinstance(t, ast.Name) and value is not None:
                values = _tuple_of_str(value, {})
                if values is not None:
                    out[t.id] = values
    return out


def _checked_choices(cls: ast.ClassDef, constants: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """``{field: values}`` from the ``self.<field> in (...)`` tests of ``__post_init__``."""
    out: dict[str, tuple[str, ...]] = {}
    for fn in cls.body:
        if isinstance(fn, ast.FunctionDef) and fn.name == "__post_init__":
            for node in ast.walk(fn):
                if (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.In)
                        and isinstance(node.left, ast.Attribute) and isinstance(node.left.value, ast.Name)
                        and node.left.value.id == "self"):
                    values = _tuple_of_str(node.comparators[0], constants)
                    if values:
                        out[node.left.attr] = values
    return out


def _extra_choices(name: str) -> tuple[str, ...] | None:
    module, const = EXTRA_CHOICES[name]
    parsed = _source(module)
    return _module_constants(parsed[0]).get(const) if parsed else None


@functools.lru_cache(maxsize=1)
def _parse() -> tuple[tuple[FieldSpec, ...], tuple[str, ...]] | None:
    parsed = _source(CONFIG_MODULE)
    if parsed is None:
        return None
    tree, text = parsed
    constants = _module_constants(tree)
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == CONFIG_CLASS), None)
    if cls is None:
        return None
    comments = _comments(text)
    checked = _checked_choices(cls, constants)
    fields: list[FieldSpec] = []
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None):
            continue
        name = node.target.id
        kind, optional = _kind(ast.unparse(node.annotation))
        try:
            default = ast.literal_eval(node.value)
        except ValueError:
            return None  # a default that is not a literal: use the imported dataclass instead
        trailing = comments.get(node.lineno)
        if trailing and not trailing[1]:
            help_text = trailing[0]
        else:  # the comment block right above the field
            lines, ln = [], node.lineno - 1
            while ln in comments and comments[ln][1]:
                lines.insert(0, comments[ln][0])
                ln -= 1
            help_text = " ".join(lines)
        choices = checked.get(name)
        if choices is None and kind == "str" and name in EXTRA_CHOICES:
            choices = _extra_choices(name)
        fields.append(FieldSpec(name, kind, optional, default, " ".join(help_text.split()), choices))
    return tuple(fields), constants.get("MODELS", ())


def _from_import() -> tuple[tuple[FieldSpec, ...], tuple[str, ...]]:
    import dataclasses
    import typing

    from .model import MODELS, DiffCLConfig

    hints = typing.get_type_hints(DiffCLConfig)
    out = []
    for f in dataclasses.fields(DiffCLConfig):
        kind, optional = _kind(str(hints[f.name]).replace("typing.", "").replace("<class '", "").replace("'>", ""))
        out.append(FieldSpec(f.name, kind, optional, f.default))
    return tuple(out), tuple(MODELS)


def _spec() -> tuple[tuple[FieldSpec, ...], tuple[str, ...]]:
    try:
        parsed = _parse()
    except (OSError, SyntaxError, ValueError) as exc:  # unreadable source: fall back to the import
        log.debug("reading %s from source failed (%s); importing it", CONFIG_CLASS, exc)
        parsed = None
    return parsed if parsed is not None and parsed[1] else _from_import()


def config_fields() -> tuple[FieldSpec, ...]:
    """Every field of ``DiffCLConfig``, in order, with its flag, default, allowed values and help."""
    return _spec()[0]


def field_by_name() -> dict[str, FieldSpec]:
    """``{field name: FieldSpec}``."""
    return {f.name: f for f in config_fields()}


def model_names() -> tuple[str, ...]:
    """The model names ``build_model`` accepts (``model.MODELS``)."""
    return _spec()[1]
