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
import contextlib
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from . import __version__
from .cli_args import (LOG_LEVELS, add_data_flags, add_run_flags, add_train_flags, config_defaults,
                       model_config_from_args, parse_device, parse_log_level, train_config_from_args)
from .configspec import model_names
from .errors import DiffCLError

if TYPE_CHECKING:  # pragma: no cover
    from .model import DiffCLConfig
    from .training import TrainConfig

log = logging.getLogger("diffcl_lite")

__all__ = ["build_parser", "main", "cmd_train", "cmd_ablate", "cmd_tune", "cmd_data", "cmd_runs"]

SHORT_USAGE = "%(prog)s [options]   (--help lists them all)"


def _load_dataset(args: argparse.Namespace):
    from . import datasets

    return datasets.load(args.dataset, root=args.data_root, download=not getattr(args, "no_download", False),
                         progress=not getattr(args, "quiet", False), timeout=getattr(args, "timeout", None),
                         rehash=getattr(args, "rehash", False),
                         allow_split_overlap=getattr(args, "allow_split_overlap", False))


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


@contextlib.contextmanager
def _prepared(args: argparse.Namespace, model: str) -> Iterator[tuple[Any, Any, Any, Any]]:
    """``(model config, train config, data, run folder or None)`` of a train/ablate call: the outputs are
    checked before the data are loaded; the run folder is closed however the command ends."""
    mcfg = model_config_from_args(args)
    tcfg = train_config_from_args(args)
    _precheck_outputs(args)
    data = _load_dataset(args)
    run = _start_run(args, model)
    try:
        yield mcfg, tcfg, data, run
    finally:
        if run is not None:
            run.close()


def cmd_train(args: argparse.Namespace) -> int:
    from .experiments import results_table
    from .training import run_experiment

    with _prepared(args, args.model) as (mcfg, tcfg, data, run):
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
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from .experiments import ablation_variants, results_table, safe_name, write_results
    from .runs import RunLog
    from .training import run_experiment

    with _prepared(args, "ablate") as (mcfg, tcfg, data, run):
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
        parser.add_argument("--log-level", type=parse_log_level, default=default, metavar="{" + ",".join(LOG_LEVELS) + "}",
                            help="how much to log on the console [WARNING]; also after the subcommand")
    except argparse.ArgumentError:  # the subcommand defines its own
        pass


def _cmd_verdict(args: argparse.Namespace) -> int:
    from . import verdict

    print(verdict.cli_main(args, _command_line(args)))
    print(f"wrote {args.out}/verdict.md/.json/.runs.jsonl; notebook 09 reads a copy: "
          "python -m diffcl_lite.lessons.results_bundle refreshes it")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m diffcl_lite", description="DiffCL, explained and runnable.")
    _add_log_level(parser, default="WARNING")
    parser.add_argument("--version", action="version", version=f"diffcl_lite {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train one model and print its results table", usage=SHORT_USAGE)
    p_train.add_argument("--model", default="diffcl", choices=list(model_names()))
    add_train_flags(p_train)
    add_run_flags(p_train)
    p_train.set_defaults(func=cmd_train)
    p_abl = sub.add_parser("ablate", help="DiffCL, its ablations, LightGCN and MF with one protocol", usage=SHORT_USAGE)
    add_train_flags(p_abl)
    add_run_flags(p_abl)
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
    add_train_flags(p_tune)
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
    add_data_flags(p_data)
    p_data.add_argument("--quiet", action="store_true", help="no progress bars")
    p_data.set_defaults(func=cmd_data)
    p_runs = sub.add_parser("runs", help="compare run folders written by train and ablate")
    p_runs.add_argument("action", choices=["compare"])
    p_runs.add_argument("dirs", nargs="+", metavar="DIR", help="run folders, ablation folders or folders of runs")
    p_runs.add_argument("--markdown", action="store_true", help="print a markdown table")
    p_runs.add_argument("--json", action="store_true", help="print the rows as JSON")
    p_runs.set_defaults(func=cmd_runs)
    p_ver = sub.add_parser("verdict", help="DiffCL's three claims on the designed 2 x 2 synthetic grid (notebook 09)")
    for flag, kw in (("--out", dict(default="results", help="folder for verdict.md/.json/.runs.jsonl [results]")),
                     ("--seeds", dict(type=int, default=3, help="seeds 0..N-1 [3]")),
                     ("--regimes", dict(default=None, help="comma list of dense-isotropic,dense-misleading,"
                                                           "sparse-isotropic,sparse-misleading [all]")),
                     ("--lr-grid", dict(default=None, help="learning rates every row gets [0.002,0.01]")),
                     ("--users", dict(type=int, default=None, help="users per regime [800]")),
                     ("--items", dict(type=int, default=None, help="items per regime [600]")),
                     ("--epochs", dict(type=int, default=None, help="epoch cap [40]")),
                     ("--device", dict(default="cpu", type=parse_device,
                                       help="where to compute [cpu: the committed results were made on CPU]")),
                     ("--n-boot", dict(type=int, default=10_000, help="bootstrap resamples over test users [10000]")),
                     ("--report-only", dict(action="store_true", help="train nothing; report the finished runs")),
                     ("--quiet", dict(action="store_true", help="no progress bars"))):
        p_ver.add_argument(flag, **kw)
    p_ver.set_defaults(func=_cmd_verdict)
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
