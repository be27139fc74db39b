"""The verdict: DiffCL's three claims tested by one designed experiment (``python -m diffcl_lite verdict``).

Introduced in notebook 09. DiffCL claims that (a) diffusion views beat random views, (b)
ID-anchored alignment helps and (c) the item-item graph helps against sparsity and cold items.
A claim that holds only where its problem is real must be tested where the problem is real
and where it is not, so the grid crosses two factors on the synthetic generator
(:func:`~diffcl_lite.data.make_synthetic`, the options behind the ``synthetic``,
``synthetic-sparse`` and ``synthetic-hard`` presets):

- **interactions**: dense (about 18 per user, every item seen in train) or sparse (about 8 per
  user and 10 % of the items rare, with at most 1 train interaction: the ``synthetic-hard``
  setting);
- **modality noise**: isotropic (15 % of the items get one pure-noise modality, which a kNN
  graph simply ignores) or misleading (in addition 10 % boilerplate and 10 % swapped rows per
  modality, and each modality separates only half of the topics: ``synthetic-hard``'s setting).

Every cell trains the same seven rows (:func:`~diffcl_lite.experiments.ablation_specs`): full
DiffCL, random views at matched perturbation, w/o CL, w/o alignment, w/o item-item graph,
LightGCN and MF-BPR. DiffCL's base is the configuration of ``results/ablation_*.md``
(:data:`BASE_FLAGS`): residual denoiser, standardised diffusion at ``noise_scale`` 5 and SimGCL
views with noise relative to the norm at ``eps`` 0.6, which turn a view by about the same angle
(the run records keep the measured angular deviations); each ablation changes one switch.

**Tuning budget (the same for every row):** every row gets the learning rates of
:data:`LR_GRID`, trained with seed 0 and the same epoch cap and patience; the one with the best
VALID Recall@20 is kept (the test split is never looked at) and rerun with the other seeds.
The tuned values of ``results/tune_*.json`` are not reused: they were tuned on other sizes and
change many knobs per row at once, which would confound the one-switch ablations.

Every run goes to ``<out>/verdict.runs.jsonl`` as it ends (a restart skips it), with per-user
test Recall@20 overall and on cold / tail / head items
(:func:`~diffcl_lite.evaluation.item_groups`); the tables use the paired tests of
:func:`~diffcl_lite.experiments.summarize` (bootstrap over users and t-test over seeds, Holm
over the rows of a table), overall and per item group. :func:`claims_table` turns the rows
into "holds / does not hold / reversed (significant)" per claim and regime.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import DiffCLError
from .evaluation import ITEM_GROUPS, group_metric_name
from .experiments import (REFERENCE_LABEL, RunSpec, RunStore, _fmt_p, ablation_specs, run_one, run_seeded, short_name,
                          summarize, summary_table, table_legend, write_summary)
from .fileutil import atomic_write_bytes

log = logging.getLogger(__name__)

__all__ = ["REGIMES", "BASE_FLAGS", "LR_GRID", "DEFAULT_SIZE", "CLAIMS", "RANDOM_VIEWS_ROW", "GRID_METRICS", "regime_data", "verdict_specs",
           "grid_values", "plot_grid",
           "run_verdict", "deviation_ratio", "matched_regimes", "claim_status", "claims_table", "claims_markdown", "run_cell", "load_verdict"]

#: the 2 x 2 grid: make_synthetic options of each regime (sizes come from DEFAULT_SIZE)
_MISLEADING = dict(boilerplate_fraction=0.1, swap_fraction=0.1, informative_topic_fraction={"image": 0.5, "text": 0.5})
_SPARSE = dict(interactions_per_user=8.0, cold_item_fraction=0.1, cold_item_train_keep=1)
REGIMES: dict[str, dict[str, Any]] = {
    "dense-isotropic": dict(interactions_per_user=18.0),
    "dense-misleading": dict(interactions_per_user=18.0, **_MISLEADING),
    "sparse-isotropic": dict(_SPARSE),
    "sparse-misleading": dict(_SPARSE, **_MISLEADING),
}
#: users and items of every regime (small enough for the whole grid on one CPU thread)
DEFAULT_SIZE: dict[str, int] = {"n_users": 800, "n_items": 600}
#: DiffCL's base configuration: the one of results/ablation_*.md (views matched in angular deviation)
BASE_FLAGS: dict[str, Any] = dict(denoiser_residual=True, diffusion_standardize=True, noise_scale=5.0, lambda_cl=0.01,
                                  item_graph_target="id", random_relative=True, random_eps=0.6)
#: the learning rates every row is given (selection on valid Recall@20, seed 0)
LR_GRID: tuple[float, ...] = (2e-3, 1e-2)
#: protocol of every run
TRAIN_DEFAULTS: dict[str, Any] = dict(epochs=40, batch_size=1024, patience=5)

#: the ablation row of claim (a): DiffCL with SimGCL views instead of diffusion views
RANDOM_VIEWS_ROW = "w/o diffusion (random views)"
#: (key, claim, the ablation row whose removal tests it); Δ = row - DiffCL, so the claim says Δ < 0
CLAIMS: tuple[tuple[str, str, str], ...] = (
    ("a", "diffusion views beat random views at matched perturbation", RANDOM_VIEWS_ROW),
    ("b", "ID-anchored alignment helps", "w/o alignment"),
    ("c", "the item-item graph helps against sparsity / cold items", "w/o item-item graph"),
    ("vs", "full DiffCL beats LightGCN (same tuning budget)", "LightGCN"),
)


def regime_data(regime: str, n_users: int | None = None, n_items: int | None = None, seed: int = 0):
    """The synthetic dataset of one regime (named ``verdict-<regime>``; the data seed is fixed)."""
    from .data import make_synthetic

    if regime not in REGIMES:
        raise DiffCLError(f"verdict: unknown regime {regime!r}; choose from {list(REGIMES)}.")
    size = dict(DEFAULT_SIZE)
    if n_users is not None:
        size["n_users"] = int(n_users)
    if n_items is not None:
        size["n_items"] = int(n_items)
    return make_synthetic(**size, **REGIMES[regime], seed=seed, name=f"verdict-{regime}")


def verdict_specs(train_config=None, base=None) -> list[RunSpec]:
    """The seven rows of every cell: DiffCL on :data:`BASE_FLAGS`, its one-switch ablations, LightGCN, MF."""
    from .model import DiffCLConfig
    from .training import TrainConfig

    tcfg = train_config or TrainConfig(**TRAIN_DEFAULTS)
    return ablation_specs(base or DiffCLConfig(**BASE_FLAGS), tcfg, include_baselines=True)


def _select_lr(data, spec: RunSpec, lr_grid: Sequence[float], seed: int, store: RunStore, device: str,
               progress: bool, train_missing: bool) -> tuple[float | None, list[dict[str, Any]]]:
    """Train ``spec`` at each lr with ``seed``; return the lr with the best valid R@20 and the trials."""
    trials = []
    for lr in lr_grid:
        recs = run_seeded(data, [replace(spec, train=replace(spec.train, lr=float(lr)))], [seed], store, device,
                          progress=False, train_missing=train_missing)
        if recs:
            trials.append({"lr": float(lr), "valid": recs[0]["result"]["valid"]["recall@20"],
                           "best_epoch": recs[0]["result"]["best_epoch"]})
    if len(trials) < len(lr_grid):
        return None, trials
    # the first lr of the grid wins a tie
    best = max(range(len(trials)), key=lambda j: (trials[j]["valid"], -j))
    return trials[best]["lr"], trials


def _view_deviation(records: Sequence[dict[str, Any]]) -> float | None:
    """Mean angular deviation of the views from x0 after epoch 1 (over modalities and seeds)."""
    vals = []
    for r in records:
        hist = r["result"].get("history") or []
        if hist:
            vals += [v for k, v in hist[0].items() if k.startswith("diag_") and k.endswith("_dev_x0") and v is not None]
    return round(float(np.mean(vals)), 4) if vals else None


def deviation_ratio(entry: dict[str, Any]) -> float | None:
    """Angular deviation of the random views over that of the diffusion views in one regime's entry (None if unknown).

    1 means the two kinds of view turned the embeddings equally far after epoch 1: claim (a)'s
    comparison is then about the kind of view, not its size. Introduced in notebook 09 (exercise 09.4).
    """
    dev = entry.get("view_deviation") or {}
    d, r = dev.get("diffcl"), dev.get(RANDOM_VIEWS_ROW)
    if d is None or r is None or not d > 0:
        return None
    # ratio = dev(random views, x0) / dev(diffusion views, x0)
    return float(r) / float(d)


def matched_regimes(regimes: dict[str, dict[str, Any]], tol: float = 1.25) -> list[str]:
    """The regimes (sorted) whose :func:`deviation_ratio` lies in ``[1/tol, tol]``: a fair test of claim (a)."""
    if not tol >= 1:
        raise DiffCLError(f"tol={tol} must be >= 1 (the ratio may lie in [1/tol, tol]).")
    out = []
    for name, entry in regimes.items():
        ratio = deviation_ratio(entry)
        if ratio is not None and 1 / tol <= ratio <= tol:
            out.append(name)
    return sorted(out)


def run_verdict(
    out_dir: str | Path | None = "results",
    seeds: Sequence[int] = (0, 1, 2),
    regimes: Sequence[str] | None = None,
    lr_grid: Sequence[float] = LR_GRID,
    n_users: int | None = None,
    n_items: int | None = None,
    epochs: int | None = None,
    patience: int | None = None,
    device: str = "cpu",
    command: str | None = None,
    n_boot: int = 10_000,
    progress: bool = True,
    train_missing: bool = True,
    stem: str = "verdict",
) -> dict[str, Any]:
    """Run (or, with ``train_missing=False``, report) the grid; write ``<stem>.md/.json/.runs.jsonl``.

    Regime by regime: lr selection on valid (seed ``seeds[0]``), then every row at its lr over
    ``seeds``. A regime whose runs are not all there yet is reported as far as it goes.
    Returns the payload written to ``<stem>.json`` (without the runs).
    """
    from tqdm.auto import tqdm

    from .training import TrainConfig

    if len(seeds) < 1:
        raise DiffCLError("verdict: seeds is empty; pass e.g. --seeds 3.")
    if not lr_grid:
        raise DiffCLError("verdict: the lr grid is empty; pass e.g. --lr-grid 0.002,0.01.")
    names = list(regimes or REGIMES)
    for name in names:
        if name not in REGIMES:
            raise DiffCLError(f"verdict: unknown regime {name!r}; choose from {list(REGIMES)}.")
    proto = dict(TRAIN_DEFAULTS)
    if epochs is not None:
        proto["epochs"] = int(epochs)
    if patience is not None:
        proto["patience"] = int(patience)
    tcfg = TrainConfig(**proto, progress=False)
    store = RunStore(Path(out_dir) / f"{stem}.runs.jsonl" if out_dir is not None else None)
    specs = verdict_specs(tcfg)
    payload: dict[str, Any] = {
        "command": command, "seeds": list(seeds), "lr_grid": [float(x) for x in lr_grid], "train": proto,
        "base_flags": BASE_FLAGS, "size": {"n_users": n_users or DEFAULT_SIZE["n_users"],
                                           "n_items": n_items or DEFAULT_SIZE["n_items"]},
        "regimes": {},
    }
    all_records: list[dict[str, Any]] = []
    bar = tqdm(names, desc="regimes", unit="regime", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        t0 = time.perf_counter()
        data = regime_data(name, n_users, n_items)
        selection, final = {}, []
        for spec in specs:
            lr, trials = _select_lr(data, spec, lr_grid, seeds[0], store, device, progress, train_missing)
            selection[spec.label] = {"lr": lr, "trials": trials}
            if lr is not None:
                final.append(replace(spec, train=replace(spec.train, lr=lr)))
        records = run_seeded(data, final, seeds, store, device, progress=False, train_missing=train_missing) if final else []
        all_records += records
        entry: dict[str, Any] = {"generator": REGIMES[name], "summary": data.summary(), "selection": selection,
                                 "complete": len(records) == len(specs) * len(seeds),
                                 "wall_seconds": round(time.perf_counter() - t0, 1)}
        if records:
            entry["item_groups"] = records[0].get("item_groups")
            entry["rows"] = summarize(records, n_boot=n_boot)
            entry["group_rows"] = {g: summarize(records, metric=group_metric_name(g), n_boot=n_boot)
                                   for g in ITEM_GROUPS}
            entry["view_deviation"] = {lab: _view_deviation([r for r in records if r["label"] == lab])
                                       for lab in dict.fromkeys(r["label"] for r in records)}
            entry["run_seconds"] = round(sum(r.get("wall_seconds", 0.0) for r in records), 1)
        payload["regimes"][name] = entry
    bar.close()
    payload["extra_tables"] = _extra_tables(out_dir)
    payload["claims"] = claims_table(payload)
    if out_dir is not None:
        _write_verdict(payload, all_records, Path(out_dir), stem, command, n_boot)
    return payload


#: real-data tables read into the claims when they are in the output folder: {name: file stem}
EXTRA_TABLES = {"tiktok-dev": "ablation_tiktok-dev"}


def _extra_tables(out_dir: str | Path | None) -> dict[str, Any]:
    """The rows of the real-data tables of :data:`EXTRA_TABLES` found in ``out_dir`` (overall only)."""
    found: dict[str, Any] = {}
    for name, stem in EXTRA_TABLES.items():
        path = Path(out_dir) / f"{stem}.json" if out_dir is not None else None
        if path is None or not path.is_file():
            continue
        try:
            rows = json.loads(path.read_text(encoding="utf-8")).get("rows") or []
        except (ValueError, AttributeError):
            log.warning("%s: not a results file of `ablate --seeds`; left out of the claims", path)
            continue
        found[name] = {"source": str(path.name), "rows": rows}
    return found


# ---------------------------------------------------------------------------------------------
# Claims: holds / does not hold / reversed, from the rows of summarize
# ---------------------------------------------------------------------------------------------
def claim_status(vs_reference: dict[str, Any] | None, alpha: float = 0.05, test: str = "bootstrap") -> str:
    """One comparison of a row with full DiffCL, read as evidence for the claim that DiffCL is better.

    ``vs_reference`` is a row's ``vs_reference`` from :func:`~diffcl_lite.experiments.summarize`
    (Δ = row − DiffCL). ``test`` = ``"bootstrap"`` (over users, Holm) or ``"ttest"`` (over seeds,
    Holm). Returns ``"holds"`` (Δ < 0, significant), ``"reversed (significant)"`` (Δ > 0,
    significant), ``"does not hold"`` (not significant) or ``"not measured"``.
    """
    if test not in ("bootstrap", "ttest"):
        raise DiffCLError(f"claim_status: test={test!r} must be 'bootstrap' or 'ttest'.")
    if not vs_reference or not vs_reference.get(test):
        return "not measured"
    p = vs_reference[test].get("p_holm", vs_reference[test].get("p_value"))
    if p is None or not np.isfinite(p) or p >= alpha:
        return "does not hold"
    return "holds" if vs_reference["diff"] < 0 else "reversed (significant)"


def _row(rows: Sequence[dict[str, Any]] | None, label: str) -> dict[str, Any] | None:
    return next((r for r in rows or [] if r["label"] == label), None)


def _evidence(vr: dict[str, Any] | None) -> dict[str, Any]:
    if not vr:
        return {"diff": None, "p_users": None, "p_seeds": None}
    boot, tt = vr.get("bootstrap") or {}, vr.get("ttest") or {}
    return {"diff": vr["diff"], "p_users": boot.get("p_holm"), "p_seeds": tt.get("p_holm")}


def claims_table(payload: dict[str, Any], extra_rows: dict[str, Sequence[dict[str, Any]]] | None = None,
                 alpha: float = 0.05) -> list[dict[str, Any]]:
    """One entry per (claim, regime): status, Δ, p values overall and per item group.

    ``payload``: the verdict payload (``payload["regimes"][name]["rows"/"group_rows"]``);
    ``extra_rows``: more tables, ``{name: rows of summarize}``, overall only, added to those of
    ``payload["extra_tables"]`` (tiktok-dev's ``results/ablation_tiktok-dev.json`` when present). The status is that of the bootstrap over
    users (Holm over the rows of the table); ``groups`` lists the item groups where the
    difference is significant, with its sign.
    """
    tables: dict[str, tuple[Sequence[dict[str, Any]] | None, dict[str, Any]]] = {}
    for name, entry in payload.get("regimes", {}).items():
        tables[name] = (entry.get("rows"), entry.get("group_rows") or {})
    extra = {name: t["rows"] for name, t in (payload.get("extra_tables") or {}).items()}
    extra.update(extra_rows or {})
    for name, rows in extra.items():
        tables[name] = (rows, {})
    out = []
    for key, claim, label in CLAIMS:
        for name, (rows, group_rows) in tables.items():
            if not rows or _row(rows, REFERENCE_LABEL) is None or _row(rows, label) is None:
                continue
            vr = _row(rows, label)["vs_reference"]
            entry = {"claim": key, "text": claim, "row": label, "regime": name,
                     "status": claim_status(vr, alpha), **_evidence(vr), "groups": {}}
            for g, grows in group_rows.items():
                gr = _row(grows, label)
                gvr = gr["vs_reference"] if gr else None
                entry["groups"][g] = {"status": claim_status(gvr, alpha), **_evidence(gvr)}
            out.append(entry)
    return out


def _fmt_diff(x: float | None) -> str:
    return "–" if x is None else f"{x:+.4f}"


def claims_markdown(claims: Sequence[dict[str, Any]]) -> str:
    """The claims table as markdown: claim, regime, status, Δ, p values, significant item groups."""
    lines = ["| claim | regime | status | Δ R@20 (row − DiffCL) | p users (Holm) | p seeds (Holm) | "
             "significant by item group |", "|---|---|---|---|---|---|---|"]
    for c in claims:
        where = [f"{g}: {v['status']} ({_fmt_diff(v['diff'])}, p {_fmt_p(v['p_users'])})"
                 for g, v in c["groups"].items() if v["status"] in ("holds", "reversed (significant)")]
        if not c["groups"]:
            where_text = "not measured"
        else:
            where_text = "; ".join(where) or "none"
        lines.append(f"| ({c['claim']}) {c['text']} | {c['regime']} | **{c['status']}** | {_fmt_diff(c['diff'])} | "
                     f"{_fmt_p(c['p_users'])} | {_fmt_p(c['p_seeds'])} | {where_text} |")
    return "\n".join(lines)


def _group_table(group_rows: dict[str, Sequence[dict[str, Any]]]) -> str:
    """Recall@20 by item group, mean ± sd over seeds, with Δ and p users against DiffCL."""
    from .stats import format_mean_sd

    groups = [g for g in ITEM_GROUPS if g in group_rows]
    head = ["model"] + [f"{h} {g}" for g in groups for h in ("R@20", "Δ", "p users")]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    labels = [r["label"] for r in group_rows[groups[0]]] if groups else []
    for lab in labels:
        cells = [lab]
        for g in groups:
            r = _row(group_rows[g], lab)
            m = group_metric_name(g)
            vals = [v for v in (r or {}).get(f"test_{m}", {}).get("values", []) if v is not None and np.isfinite(v)]
            cells.append(format_mean_sd(vals) if vals else "–")
            vr = r["vs_reference"] if r else None
            ev = _evidence(vr)
            mark = ""
            if vr and vr.get("sig_users") in ("↑", "↓"):
                mark = " " + vr["sig_users"]
            cells += ["(reference)" if r and r.get("is_reference") else _fmt_diff(ev["diff"]) + mark,
                      _fmt_p(ev["p_users"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_verdict(payload: dict[str, Any], records: list[dict[str, Any]], out: Path, stem: str,
                   command: str | None, n_boot: int) -> None:
    lines = [f"# {stem}", "",
             "DiffCL's claims tested on a designed 2 × 2 synthetic grid (dense / sparse interactions × isotropic / "
             "misleading modality noise; see `diffcl_lite/verdict.py`). Every row gets the same tuning budget: "
             f"learning rates {payload['lr_grid']} with seed {payload['seeds'][0]}, selection on valid Recall@20, "
             f"then seeds {payload['seeds']} at the chosen lr; up to {payload['train']['epochs']} epochs, patience "
             f"{payload['train']['patience']}, batch {payload['train']['batch_size']}. DiffCL's base: "
             + ", ".join(f"`{k}={v}`" for k, v in payload["base_flags"].items()) + " (each ablation changes one switch).",
             "", "Item groups (train degrees): cold = at most the generator's `cold_item_train_keep` train "
             "interactions (0 without rare items); head = the top 20 % of items by train degree; tail = the rest. "
             "Group Recall@20 is over the users with a test item of the group.", "", "## Claims", "",
             claims_markdown(payload["claims"]), "",
             "Status from the paired bootstrap over test users (Holm over the rows of the regime's table): holds = "
             "the row without the component is significantly worse than full DiffCL; reversed = significantly "
             "better; does not hold = no significant difference.", ""]
    for name, entry in payload["regimes"].items():
        s = entry["summary"]
        lines += [f"## {name}", "",
                  f"{s['users']} users, {s['items']} items, {s['train_interactions']} train / {s['valid_interactions']} "
                  f"valid / {s['test_interactions']} test interactions; options "
                  + ", ".join(f"`{k}={v}`" for k, v in entry["generator"].items())
                  + (f"; item groups {entry.get('item_groups')}" if entry.get("item_groups") else "")
                  + ("" if entry["complete"] else "; **incomplete: some runs are missing**") + ".", ""]
        if not entry.get("rows"):
            lines += ["No finished runs yet.", ""]
            continue
        lines += [summary_table(entry["rows"]), "", "Recall@20 by item group:", "", _group_table(entry["group_rows"]),
                  "", "Chosen lr (valid R@20 of seed 0 per lr) and the views' angular deviation from x0 after epoch 1:",
                  "", "| model | lr | valid R@20 per lr | view deviation |", "|---|---|---|---|"]
        for lab, sel in entry["selection"].items():
            per = ", ".join(f"{t['lr']:g}: {t['valid']:.4f}" for t in sel["trials"])
            dev = entry["view_deviation"].get(lab)
            lines.append(f"| {lab} | {sel['lr'] if sel['lr'] is not None else '–'} | {per} | "
                         f"{'–' if dev is None else f'{dev:.3f}'} |")
        lines += ["", f"Runs of this regime: {entry.get('run_seconds', 0):.0f} s of training and evaluation.", ""]
    lines += [table_legend(n_boot, REFERENCE_LABEL)]
    if command:
        lines += ["", "Regenerate with:", "", "```", command, "```"]
    write_summary(records, [], out, stem, command, n_boot=n_boot,
                  extra={k: v for k, v in payload.items() if k != "command"})
    atomic_write_bytes(out / f"{stem}.md", ("\n".join(lines) + "\n").encode())
    log.info("wrote %s/%s.md/.json", out, stem)


# ---------------------------------------------------------------------------------------------
# Notebook 09: the committed file, and one cell of the grid re-run live
# ---------------------------------------------------------------------------------------------
def load_verdict(path: str | Path = "results/verdict.json") -> dict[str, Any]:
    """The payload of a verdict run (``<stem>.json``), with a clear error when it is missing or broken."""
    p = Path(path)
    if not p.is_file():
        raise DiffCLError(f"{p}: no verdict results here; run `python -m diffcl_lite verdict --out {p.parent}` first.")
    try:
        payload = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DiffCLError(f"{p}: not valid JSON ({exc}); rerun `python -m diffcl_lite verdict` to rewrite it.") from None
    if not isinstance(payload, dict) or "regimes" not in payload:
        raise DiffCLError(f"{p}: not a verdict results file (no 'regimes'); pass the verdict.json of that command.")
    return payload


def run_cell(regime: str, model: str = "diffcl", seed: int = 0, n_users: int = 200, n_items: int = 160,
             epochs: int = 5, lr: float = 1e-2, device: str = "cpu") -> dict[str, Any]:
    """Train one row of one regime at a small size; return its run record (overall and group Recall@20).

    ``model`` is a short name of :func:`~diffcl_lite.experiments.short_name` (``diffcl``,
    ``random-views``, ``no-cl``, ``no-align``, ``no-item-graph``, ``lightgcn``, ``mf``).
    """
    from .training import TrainConfig

    tcfg = TrainConfig(**dict(TRAIN_DEFAULTS, epochs=int(epochs)), lr=float(lr), progress=False)
    specs = {short_name(s): s for s in verdict_specs(tcfg)}
    if model not in specs:
        raise DiffCLError(f"run_cell: model={model!r}; choose from {list(specs)}.")
    data = regime_data(regime, n_users, n_items)
    return run_one(data, specs[model], seed, device=device)


def cli_main(args: Any, command: str | None = None) -> str:
    """``python -m diffcl_lite verdict``: run (or report) the grid; returns the claims table (markdown)."""
    if command and args.report_only:  # the report of finished runs is the one the full command writes
        command = command.replace(" --report-only", "")
    if args.report_only and not (Path(args.out) / "verdict.runs.jsonl").is_file():
        raise DiffCLError(f"{Path(args.out) / 'verdict.runs.jsonl'}: no finished runs to report; run "
                          f"`python -m diffcl_lite verdict --out {args.out}` without --report-only first.")
    regimes = [r.strip() for r in args.regimes.split(",") if r.strip()] if args.regimes else None
    lr_grid = tuple(float(x) for x in args.lr_grid.split(",") if x.strip()) if args.lr_grid else LR_GRID
    payload = run_verdict(args.out, seeds=list(range(args.seeds)), regimes=regimes, lr_grid=lr_grid,
                          n_users=args.users, n_items=args.items, epochs=args.epochs, device=args.device,
                          command=command, n_boot=args.n_boot, progress=not args.quiet,
                          train_missing=not args.report_only)
    log.info("wrote %s/verdict.md/.json/.runs.jsonl", args.out)
    return claims_markdown(payload["claims"])


#: the metrics the grid widget offers (the item groups apply to Recall@20)
GRID_METRICS = ("recall@20", "ndcg@20", "recall@10")


def grid_values(payload: dict[str, Any], regime: str, metric: str = "recall@20", group: str = "all") -> list[dict[str, Any]]:
    """Per row of one regime: label, mean, sd and the per-seed test values of ``metric`` (or a group's Recall@20).

    ``group`` is ``"all"`` or one of :data:`~diffcl_lite.evaluation.ITEM_GROUPS` (then ``metric``
    must be ``recall@20``). Rows that have no value (e.g. no cold items in a dense regime) get
    ``mean`` None.
    """
    entry = payload["regimes"].get(regime)
    if entry is None:
        raise DiffCLError(f"grid_values: regime {regime!r} is not in the results; known: {list(payload['regimes'])}.")
    if group != "all":
        if group not in ITEM_GROUPS or metric != "recall@20":
            raise DiffCLError(f"grid_values: group={group!r} with metric={metric!r}; groups {ITEM_GROUPS} have "
                              "Recall@20 only.")
        rows, key = (entry.get("group_rows") or {}).get(group, []), f"test_{group_metric_name(group)}"
    else:
        if metric not in GRID_METRICS:
            raise DiffCLError(f"grid_values: metric={metric!r}; choose from {GRID_METRICS}.")
        rows, key = entry.get("rows") or [], f"test_{metric}"
    out = []
    for r in rows:
        vals = [v for v in r.get(key, {}).get("values", []) if v is not None and np.isfinite(v)]
        vr = r.get("vs_reference") or {}
        out.append({"label": r["label"], "values": vals, "mean": float(np.mean(vals)) if vals else None,
                    "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0 if vals else None,
                    "sig": vr.get("sig_users", "")})
    return out


def plot_grid(payload: dict[str, Any], regime: str, metric: str = "recall@20", group: str = "all"):
    """Bars of :func:`grid_values` (mean ± sd over seeds, seeds as dots); ↑/↓ mark significant differences to DiffCL."""
    import matplotlib.pyplot as plt

    vals = grid_values(payload, regime, metric, group)
    fig, ax = plt.subplots(figsize=(8.5, 3.6))
    for j, v in enumerate(vals):
        if v["mean"] is None:
            ax.text(j, 0, "n/a", ha="center", va="bottom", fontsize=8)
            continue
        colour = "#c44e52" if v["label"] == REFERENCE_LABEL else "#4c72b0"
        ax.bar(j, v["mean"], yerr=v["sd"], color=colour, alpha=0.8, capsize=3)
        ax.scatter([j] * len(v["values"]), v["values"], color="k", s=10, zorder=3)
        if v["sig"] in ("↑", "↓"):
            ax.text(j, v["mean"] + (v["sd"] or 0), v["sig"], ha="center", va="bottom", fontsize=12)
    ax.set_xticks(range(len(vals)))
    ax.set_xticklabels([v["label"].replace(" (random views)", "\n(random views)") for v in vals], fontsize=8)
    name = metric if group == "all" else f"{metric} on {group} items"
    ax.set_ylabel(f"test {name}")
    ax.set_title(f"{regime}: mean ± sd over seeds (dots: seeds; ↑/↓: significant vs diffcl, users bootstrap)", fontsize=9)
    fig.tight_layout()
    return fig
