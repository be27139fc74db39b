"""The command line's arguments: the flags of every ``DiffCLConfig`` / ``TrainConfig`` field, their parsing
into configs, and ``--config FILE`` (a run's settings replayed, checked field by field).

Only the standard library and :mod:`diffcl_lite.configspec` are imported here: torch is imported when
a config is built, so ``--help`` answers at once.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .configspec import FieldSpec, config_fields, field_by_name, model_names
from .errors import DiffCLError

if TYPE_CHECKING:  # pragma: no cover
    from .model import DiffCLConfig
    from .training import TrainConfig

__all__ = ["ALIASES", "LOG_LEVELS", "TRAIN_FLAGS", "TRAIN_RUNTIME", "PROTOCOL_DEFAULTS", "SMALL_SYNTHETIC_DEFAULTS",
           "SMALL_SYNTHETIC", "parse_device", "parse_log_level", "add_config_flags", "add_data_flags", "add_train_flags",
           "add_run_flags", "model_config_from_args", "train_defaults", "train_config_from_args", "config_defaults"]

ALIASES = {"no_cl": ("use_cl", False), "no_align": ("use_align", False),
           "no_item_graph": ("use_item_graph", False), "random_views": ("view_kind", "random")}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: TrainConfig fields with a flag (dest = field name); the others are replayed from --config as they are
TRAIN_FLAGS = ("epochs", "batch_size", "lr", "weight_decay", "eval_every", "patience", "eval_batch_size", "seed",
               "max_batches", "ks", "select_metric")
#: TrainConfig fields that belong to one invocation, never replayed from --config
TRAIN_RUNTIME = ("checkpoint_dir", "resume", "progress", "resume_override")
#: the usage line of the commands with ~60 flags (an error shows it; --help lists every flag)


def _parse_weights(text: str) -> dict[str, float]:
    try:
        return {k.strip(): float(v) for k, v in (part.split("=") for part in text.split(",") if part.strip())}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected name=weight pairs like 'image=0.1,text=0.9', got {text!r}") from exc


def _parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(p) for p in text.replace(" ", "").split(",") if p)
    except ValueError:
        ks = ()
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"expected cut-offs K >= 1 like '10,20', got {text!r}")
    return ks


def parse_device(text: str) -> str:
    t = text.strip().lower()
    if re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", t):
        return t
    raise argparse.ArgumentTypeError(f"{text!r} is not a device; use auto, cpu, cuda, cuda:N (e.g. cuda:1) or mps")


def parse_log_level(text: str) -> str:
    t = text.strip().upper()
    if t not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a log level; use one of {', '.join(LOG_LEVELS)}")
    return t


def _help(f: FieldSpec) -> str:
    text = f.help.replace("%", "%%")
    default = "auto" if f.name == "item_graph_weights" and f.default is None else f.default
    return f"{text} [{default}]".strip()


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (DiffCLConfig fields; defaults in brackets)")
    types = {"int": int, "float": float, "str": str}
    for f in config_fields():
        dest = f"cfg_{f.name}"
        if f.kind == "bool":
            group.add_argument(f.flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=_help(f))
        elif f.kind == "weights":
            group.add_argument(f.flag, dest=dest, type=_parse_weights, default=None, metavar="NAME=W,...",
                               help="modality weights of the fused item-item graph, e.g. image=0.1,text=0.9; "
                                    + _help(f))
        else:
            group.add_argument(f.flag, dest=dest, type=types[f.kind], default=None, choices=f.choices, help=_help(f),
                               metavar="{" + ",".join(f.choices) + "}" if f.choices else f.kind.upper())
    abl = parser.add_argument_group("ablation shortcuts")
    abl.add_argument("--no-cl", action="store_true", help="no contrastive loss (same as --no-use-cl)")
    abl.add_argument("--no-align", action="store_true", help="no alignment loss (same as --no-use-align)")
    abl.add_argument("--no-item-graph", action="store_true", help="no item-item graph (same as --no-use-item-graph)")
    abl.add_argument("--random-views", action="store_true", help="SimGCL random-noise views instead of diffusion views")


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--data-root", default=None, help="dataset cache folder [$DIFFCL_DATA or ~/.cache/diffcl_lite]")
    g.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="deadline in seconds for each downloaded file's whole transfer [60 + 20 per MB]")
    g.add_argument("--rehash", action="store_true", help="hash every cached file again (and fetch those that changed)")
    g.add_argument("--allow-split-overlap", action="store_true",
                   help="keep (user, item) pairs that occur in two splits (an error by default)")


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="synthetic",
                        help="synthetic (default), synthetic-sparse, synthetic-baby, synthetic-tiktok, tiktok, baby, "
                             "mmrec:FOLDER, diffmm:FOLDER (see `data list`)")
    add_data_flags(parser)
    parser.add_argument("--no-download", action="store_true", help="never download; fail if the dataset is not cached")
    parser.add_argument("--config", dest="config_file", default=None, metavar="FILE",
                        help="replay the settings of a run folder's config.json (or its folder) or of a --json "
                             "file; flags given here win")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs [100; small synthetic data: 30]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", type=parse_device, metavar="{auto,cpu,cuda,cuda:N,mps}",
                        help="where to compute [auto: CUDA, then MPS, then CPU]")
    parser.add_argument("--batch-size", type=int, default=None, help="[2048; small synthetic data: 1024]")
    parser.add_argument("--eval-batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=None, help="[1e-3; small synthetic data: 5e-3]")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--patience", type=int, default=None,
                        help="evaluations without valid R@20 improvement [20; small synthetic data: 10]")
    parser.add_argument("--eval-every", type=int, default=1)
    parser.add_argument("--ks", type=_parse_ks, default=None, metavar="K,K", help="metric cut-offs [10,20]")
    parser.add_argument("--select-metric", default=None, metavar="METRIC@K",
                        help="valid metric for early stopping and model selection [recall@20, or recall@max(--ks)]")
    parser.add_argument("--max-batches", type=int, default=None, help="cap batches per epoch (quick checks)")
    parser.add_argument("--checkpoint-dir", default=None, help="write checkpoint.pt here after every epoch")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir/checkpoint.pt")
    parser.add_argument("--resume-override", default=None, metavar="FIELD,...",
                        help="with --resume: settings that may differ from the checkpoint's, e.g. lr,lambda_cl")
    parser.add_argument("--json", dest="json_path", default=None, help="write the results as JSON to this path")
    parser.add_argument("--cache-dir", default=None, help="cache folder for item-item graphs [none]")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    parser.set_defaults(train_extra=None)
    add_config_flags(parser)


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("run folder")
    g.add_argument("--run-dir", default=None, metavar="DIR",
                   help="write config.json, history.csv, log.txt, result.json, curve.png here "
                        "[runs/<dataset>-<model>-<time>]")
    g.add_argument("--no-run-dir", action="store_true", help="write no run folder")
    g.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files to <run-dir>/tb (needs the tensorboard package)")


def _short_config_error(exc: DiffCLError, values: dict[str, Any]) -> DiffCLError:
    """DiffCLConfig's message without its dump of every field, plus the flags that were given."""
    msg = re.sub(r"\s*\(got DiffCLConfig\(.*\)\)\.?\s*$", "", str(exc), flags=re.S).rstrip(".")
    named = [n for n in values if re.search(rf"\b{re.escape(n)}\b", msg)] or list(values)
    given = ", ".join(f"--{n.replace('_', '-')} {values[n]!r}" for n in named) or "the defaults"
    return DiffCLError(f"{msg} (you gave {given}). Fix: change that value; `train --help` lists each flag's default.")


