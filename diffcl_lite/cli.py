"""Command line: ``python -m diffcl_lite {train,ablate,tune,data,runs,classroom}``.

``train`` prints a results table (model, R@10, R@20, N@10, N@20, P@20, best epoch, time) and
with ``--json PATH`` writes the run as JSON. Every field of :class:`~diffcl_lite.model.DiffCLConfig`
(loss weights, ablation switches, diffusion settings) has a flag of the same name, e.g.
``--lambda-cl 0.1``, ``--no-use-cl``, ``--view-kind random``; the short ablation aliases
``--no-cl``, ``--no-align``, ``--no-item-graph`` and ``--random-views`` exist too. Text fields
accept only their allowed values; the help text of each flag is the comment beside the field.

``train`` and ``ablate`` write a run folder (``runs/<dataset>-<model>-<time>/``, or
``--run-dir DIR``; ``--no-run-dir`` to skip it): config.json, a per-epoch history.csv, log.txt,
result.json and curve.png (see :mod:`diffcl_lite.runs`); ``runs compare DIR...`` tabulates them.
``--config FILE`` replays the config block of a run folder's config.json or of a ``--json`` file
(flags given on the command line win). ``--log-level`` works before or after the subcommand.

Only the standard library and :mod:`diffcl_lite.configspec` are imported to build the parser:
torch is imported when a command needs it, so ``--help`` and ``data list`` answer at once.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from . import __version__
from .configspec import FieldSpec, config_fields, field_by_name, model_names
from .errors import DiffCLError

if TYPE_CHECKING:  # pragma: no cover
    from .model import DiffCLConfig
    from .training import TrainConfig

log = logging.getLogger("diffcl_lite")

__all__ = ["build_parser", "main", "model_config_from_args", "train_config_from_args"]

ALIASES = {"no_cl": ("use_cl", False), "no_align": ("use_align", False),
           "no_item_graph": ("use_item_graph", False), "random_views": ("view_kind", "random")}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: TrainConfig fields with a flag (dest = field name); the others are replayed from --config as they are
TRAIN_FLAGS = ("epochs", "batch_size", "lr", "weight_decay", "eval_every", "patience", "eval_batch_size", "seed",
               "max_batches", "ks", "select_metric")
#: TrainConfig fields that belong to one invocation, never replayed from --config
TRAIN_RUNTIME = ("checkpoint_dir", "resume", "progress", "resume_override")
#: the usage line of the commands with ~60 flags (an error shows it; --help lists every flag)
SHORT_USAGE = "%(prog)s [options]   (--help lists them all)"


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


def _device(text: str) -> str:
    t = text.strip().lower()
    if re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", t):
        return t
    raise argparse.ArgumentTypeError(f"{text!r} is not a device; use auto, cpu, cuda, cuda:N (e.g. cuda:1) or mps")


def _log_level(text: str) -> str:
    t = text.strip().upper()
    if t not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a log level; use one of {', '.join(LOG_LEVELS)}")
    return t


def _help(f: FieldSpec) -> str:
    text = f.help.replace("%", "%%")
    default = "auto" if f.name == "item_graph_weights" and f.default is None else f.default
    return f"{text} [{default}]".strip()


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
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


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--data-root", default=None, help="dataset cache folder [$DIFFCL_DATA or ~/.cache/diffcl_lite]")
    g.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="deadline in seconds for each downloaded file's whole transfer [60 + 20 per MB]")
    g.add_argument("--rehash", action="store_true", help="hash every cached file again (and fetch those that changed)")
    g.add_argument("--allow-split-overlap", action="store_true",
                   help="keep (user, item) pairs that occur in two splits (an error by default)")


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="synthetic",
                        help="synthetic (default), synthetic-sparse, synthetic-baby, synthetic-tiktok, tiktok, baby, "
                             "mmrec:FOLDER, diffmm:FOLDER (see `data list`)")
    _add_data_flags(parser)
    parser.add_argument("--no-download", action="store_true", help="never download; fail if the dataset is not cached")
    parser.add_argument("--config", dest="config_file", default=None, metavar="FILE",
                        help="replay the settings of a run folder's config.json (or its folder) or of a --json "
                             "file; flags given here win")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs [100; small synthetic data: 30]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", type=_device, metavar="{auto,cpu,cuda,cuda:N,mps}",
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
    _add_config_flags(parser)


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
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


def _load_dataset(args: argparse.Namespace):
    from . import datasets

    return datasets.load(args.dataset, root=args.data_root, download=not getattr(args, "no_download", False),
                         progress=not getattr(args, "quiet", False), timeout=getattr(args, "timeout", None),
                         rehash=getattr(args, "rehash", False),
                         allow_split_overlap=getattr(args, "allow_split_overlap", False))


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


# ---------------------------------------------------------------------- outputs and run folders
def _precheck_outputs(args: argparse.Namespace) -> None:
    """Every folder the run will write into is writable, before any data is loaded or trained."""
    from .runs import check_writable_file, ensure_writable_dir, runs_root

    if getattr(args, "checkpoint_dir", None):
        ensure_writable_dir(args.checkpoint_dir, "--checkpoint-dir")
    if getattr(args, "json_path", None):
        check_writable_file(args.json_path, "--json")
    if getattr(args, "out", None) and args.command == "ablate":
        ensure_writable_dir(args.out, "--out")
    if getattr(args, "no_run_dir", True):
        return
    if args.run_dir:
        run_dir = ensure_writable_dir(args.run_dir, "--run-dir")
        taken = [n for n in ("result.json", "history.csv", "results.json") if (run_dir / n).exists()]
        if taken and not args.resume:
            raise DiffCLError(f"--run-dir {run_dir}: already holds a run ({', '.join(taken)}). Fix: pass another "
                              f"--run-dir, leave it out (a new folder under {runs_root()}/ is made), or remove that folder.")
    else:
        ensure_writable_dir(runs_root(), f"--run-dir (default {runs_root()}/)")


def _start_run(args: argparse.Namespace, model: str):
    from .runs import RunLog, new_run_dir

    if getattr(args, "no_run_dir", True):
        return None
    folder = Path(args.run_dir) if args.run_dir else new_run_dir(args.dataset, model)
    return RunLog(folder, tensorboard=args.tensorboard, title=f"{args.dataset}: {model}")


def _config_block(args: argparse.Namespace, mcfg: "DiffCLConfig", tcfg: "TrainConfig", model: str,
                  run: Any = None, label: str | None = None) -> dict[str, Any]:
    """The config block of --json, config.json and --config: model, train, run."""
    out = {"model": mcfg.to_dict(), "train": dataclasses.asdict(tcfg),
           "run": {"dataset": args.dataset, "model": model, "device": args.device, "version": __version__}}
    if label is not None:
        out["run"]["label"] = label
    if run is not None:
        out["run"]["run_dir"] = str(run.folder)
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from .experiments import results_table
    from .training import run_experiment

    mcfg = model_config_from_args(args)
    tcfg = train_config_from_args(args)
    _precheck_outputs(args)
    data = _load_dataset(args)
    run = _start_run(args, args.model)
    try:
        config = _config_block(args, mcfg, tcfg, args.model, run)
        if run is not None:
            run.write_config(config)
        print(f"{data!r}\nmodel={args.model} device={args.device} epochs<={tcfg.epochs} batch={tcfg.batch_size} "
              f"lr={tcfg.lr} patience={tcfg.patience} seed={tcfg.seed}", file=sys.stderr)
        _, result = run_experiment(data, args.model, mcfg, tcfg, device=args.device, cache_dir=args.cache_dir,
                                   label=args.model, on_epoch=run.log_epoch if run is not None else None)
        payload = result.to_json()
        payload["dataset"] = args.dataset
        payload["config"] = config
        if run is not None:
            payload["run_dir"] = str(run.folder)
            run.finish(payload)
        print(results_table([(args.model, result)], fmt="text"))
        if args.json_path:
            from .fileutil import atomic_write_bytes

            atomic_write_bytes(args.json_path, json.dumps(payload, indent=2).encode())
            print(f"wrote {args.json_path}", file=sys.stderr)
        if run is not None:
            print(f"wrote {run.folder}/ (config.json, history.csv, log.txt, result.json, curve.png)", file=sys.stderr)
    finally:
        if run is not None:
            run.close()
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from .experiments import ablation_variants, results_table, safe_name, write_results
    from .runs import RunLog
    from .training import run_experiment

    mcfg = model_config_from_args(args)
    tcfg = train_config_from_args(args)
    _precheck_outputs(args)
    data = _load_dataset(args)
    run = _start_run(args, "ablate")
    try:
        if run is not None:
            run.write_config(_config_block(args, mcfg, tcfg, "ablate", run))
        if args.seeds is not None:
            return _ablate_seeds(args, data)
        rows = []
        variants = ablation_variants(mcfg, include_baselines=not args.no_baselines)
        for idx, (label, name, cfg) in enumerate(variants, start=1):
            log.info("ablation: %s", label)
            vcfg = tcfg
            if tcfg.checkpoint_dir:  # one checkpoint per variant, so each row resumes on its own
                vcfg = dataclasses.replace(tcfg, checkpoint_dir=str(Path(tcfg.checkpoint_dir) / safe_name(label)))
            sub = None
            if run is not None:
                sub = RunLog(run.folder / f"{idx:02d}-{safe_name(label)}", log_to_file=False, title=f"{args.dataset}: {label}")
                sub.write_config(_config_block(args, cfg, vcfg, name, sub, label=label))
            try:
                _, res = run_experiment(data, name, cfg, vcfg, device=args.device, cache_dir=args.cache_dir, label=label,
                                        on_epoch=sub.log_epoch if sub is not None else None)
                if sub is not None:
                    sub.finish({"label": label, **res.to_json(), "dataset": args.dataset,
                                "config": _config_block(args, cfg, vcfg, name, sub, label=label)})
            finally:
                if sub is not None:
                    sub.close()
            rows.append((label, res))
        write_results(rows, Path(args.out), f"ablation_{safe_name(data.name)}", tcfg)
        print(results_table(rows, fmt="text"))
        print(f"wrote {Path(args.out) / ('ablation_' + safe_name(data.name))}.md/.json", file=sys.stderr)
        if run is not None:
            write_results(rows, run.folder, "results", tcfg)
            print(f"wrote {run.folder}/ (config.json, log.txt, results.md/.json, one folder per row)", file=sys.stderr)
    finally:
        if run is not None:
            run.close()
    return 0


def _command_line(args: argparse.Namespace) -> str:
    """The command that is running, for the results files (``python -m diffcl_lite ...``)."""
    import shlex

    argv = getattr(args, "argv", None)
    return "python -m diffcl_lite " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))


def _ablate_seeds(args: argparse.Namespace, data) -> int:
    from .experiments import run_ablation_seeds, safe_name, summary_table

    if args.seeds < 1:
        raise DiffCLError(f"--seeds {args.seeds}: give the number of seeds, >= 1 (3 or more for paired tests).")
    seeds = list(range(args.seed, args.seed + args.seeds))
    rows = run_ablation_seeds(data, model_config_from_args(args), train_config_from_args(args), seeds=seeds,
                              out_dir=args.out, include_baselines=not args.no_baselines, device=args.device,
                              cache_dir=args.cache_dir, command=_command_line(args), n_boot=args.n_boot,
                              progress=not args.quiet,
                              models=[m.strip() for m in args.models.split(",") if m.strip()] if args.models else None,
                              train_missing=not args.report_only)
    print(summary_table(rows, fmt="text"))
    print(f"wrote {Path(args.out) / ('ablation_' + safe_name(data.name))}.md/.json/.runs.jsonl", file=sys.stderr)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .experiments import safe_name, summary_table
    from .tuning import tune

    data = _load_dataset(args)
    if args.seeds < 1 or args.trials < 1:
        raise DiffCLError(f"--trials {args.trials} and --seeds {args.seeds} must be >= 1.")
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    result = tune(data, model_config_from_args(args), train_config_from_args(args), n_trials=args.trials,
                  seeds=list(range(args.seed, args.seed + args.seeds)), models=models, prune_epoch=args.prune_epoch,
                  sampler_seed=args.sampler_seed, out_dir=args.out, device=args.device, cache_dir=args.cache_dir,
                  command=_command_line(args), n_boot=args.n_boot, progress=not args.quiet)
    print(summary_table(result["rows"], fmt="text"))
    for label, f in result["finalists"].items():
        print(f"{label}: trial {f['trial']} {f['params'] or 'defaults'} (valid R@20 {f['valid']:.4f})")
    print(f"wrote {Path(args.out) / ('tune_' + safe_name(data.name))}.md/.json/.runs.jsonl", file=sys.stderr)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from . import datasets

    if args.action == "list":
        for name, description in datasets.list_datasets().items():
            print(f"{name:18s} {description}")
        return 0
    if not args.name:
        example = "data remap FOLDER OUT_FOLDER" if args.action == "remap" else f"data {args.action} tiktok"
        raise DiffCLError(f"`data {args.action}` needs a dataset name, e.g. `python -m diffcl_lite {example}`.")
    if args.action == "card":
        print(datasets.data_card(args.name))
        return 0
    if args.action == "remap":
        from .datasets.remap import remap_folder

        if not args.out_folder:
            raise DiffCLError(f"`data remap {args.name}` needs the folder to write, e.g. "
                              f"`python -m diffcl_lite data remap {args.name} {args.name.rstrip('/')}-remapped`.")
        src = args.name.split(":", 1)[1] if args.name.startswith(("mmrec:", "diffmm:")) else args.name
        out = remap_folder(src, args.out_folder)
        print(f"wrote {out} (ids 0..n-1; user_ids.csv maps them back)", file=sys.stderr)
        return 0
    data = datasets.load(args.name, root=args.data_root, download=args.action == "download",
                         progress=not args.quiet, timeout=args.timeout, rehash=args.rehash,
                         allow_split_overlap=args.allow_split_overlap)
    print(json.dumps(data.summary(), indent=2))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from .runs import compare_runs, format_runs

    rows = compare_runs(args.dirs)
    if args.json:
        print(json.dumps([{k: v for k, v in r.items()} for r in rows], indent=2, default=str))
    else:
        print(format_runs(rows, fmt="markdown" if args.markdown else "text"))
    return 0


def _add_log_level(parser: argparse.ArgumentParser, default: Any = argparse.SUPPRESS) -> None:
    try:
        parser.add_argument("--log-level", type=_log_level, default=default, metavar="{" + ",".join(LOG_LEVELS) + "}",
                            help="how much to log on the console [WARNING]; also after the subcommand")
    except argparse.ArgumentError:  # the subcommand defines its own
        pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m diffcl_lite", description="DiffCL, explained and runnable.")
    _add_log_level(parser, default="WARNING")
    parser.add_argument("--version", action="version", version=f"diffcl_lite {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train one model and print its results table", usage=SHORT_USAGE)
    p_train.add_argument("--model", default="diffcl", choices=list(model_names()))
    _add_train_flags(p_train)
    _add_run_flags(p_train)
    p_train.set_defaults(func=cmd_train)
    p_abl = sub.add_parser("ablate", help="DiffCL, its ablations, LightGCN and MF with one protocol", usage=SHORT_USAGE)
    _add_train_flags(p_abl)
    _add_run_flags(p_abl)
    p_abl.add_argument("--out", default="figures", help="folder for ablation_<dataset>.md/.json [figures]")
    p_abl.add_argument("--no-baselines", action="store_true", help="skip LightGCN and MF")
    p_abl.add_argument("--seeds", type=int, default=None,
                       help="run seeds --seed..--seed+N-1; mean ± sd and paired tests against DiffCL; resumable "
                            "(finished runs in <out>/ablation_<dataset>.runs.jsonl are skipped)")
    p_abl.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples over test users [10000]")
    p_abl.add_argument("--report-only", action="store_true",
                       help="with --seeds: train nothing, write the table of the runs already in the runs.jsonl")
    p_abl.add_argument("--models", default=None,
                       help="with --seeds: only these rows, comma list of diffcl,random-views,no-cl,no-align,"
                            "no-item-graph,lightgcn,mf [all]")
    p_abl.set_defaults(func=cmd_ablate)
    p_tune = sub.add_parser("tune", help="tune every model with the same trial budget; finalists over seeds",
                            usage=SHORT_USAGE)
    _add_train_flags(p_tune)
    p_tune.add_argument("--trials", type=int, default=8, help="trials per model (trial 0 = its defaults) [8]")
    p_tune.add_argument("--seeds", type=int, default=3, help="seeds of the finalists, from --seed [3]")
    p_tune.add_argument("--models", default=None,
                        help="comma list of diffcl,random-views,no-cl,no-align,no-item-graph,lightgcn,mf [all]")
    p_tune.add_argument("--prune-epoch", type=int, default=None,
                        help="median pruning at this epoch (>= --epochs: no pruning) [epochs // 5, at least 2]")
    p_tune.add_argument("--sampler-seed", type=int, default=0, help="seed of the trial sampler [0]")
    p_tune.add_argument("--out", default="results", help="folder for tune_<dataset>.md/.json/.runs.jsonl [results]")
    p_tune.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples over test users [10000]")
    p_tune.set_defaults(func=cmd_tune)
    p_data = sub.add_parser("data", help="list datasets, show a data card, download, summarise or remap one")
    p_data.add_argument("action", choices=["list", "card", "download", "summary", "remap"],
                        help="remap: copy a folder with ids renumbered 0..n-1 (data remap FOLDER OUT_FOLDER)")
    p_data.add_argument("name", nargs="?", help="dataset name or folder (see `data list`)")
    p_data.add_argument("out_folder", nargs="?", help="remap: the folder to write")
    _add_data_flags(p_data)
    p_data.add_argument("--quiet", action="store_true", help="no progress bars")
    p_data.set_defaults(func=cmd_data)
    p_runs = sub.add_parser("runs", help="compare run folders written by train and ablate")
    p_runs.add_argument("action", choices=["compare"])
    p_runs.add_argument("dirs", nargs="+", metavar="DIR", help="run folders, ablation folders or folders of runs")
    p_runs.add_argument("--markdown", action="store_true", help="print a markdown table")
    p_runs.add_argument("--json", action="store_true", help="print the rows as JSON")
    p_runs.set_defaults(func=cmd_runs)
    from .course.classroom import add_cli as add_classroom_cli  # the course tools' commands (light imports only)

    add_classroom_cli(sub)
    for p in sub.choices.values():  # --log-level works after every subcommand too
        _add_log_level(p)
    parser._diffcl_subparsers = dict(sub.choices)  # type: ignore[attr-defined]
    return parser


class _ConsoleLogging:
    """The console log handler of one CLI call (stderr, tqdm-aware), removed again at the end."""

    def __init__(self, level: int, tqdm_aware: bool = True) -> None:
        self.level = level
        self.tqdm_aware = tqdm_aware
        self.handler = logging.StreamHandler(sys.stderr)
        self.handler.setLevel(level)
        self.handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self._redirect: Any = None
        self._saved: list[tuple[logging.Logger, int]] = []

    def __enter__(self) -> "_ConsoleLogging":
        root = logging.getLogger()
        self._saved = [(root, root.level)]
        root.addHandler(self.handler)
        if root.level == logging.NOTSET or root.level > self.level:
            root.setLevel(self.level)
        if not self.tqdm_aware:
            return self
        from tqdm.contrib.logging import logging_redirect_tqdm

        # log lines go through tqdm.write, so they never break a progress bar
        self._redirect = logging_redirect_tqdm()
        self._redirect.__enter__()
        for h in root.handlers:
            if type(h).__name__ == "_TqdmLoggingHandler":
                h.setLevel(self.level)  # logging_redirect_tqdm keeps the formatter, not the level
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._redirect is not None:
            self._redirect.__exit__(*exc)
        root = logging.getLogger()
        root.removeHandler(self.handler)
        for logger, level in self._saved:
            logger.setLevel(level)


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if getattr(args, "config_file", None):
        subparser = parser._diffcl_subparsers[args.command]  # type: ignore[attr-defined]
        subparser.set_defaults(**config_defaults(args.config_file, args.command))
        args = parser.parse_args(argv)  # flags given on the command line still win
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = _parse(parser, argv_list)
    except DiffCLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.argv = None if argv is None else list(argv)  # for the "regenerate with" line of results files
    level = getattr(logging, str(args.log_level).upper(), logging.WARNING)
    if getattr(args, "quiet", False):
        level = max(level, logging.WARNING)
    quick = args.command == "runs" or (args.command == "data" and args.action in ("list", "card", "remap"))
    with _ConsoleLogging(level, tqdm_aware=not quick):
        try:
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe fails here, inside the handler below, not at exit
            return code
        except DiffCLError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # the reader went away (`... | head`): stop quietly, as Unix tools do
            import os

            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 141
