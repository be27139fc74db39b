"""A fair tuning protocol: the same trial budget for every model, selection on valid, 3 seeds for finalists.

``python -m diffcl_lite tune`` calls :func:`tune`. Protocol:

1. every row of the ablation table (DiffCL, each ablation, LightGCN, MF) gets the same number of
   trials ``n_trials``, the same epoch cap, patience and pruning rule;
2. trial 0 of every row is its default configuration; the others are drawn without replacement
   from that row's grid (:func:`search_space`) by a seeded sampler, so a rerun draws the same
   trials; a row's grid holds only the knobs that row uses (no CL temperature for "w/o CL");
3. a trial is pruned at epoch ``prune_epoch`` when its best valid Recall@20 so far is below the
   median of the row's earlier trials at that epoch (the median rule of Golovin et al., 2017,
   Google Vizier); training continues from a checkpoint otherwise, which gives the same run as
   an uninterrupted one;
4. the finalist of a row is its complete trial with the best valid Recall@20 (seed 0; the test
   split is never looked at); finalists are rerun with ``seeds`` and compared with DiffCL's
   finalist by the paired tests of :func:`~diffcl_lite.experiments.summarize`;
5. every trial and run is appended to ``<out>/tune_<dataset>.runs.jsonl`` as it ends; a
   restart skips what is there. ``tune_<dataset>.md/.json`` hold the trials, the chosen
   values, the finalists' table and the command.
"""
from __future__ import annotations

import itertools
import json
import logging
import statistics
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .data import RecDataset
from .errors import DiffCLError
from .experiments import (REFERENCE_LABEL, RunSpec, RunStore, ablation_specs, per_user_metrics, run_key, run_seeded,
                          safe_name, short_name, summarize, summary_table, table_legend, write_summary)
from .model import DiffCLConfig
from .training import CHECKPOINT_NAME, TrainConfig, load_checkpoint, run_experiment, train
from .fileutil import atomic_write_bytes

log = logging.getLogger(__name__)

#: knobs of every model (TrainConfig or DiffCLConfig fields) and their grids
BASE_SPACE: dict[str, list[Any]] = {
    "lr": [5e-4, 1e-3, 2e-3, 5e-3, 1e-2],
    "lambda_reg": [1e-5, 1e-4, 1e-3],
}
GRAPH_SPACE: dict[str, list[Any]] = {"n_layers": [1, 2, 3]}
# small contrastive weights (1e-3..1e-1) and temperatures 0.1-0.5, the range of SimGCL / DiffMM / MENTOR
CL_SPACE: dict[str, list[Any]] = {"lambda_cl": [0.001, 0.003, 0.01, 0.05], "cl_temperature": [0.1, 0.2, 0.5]}
# noise_scale multiplies the schedule; standardised diffusion (noise relative to the embedding's scale)
# needs larger values than DiffMM's raw 0.1
DIFFUSION_SPACE: dict[str, list[Any]] = {"noise_scale": [0.05, 0.1, 0.2, 0.5]}
STANDARDIZED_DIFFUSION_SPACE: dict[str, list[Any]] = {"noise_scale": [1.0, 2.0, 5.0, 10.0]}
# SimGCL's eps: absolute (0.05-0.5) or relative to the embedding's norm (random_relative)
RANDOM_VIEW_SPACE: dict[str, list[Any]] = {"random_eps": [0.05, 0.1, 0.2, 0.5]}
RELATIVE_RANDOM_VIEW_SPACE: dict[str, list[Any]] = {"random_eps": [0.3, 0.6, 1.0]}
ALIGN_SPACE: dict[str, list[Any]] = {"lambda_align": [0.01, 0.05, 0.1, 0.5], "align_kind": ["infonce", "mentor"]}
# the item graph enhances the modality views (paper) or the ID items (FREEDOM)
ITEM_GRAPH_SPACE: dict[str, list[Any]] = {"item_graph_k": [5, 10, 20], "item_graph_target": ["modalities", "id"]}

_TRAIN_KNOBS = {f.name for f in fields(TrainConfig)}
_MODEL_KNOBS = {f.name for f in fields(DiffCLConfig)}