def model_config_from_args(args: argparse.Namespace) -> "DiffCLConfig":
    from .model import DiffCLConfig

    values: dict[str, Any] = {}
    for f in config_fields():
        v = getattr(args, f"cfg_{f.name}", None)
        if v is not None:
            values[f.name] = v
    for alias, (name, value) in ALIASES.items():
        if getattr(args, alias, False):
            values[name] = value
    try:
        return DiffCLConfig(**values)
    except DiffCLError as exc:
        raise _short_config_error(exc, values) from None


#: MMRec protocol for real data; the small synthetic datasets (~10-20k interactions, a handful of
#: batches per epoch at 2048) converge in far fewer epochs with smaller batches and a larger lr.
PROTOCOL_DEFAULTS = {"epochs": 100, "batch_size": 2048, "lr": 1e-3, "patience": 20}
SMALL_SYNTHETIC_DEFAULTS = {"epochs": 30, "batch_size": 1024, "lr": 5e-3, "patience": 10}
SMALL_SYNTHETIC = ("synthetic", "synthetic-sparse", "synthetic-hard")


def train_defaults(dataset: str) -> dict[str, Any]:
    """Training defaults for a dataset spec (used for every flag the user did not give)."""
    return dict(SMALL_SYNTHETIC_DEFAULTS if dataset in SMALL_SYNTHETIC else PROTOCOL_DEFAULTS)


def train_config_from_args(args: argparse.Namespace, dataset: str | None = None) -> "TrainConfig":
    from .training import TrainConfig

    d = train_defaults(dataset or getattr(args, "dataset", "synthetic"))
    pick = lambda name: d[name] if getattr(args, name) is None else getattr(args, name)  # noqa: E731
    extra = dict(getattr(args, "train_extra", None) or {})
    ks = getattr(args, "ks", None)
    select = getattr(args, "select_metric", None)
    if ks is not None:
        extra["ks"] = tuple(ks)
    if select is not None:
        extra["select_metric"] = select
    elif ks is not None:  # recall@20 needs 20 in ks; else select on the largest K given
        extra["select_metric"] = "recall@20" if 20 in ks else f"recall@{max(ks)}"
    override = getattr(args, "resume_override", None)
    if override:
        extra["resume_override"] = tuple(p for p in override.replace(",", " ").split() if p)
    return TrainConfig(
        epochs=pick("epochs"), batch_size=pick("batch_size"), lr=pick("lr"), weight_decay=args.weight_decay,
        eval_every=args.eval_every, patience=pick("patience"), eval_batch_size=args.eval_batch_size, seed=args.seed,
        max_batches=args.max_batches, checkpoint_dir=args.checkpoint_dir, resume=args.resume, progress=not args.quiet,
        **extra,
    )


