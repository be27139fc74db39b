"""Command line: ``python -m diffcl_lite {train,ablate,tune,data,classroom}``.

``train`` prints a results table (model, R@10, R@20, N@10, N@20, P@20, best epoch, time) and
with ``--json PATH`` writes the run as JSON. Every field of :class:`~diffcl_lite.model.DiffCLConfig`
(loss weights, ablation switches, diffusion settings) has a flag of the same name, e.g.
``--lambda-cl 0.1``, ``--no-use-cl``, ``--view-kind random``; the short ablation aliases
``--no-cl``, ``--no-align``, ``--no-item-graph`` and ``--random-views`` exist too.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import typing
from pathlib import Path
from typing import Any, Sequence

from .errors import DiffCLError
from .model import MODELS, DiffCLConfig
from .training import TrainConfig

log = logging.getLogger("diffcl_lite")

ALIASES = {"no_cl": ("use_cl", False), "no_align": ("use_align", False),
           "no_item_graph": ("use_item_graph", False), "random_views": ("view_kind", "random")}


def _parse_weights(text: str) -> dict[str, float]:
    try:
        return {k.strip(): float(v) for k, v in (part.split("=") for part in text.split(",") if part.strip())}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected name=weight pairs like 'image=0.1,text=0.9', got {text!r}") from exc


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (DiffCLConfig fields; defaults in brackets)")
    hints = typing.get_type_hints(DiffCLConfig)
    for f in dataclasses.fields(DiffCLConfig):
        flag = "--" + f.name.replace("_", "-")
        typ = hints[f.name]
        default = f.default
        help_text = f"[{default}]"
        if typ is bool:
            group.add_argument(flag, dest=f"cfg_{f.name}", action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif f.name == "item_graph_weights":
            group.add_argument(flag, dest=f"cfg_{f.name}", type=_parse_weights, default=None,
                               help="modality weights of the fused item-item graph, e.g. image=0.1,text=0.9 [auto]")
        else:
            base = typing.get_args(typ)[0] if typing.get_origin(typ) in (typing.Union, getattr(__import__("types"), "UnionType", None)) else typ
            group.add_argument(flag, dest=f"cfg_{f.name}", type=base, default=None, help=help_text)
    abl = parser.add_argument_group("ablation shortcuts")
    abl.add_argument("--no-cl", action="store_true", help="no contrastive loss (same as --no-use-cl)")
    abl.add_argument("--no-align", action="store_true", help="no alignment loss (same as --no-use-align)")
    abl.add_argument("--no-item-graph", action="store_true", help="no item-item graph (same as --no-use-item-graph)")
    abl.add_argument("--random-views", action="store_true", help="SimGCL random-noise views instead of diffusion views")


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="synthetic",
                        help="synthetic (default), synthetic-sparse, synthetic-baby, synthetic-tiktok, tiktok, baby, "
                             "mmrec:FOLDER, diffmm:FOLDER (see `data list`)")
    parser.add_argument("--data-root", default=None, help="dataset cache folder [$DIFFCL_DATA or ~/.cache/diffcl_lite]")
    parser.add_argument("--no-download", action="store_true", help="never download; fail if the dataset is not cached")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs [100; small synthetic data: 30]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--batch-size", type=int, default=None, help="[2048; small synthetic data: 1024]")
    parser.add_argument("--eval-batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=None, help="[1e-3; small synthetic data: 5e-3]")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--patience", type=int, default=None,
                        help="evaluations without valid R@20 improvement [20; small synthetic data: 10]")
    parser.add_argument("--eval-every", type=int, default=1)
    parser.add_argument("--max-batches", type=int, default=None, help="cap batches per epoch (quick checks)")
    parser.add_argument("--checkpoint-dir", default=None, help="write checkpoint.pt here after every epoch")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir/checkpoint.pt")
    parser.add_argument("--json", dest="json_path", default=None, help="write the results as JSON to this path")
    parser.add_argument("--cache-dir", default=None, help="cache folder for item-item graphs [none]")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    _add_config_flags(parser)


def model_config_from_args(args: argparse.Namespace) -> DiffCLConfig:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(DiffCLConfig):
        v = getattr(args, f"cfg_{f.name}", None)
        if v is not None:
            values[f.name] = v
    for alias, (name, value) in ALIASES.items():
        if getattr(args, alias, False):
            values[name] = value
    return DiffCLConfig(**values)


#: MMRec protocol for real data; the small synthetic datasets (~10-20k interactions, a handful of
#: batches per epoch at 2048) converge in far fewer epochs with smaller batches and a larger lr.
PROTOCOL_DEFAULTS = {"epochs": 100, "batch_size": 2048, "lr": 1e-3, "patience": 20}
SMALL_SYNTHETIC_DEFAULTS = {"epochs": 30, "batch_size": 1024, "lr": 5e-3, "patience": 10}
SMALL_SYNTHETIC = ("synthetic", "synthetic-sparse", "synthetic-hard")


def train_defaults(dataset: str) -> dict[str, Any]:
    """Training defaults for a dataset spec (used for every flag the user did not give)."""
    return dict(SMALL_SYNTHETIC_DEFAULTS if dataset in SMALL_SYNTHETIC else PROTOCOL_DEFAULTS)


def train_config_from_args(args: argparse.Namespace, dataset: str | None = None) -> TrainConfig:
    d = train_defaults(dataset or getattr(args, "dataset", "synthetic"))
    pick = lambda name: d[name] if getattr(args, name) is None else getattr(args, name)  # noqa: E731
    return TrainConfig(
        epochs=pick("epochs"), batch_size=pick("batch_size"), lr=pick("lr"), weight_decay=args.weight_decay,
        eval_every=args.eval_every, patience=pick("patience"), eval_batch_size=args.eval_batch_size, seed=args.seed,
        max_batches=args.max_batches, checkpoint_dir=args.checkpoint_dir, resume=args.resume, progress=not args.quiet,
    )


def _load_dataset(args: argparse.Namespace):
    from . import datasets

    return datasets.load(args.dataset, root=args.data_root, download=not args.no_download)


def cmd_train(args: argparse.Namespace) -> int:
    from .experiments import results_table
    from .training import run_experiment

    data = _load_dataset(args)
    mcfg = model_config_from_args(args)
    tcfg = train_config_from_args(args)
    print(f"{data!r}\nmodel={args.model} device={args.device} epochs<={tcfg.epochs} batch={tcfg.batch_size} "
          f"lr={tcfg.lr} patience={tcfg.patience} seed={tcfg.seed}", file=sys.stderr)
    _, result = run_experiment(data, args.model, mcfg, tcfg, device=args.device, cache_dir=args.cache_dir)
    print(results_table([(args.model, result)], fmt="text"))
    if args.json_path:
        from .utils import atomic_write_bytes

        payload = result.to_json()
        payload["dataset"] = args.dataset
        payload["config"] = {"model": mcfg.to_dict(), "train": dataclasses.asdict(tcfg)}
        atomic_write_bytes(args.json_path, json.dumps(payload, indent=2).encode())
        print(f"wrote {args.json_path}", file=sys.stderr)
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from .experiments import results_table, run_ablation

    data = _load_dataset(args)
    if args.seeds is not None:
        return _ablate_seeds(args, data)
    rows = run_ablation(data, model_config_from_args(args), train_config_from_args(args),
                        device=args.device, out_dir=args.out, include_baselines=not args.no_baselines,
                        cache_dir=args.cache_dir)
    print(results_table(rows, fmt="text"))
    from .experiments import safe_name

    print(f"wrote {Path(args.out) / ('ablation_' + safe_name(data.name))}.md/.json", file=sys.stderr)
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
                              models=[m.strip() for m in args.models.split(",") if m.strip()] if args.models else None)
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
        raise DiffCLError(f"`data {args.action}` needs a dataset name, e.g. `python -m diffcl_lite data {args.action} tiktok`.")
    if args.action == "card":
        print(datasets.data_card(args.name))
        return 0
    data = datasets.load(args.name, root=args.data_root, download=args.action == "download")
    print(json.dumps(data.summary(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m diffcl_lite", description="DiffCL, explained and runnable.")
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING [WARNING]")
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train one model and print its results table")
    p_train.add_argument("--model", default="diffcl", choices=list(MODELS))
    _add_train_flags(p_train)
    p_train.set_defaults(func=cmd_train)
    p_abl = sub.add_parser("ablate", help="DiffCL, its ablations, LightGCN and MF with one protocol")
    _add_train_flags(p_abl)
    p_abl.add_argument("--out", default="figures", help="folder for ablation_<dataset>.md/.json [figures]")
    p_abl.add_argument("--no-baselines", action="store_true", help="skip LightGCN and MF")
    p_abl.add_argument("--seeds", type=int, default=None,
                       help="run seeds --seed..--seed+N-1; mean ± sd and paired tests against DiffCL; resumable "
                            "(finished runs in <out>/ablation_<dataset>.runs.jsonl are skipped)")
    p_abl.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples over test users [10000]")
    p_abl.add_argument("--models", default=None,
                       help="with --seeds: only these rows, comma list of diffcl,random-views,no-cl,no-align,"
                            "no-item-graph,lightgcn,mf [all]")
    p_abl.set_defaults(func=cmd_ablate)
    p_tune = sub.add_parser("tune", help="tune every model with the same trial budget; finalists over seeds")
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
    p_data = sub.add_parser("data", help="list datasets, show a data card, download or summarise one")
    p_data.add_argument("action", choices=["list", "card", "download", "summary"])
    p_data.add_argument("name", nargs="?")
    p_data.add_argument("--data-root", default=None)
    p_data.set_defaults(func=cmd_data)
    try:
        from . import classroom  # noqa: F401
    except ImportError:
        classroom = None
    if classroom is not None and hasattr(classroom, "add_cli"):
        classroom.add_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = None if argv is None else list(argv)  # for the "regenerate with" line of results files
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "quiet", False):
        logging.getLogger().setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except DiffCLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