def search_space(spec: RunSpec) -> dict[str, list[Any]]:
    """The grid of one row: shared knobs plus those of the parts the row uses."""
    space = dict(BASE_SPACE)
    if spec.model in ("lightgcn", "diffcl"):
        space.update(GRAPH_SPACE)
    if spec.model == "diffcl":
        c = spec.config
        if c.use_cl:
            space.update(CL_SPACE)
            if c.view_kind == "random":
                space.update(RELATIVE_RANDOM_VIEW_SPACE if getattr(c, "random_relative", False) else RANDOM_VIEW_SPACE)
            else:
                space.update(STANDARDIZED_DIFFUSION_SPACE if getattr(c, "diffusion_standardize", False)
                             else DIFFUSION_SPACE)
        if c.use_align:
            space.update(ALIGN_SPACE)
        if c.use_item_graph:
            space.update(ITEM_GRAPH_SPACE)
    if "align_kind" in space:
        from .model import ALIGN_KINDS

        space["align_kind"] = [v for v in space["align_kind"] if v in ALIGN_KINDS]
    unknown = [k for k in space if k not in _TRAIN_KNOBS and k not in _MODEL_KNOBS]
    for k in unknown:
        log.warning("search space: %r is neither a TrainConfig nor a DiffCLConfig field; dropped", k)
        space.pop(k)
    return space


def sample_trials(spec: RunSpec, n_trials: int, seed: int = 0) -> list[dict[str, Any]]:
    """Trial 0: ``{}`` (the defaults); then ``n_trials - 1`` distinct grid points, seeded per row.

    The draw depends only on ``seed``, the row's short name and its grid, so a restart (or a
    longer run with more trials) draws the same first trials.
    """
    if n_trials < 1:
        raise DiffCLError(f"tune: n_trials={n_trials} must be >= 1 (--trials).")
    space = search_space(spec)
    keys = sorted(space)
    grid = list(itertools.product(*(space[k] for k in keys)))
    name = short_name(spec)
    # a per-row stream: seed and the row's name (stable across processes, unlike hash())
    rng = np.random.default_rng([seed, *name.encode()])
    order = rng.permutation(len(grid))
    defaults = {k: _current(spec, k) for k in keys}
    trials: list[dict[str, Any]] = [{}]
    for j in order:
        point = dict(zip(keys, (v.item() if hasattr(v, "item") else v for v in grid[j])))
        if point == defaults:
            continue
        trials.append(point)
        if len(trials) == n_trials:
            break
    return trials


def _current(spec: RunSpec, key: str) -> Any:
    return getattr(spec.train, key) if key in _TRAIN_KNOBS else getattr(spec.config, key)


def apply_params(spec: RunSpec, params: dict[str, Any]) -> RunSpec:
    """``spec`` with ``params`` set on its TrainConfig or DiffCLConfig (by field name)."""
    tr = {k: v for k, v in params.items() if k in _TRAIN_KNOBS}
    md = {k: v for k, v in params.items() if k in _MODEL_KNOBS and k not in _TRAIN_KNOBS}
    bad = set(params) - set(tr) - set(md)
    if bad:
        raise DiffCLError(f"tune: unknown knobs {sorted(bad)}; use TrainConfig or DiffCLConfig field names.")
    return replace(spec, train=replace(spec.train, **tr), config=replace(spec.config, **md))


@dataclass
class TrialOutcome:
    record: dict[str, Any]
    rung_score: float