# ---------------------------------------------------------------------- --config FILE
def _config_value_error(path: Path, where: str, value: Any, why: str) -> DiffCLError:
    return DiffCLError(f"--config {path}: {where}={value!r} {why}.")


def _check_model_value(path: Path, f: FieldSpec, value: Any) -> Any:
    where = f"model.{f.name}"
    if value is None:
        if f.optional:
            return None
        raise _config_value_error(path, where, value, f"is not allowed: the field needs a value ({f.flag})")
    if f.kind == "bool":
        if not isinstance(value, bool):
            raise _config_value_error(path, where, value, f"must be true or false ({f.flag})")
    elif f.kind in ("int", "float"):
        ok = isinstance(value, int) if f.kind == "int" else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            raise _config_value_error(path, where, value, f"must be a{'n integer' if f.kind == 'int' else ' number'} ({f.flag})")
    elif f.kind == "weights":
        if not isinstance(value, dict) or not all(isinstance(v, (int, float)) for v in value.values()):
            raise _config_value_error(path, where, value, f"must be a mapping of modality to weight ({f.flag})")
    elif not isinstance(value, str):
        raise _config_value_error(path, where, value, f"must be text ({f.flag})")
    if f.choices and value not in f.choices:
        raise _config_value_error(path, where, value, f"is not allowed; allowed values: {', '.join(f.choices)} ({f.flag})")
    return value


def config_defaults(path: "str | Path", command: str) -> dict[str, Any]:
    """Parser defaults from a config block: a run folder's config.json, the folder, or a ``--json`` file.

    Unknown fields, wrong types and values outside a field's allowed values stop with the file,
    the field and what is allowed. Settings of one invocation (checkpoint folder, resume) are not
    replayed.
    """
    import dataclasses as dc

    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "config.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DiffCLError(f"--config {p}: no such file. Fix: pass the config.json of a run folder (or the folder), "
                          f"or a file written by --json.") from None
    except (OSError, ValueError) as exc:
        raise DiffCLError(f"--config {p}: cannot read it as JSON ({exc}). Fix: pass the config.json of a run folder "
                          f"or a file written by --json.") from None
    block = data.get("config", data) if isinstance(data, dict) else None
    if not isinstance(block, dict) or not {"model", "train", "run"} & set(block):
        raise DiffCLError(f"--config {p}: no 'model', 'train' or 'run' block in it. Fix: pass the config.json of a run "
                          f"folder or a file written by --json.")
    unknown = sorted(set(block) - {"model", "train", "run"})
    if unknown:
        raise DiffCLError(f"--config {p}: unknown block(s) {unknown}; a config has 'model', 'train' and 'run'.")
    out: dict[str, Any] = {}
    fields = field_by_name()
    for name, value in (block.get("model") or {}).items():
        if name not in fields:
            raise DiffCLError(f"--config {p}: model.{name} is not a DiffCLConfig field. Fix: remove it; known fields: "
                              f"{', '.join(fields)}.")
        out[f"cfg_{name}"] = _check_model_value(p, fields[name], value)
    from .training import TrainConfig

    known_train = {f.name for f in dc.fields(TrainConfig)}
    extra: dict[str, Any] = {}
    for name, value in (block.get("train") or {}).items():
        if name not in known_train:
            raise DiffCLError(f"--config {p}: train.{name} is not a TrainConfig field. Fix: remove it; known fields: "
                              f"{', '.join(sorted(known_train))}.")
        if name in TRAIN_RUNTIME:
            continue
        if name == "ks":
            value = tuple(value)
        if name in TRAIN_FLAGS and name not in ("ks", "select_metric"):
            out[name] = value
        else:
            extra[name] = value
    run = block.get("run") or {}
    if "dataset" not in run and isinstance(data, dict) and "config" in data and "dataset" in data:
        run = {**run, "dataset": data["dataset"]}
    for key in ("dataset", "device") + (("model",) if command == "train" else ()):
        if key in run and run[key] is not None:
            out[key] = run[key]
    if command == "train" and out.get("model") not in (None, *model_names()):
        raise _config_value_error(p, "run.model", out["model"], f"is not allowed; allowed values: {', '.join(model_names())} (--model)")
    out["train_extra"] = extra
    return out