def run_trial(data: RecDataset, spec: RunSpec, trial: int, params: dict[str, Any], prune_epoch: int | None,
              rung_scores: Sequence[float], device: str = "auto", cache_dir: str | None = None) -> TrialOutcome:
    """Train one trial (seed 0), pruning it at ``prune_epoch`` by the median rule.

    Returns a run record (as :func:`~diffcl_lite.experiments.run_one`, plus ``trial``, ``params``,
    ``status`` = ``"complete"`` or ``"pruned"``, ``rung_score``).
    """
    tspec = apply_params(spec, params)
    tcfg = replace(tspec.train, seed=0, progress=False)
    with tempfile.TemporaryDirectory(prefix="diffcl-tune-") as ck:
        status = "complete"
        rung = float("nan")
        if prune_epoch is not None and prune_epoch < tcfg.epochs:
            # (with eval_every > 1 the chunked run also evaluates at prune_epoch; with 1 it is identical)
            model, res = run_experiment(data, tspec.model, tspec.config,
                                        replace(tcfg, epochs=prune_epoch, checkpoint_dir=ck), device=device,
                                        cache_dir=cache_dir)
            rung = max((h.get(f"valid_{tcfg.select_metric}", -1.0) for h in res.history), default=-1.0)
            if len(rung_scores) >= 2 and rung < statistics.median(rung_scores):
                status = "pruned"
            elif not res.stopped_early:
                # the same run as an uninterrupted one: weights, optimiser, RNG and history from the checkpoint
                first_seconds = res.seconds
                model.load_state_dict(load_checkpoint(Path(ck) / CHECKPOINT_NAME)["model"])
                res = train(model, data, replace(tcfg, checkpoint_dir=ck, resume=True), device=next(model.parameters()).device)
                res.seconds += first_seconds
        else:
            model, res = run_experiment(data, tspec.model, tspec.config, tcfg, device=device, cache_dir=cache_dir)
        result = res.to_json()
        if status == "complete":
            result["epochs_run"] = len(res.history)
            # epoch times of the whole run (the resumed part only reports its own)
            secs = [h["train_seconds"] for h in res.history if "train_seconds" in h]
            result["epoch_seconds"] = round(float(np.mean(secs)), 4) if secs else result["epoch_seconds"]
            users, per_user = per_user_metrics(model, data, "test", tcfg.ks, tcfg.eval_batch_size)
            pu = {"users": users.tolist(), **{m: np.round(v, 6).tolist() for m, v in per_user.items()
                                              if m in ("recall@20", "ndcg@20")}}
        else:
            pu = {}
    record = {
        "key": run_key(tspec, 0, data.name), "label": spec.label, "model": spec.model, "seed": 0,
        "dataset": data.name, "config": tspec.config.to_dict(), "train": _plain(tcfg), "result": result,
        "per_user": pu, "trial": int(trial), "params": params, "status": status,
        "rung_score": None if rung != rung else round(rung, 6),
    }
    return TrialOutcome(record, rung)


def _plain(tcfg: TrainConfig) -> dict[str, Any]:
    from dataclasses import asdict

    d = asdict(tcfg)
    d["ks"] = list(d["ks"])
    d["checkpoint_dir"] = None
    d["resume"] = False
    return d


def tune(
    data: RecDataset,
    base: DiffCLConfig | None = None,
    train_config: TrainConfig | None = None,
    n_trials: int = 8,
    seeds: Sequence[int] = (0, 1, 2),
    models: Sequence[str] | None = None,
    prune_epoch: int | None = None,
    sampler_seed: int = 0,
    out_dir: str | Path | None = "results",
    device: str = "auto",
    cache_dir: str | None = None,
    command: str | None = None,
    n_boot: int = 10_000,
    progress: bool = True,
) -> dict[str, Any]:
    """Tune every row with the same budget, rerun the finalists with ``seeds``; write the results.

    ``models``: short names (:func:`short_name`) of the rows to tune, default all. Returns
    ``{"trials": [...], "finalists": {label: params}, "rows": summarize(...)}``.
    """
    from tqdm.auto import tqdm

    tcfg = train_config or TrainConfig()
    specs = ablation_specs(base, tcfg, include_baselines=True, models=models)
    if prune_epoch is None:
        prune_epoch = max(2, tcfg.epochs // 5)
    stem = f"tune_{safe_name(data.name)}"
    store = RunStore(Path(out_dir) / f"{stem}.runs.jsonl" if out_dir is not None else None)
    plan = [(spec, t, params) for spec in specs for t, params in enumerate(sample_trials(spec, n_trials, sampler_seed))]
    trials: list[dict[str, Any]] = []
    rungs: dict[str, list[float]] = {}
    bar = tqdm(plan, desc="trials", unit="trial", disable=not progress)
    for spec, t, params in bar:
        key = run_key(apply_params(spec, params), 0, data.name)
        rec = store.get(key)
        if rec is None or "status" not in rec:
            bar.set_postfix_str(f"{short_name(spec)} #{t}")
            out = run_trial(data, spec, t, params, prune_epoch, rungs.get(spec.label, []), device, cache_dir)
            rec = out.record
            store.add(rec)
        trials.append(rec)
        if rec.get("rung_score") is not None:
            rungs.setdefault(spec.label, []).append(float(rec["rung_score"]))
        bar.set_postfix_str(f"{short_name(spec)} #{t} {rec['status']} valid R@20 "
                            f"{rec['result']['valid'].get('recall@20', float('nan')):.4f}")
    bar.close()
    finalists: dict[str, dict[str, Any]] = {}
    final_specs = []
    for spec in specs:
        done = [r for r in trials if r["label"] == spec.label and r["status"] == "complete"]
        if not done:
            raise DiffCLError(f"tune: every trial of {spec.label!r} was pruned or failed; raise --prune-epoch.")
        best = max(done, key=lambda r: (r["result"]["valid"][tcfg.select_metric], -r["trial"]))
        finalists[spec.label] = {"trial": best["trial"], "params": best["params"],
                                 "valid": best["result"]["valid"][tcfg.select_metric]}
        final_specs.append(apply_params(spec, best["params"]))
    records = run_seeded(data, final_specs, seeds, store, device, cache_dir, progress)
    rows = summarize(records, reference=REFERENCE_LABEL, n_boot=n_boot)
    result = {"trials": trials, "finalists": finalists, "rows": rows, "n_trials": n_trials,
              "prune_epoch": prune_epoch, "sampler_seed": sampler_seed, "seeds": list(seeds)}
    if out_dir is not None:
        _write_tune(result, records, Path(out_dir), stem, command, n_boot, specs)
    return result


def _fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items())) or "defaults"


def _write_tune(result: dict[str, Any], records: list[dict[str, Any]], out: Path, stem: str, command: str | None,
                n_boot: int, specs: Sequence[RunSpec]) -> None:
    trials = result["trials"]
    lines = [f"# {stem}", "",
             f"{result['n_trials']} trials per model (trial 0 = defaults, the others drawn from the model's grid with "
             f"sampler seed {result['sampler_seed']}), median pruning at epoch {result['prune_epoch']}, selection on "
             f"valid Recall@20 of seed 0; finalists rerun with seeds {result['seeds']}.", "",
             "## Finalists (tuned with the same budget)", "", summary_table(result["rows"]), "",
             table_legend(n_boot, REFERENCE_LABEL), "", "## Chosen values", "",
             "| model | trial | values | valid R@20 (seed 0) | trials complete / pruned | train s (all trials) |",
             "|---|---|---|---|---|---|"]
    for spec in specs:
        f = result["finalists"][spec.label]
        mine = [r for r in trials if r["label"] == spec.label]
        n_ok = sum(r["status"] == "complete" for r in mine)
        secs = sum(r["result"].get("seconds", 0.0) for r in mine)
        lines.append(f"| {spec.label} | {f['trial']} | {_fmt_params(f['params'])} | {f['valid']:.4f} | "
                     f"{n_ok} / {len(mine) - n_ok} | {secs:.0f} |")
    lines += ["", "## Every trial", "", "| model | trial | values | status | valid R@20 at prune epoch | "
              "best valid R@20 | best epoch | epochs |", "|---|---|---|---|---|---|---|---|"]
    for r in trials:
        rs = "–" if r.get("rung_score") is None else f"{r['rung_score']:.4f}"
        lines.append(f"| {r['label']} | {r['trial']} | {_fmt_params(r['params'])} | {r['status']} | {rs} | "
                     f"{r['result']['valid'].get('recall@20', float('nan')):.4f} | {r['result']['best_epoch']} | "
                     f"{r['result']['epochs_run']} |")
    if command:
        lines += ["", "Regenerate with:", "", "```", command, "```"]
    md, js = write_summary(records, result["rows"], out, stem, command, n_boot=n_boot,
                           extra={"finalists": result["finalists"],
                                  "trials": [{k: v for k, v in r.items() if k != "per_user"} for r in trials],
                                  "n_trials": result["n_trials"], "prune_epoch": result["prune_epoch"],
                                  "sampler_seed": result["sampler_seed"]})
    atomic_write_bytes(md, ("\n".join(lines) + "\n").encode())
    log.info("wrote %s and %s", md, js)


__all__ = ["search_space", "sample_trials", "apply_params", "run_trial", "tune"]
