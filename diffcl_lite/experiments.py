"""Experiment tables: one model, or DiffCL with its ablations and baselines, same protocol.

Introduced in notebook 07 (:func:`results_table`); notebook 08 runs the ablations, and
``python -m diffcl_lite ablate`` calls :func:`run_ablation` (one seed) or :func:`run_ablation_seeds`.
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from .data import RecDataset
from .model import ABLATIONS, DiffCLConfig
from .training import TrainConfig, TrainResult, run_experiment
from .fileutil import atomic_write_bytes

log = logging.getLogger(__name__)

TABLE_COLUMNS = [("recall@10", "R@10"), ("recall@20", "R@20"), ("ndcg@10", "N@10"), ("ndcg@20", "N@20"),
                 ("precision@20", "P@20")]


def results_table(rows: Sequence[tuple[str, TrainResult]], fmt: str = "markdown") -> str:
    """A table with model, R@10, R@20, N@10, N@20, P@20, best epoch, time (s/epoch and total)."""
    header = ["model", *[c for _, c in TABLE_COLUMNS], "best epoch", "s/epoch", "total s"]
    body = []
    for label, r in rows:
        body.append([label, *[f"{r.test.get(k, float('nan')):.4f}" for k, _ in TABLE_COLUMNS], str(r.best_epoch),
                     f"{r.epoch_seconds:.2f}", f"{r.seconds:.1f}"])
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]
    fmt_row = lambda row: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))  # noqa: E731
    return "\n".join([fmt_row(header), fmt_row(["-" * w for w in widths]), *map(fmt_row, body)])


def ablation_variants(base: DiffCLConfig | None = None, include_baselines: bool = True) -> list[tuple[str, str, DiffCLConfig]]:
    """(label, model name, config) for DiffCL, each ablation in ``ABLATIONS``, LightGCN and MF."""
    base = base or DiffCLConfig()
    out = [(label, "diffcl", replace(base, **change)) for label, change in ABLATIONS.items()]
    if include_baselines:
        out += [("LightGCN", "lightgcn", base), ("MF-BPR", "mf", base)]
    return out


def run_ablation(
    data: RecDataset,
    base: DiffCLConfig | None = None,
    train_config: TrainConfig | None = None,
    device: str = "auto",
    out_dir: str | Path | None = None,
    include_baselines: bool = True,
    cache_dir: str | None = None,
) -> list[tuple[str, TrainResult]]:
    """Train every variant with the same protocol and seed; write ``ablation_<dataset>.md/.json``."""
    rows = []
    for label, name, cfg in ablation_variants(base, include_baselines):
        log.info("ablation: %s", label)
        _, res = run_experiment(data, name, cfg, train_config, device=device, cache_dir=cache_dir)
        rows.append((label, res))
    if out_dir is not None:
        write_results(rows, Path(out_dir), f"ablation_{safe_name(data.name)}", train_config)
    return rows


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def write_results(rows: Sequence[tuple[str, TrainResult]], out_dir: Path, stem: str,
                  train_config: TrainConfig | None = None) -> tuple[Path, Path]:
    """Write ``<stem>.md`` (table) and ``<stem>.json`` (full results) atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"{stem}.md"
    js = out_dir / f"{stem}.json"
    first = rows[0][1] if rows else None
    note = ""
    if first is not None:
        tc = train_config or TrainConfig()
        note = (f"\n\nDataset `{first.dataset}`, device `{first.device}`, seed {tc.seed}, up to {tc.epochs} epochs, "
                f"patience {tc.patience}; test metrics at the best valid Recall@20 epoch.\n")
    atomic_write_bytes(md, (results_table(rows) + note).encode())
    payload: list[dict[str, Any]] = [{"label": label, **r.to_json()} for label, r in rows]
    atomic_write_bytes(js, json.dumps(payload, indent=2).encode())
    return md, js


# ---------------------------------------------------------------------------------------------
# Notebook 08: reading the table, and the two ways of picking the reported epoch
# ---------------------------------------------------------------------------------------------
import tempfile  # noqa: E402

from .errors import DiffCLError  # noqa: E402
from .evaluation import evaluate  # noqa: E402
from .model import build_model  # noqa: E402
from .training import CHECKPOINT_NAME, load_checkpoint, train  # noqa: E402
from .utils import get_device, seed_everything  # noqa: E402


def best_variant(rows: Sequence[tuple[str, TrainResult]], metric: str = "recall@20", split: str = "test") -> str:
    """The label of the row with the highest ``split`` ``metric`` (the first one on a tie).

    Introduced in notebook 08 (reading the ablation table).
    """
    if not rows:
        raise DiffCLError("best_variant: no rows; pass the list returned by run_ablation.")
    if split not in ("valid", "test"):
        raise DiffCLError(f"best_variant: split={split!r} must be 'valid' or 'test'.")
    best_label, best_value = None, float("-inf")
    for label, res in rows:
        values = getattr(res, split)
        if metric not in values:
            raise DiffCLError(f"best_variant: row {label!r} has no {split} {metric!r}; known: {sorted(values)}.")
        if values[metric] > best_value:
            best_label, best_value = label, values[metric]
    return str(best_label)


def valid_test_curves(
    data: RecDataset,
    model_name: str = "lightgcn",
    model_config: DiffCLConfig | None = None,
    train_config: TrainConfig | None = None,
    device: str = "auto",
    cache_dir: str | None = None,
) -> list[dict[str, Any]]:
    """Valid AND test metrics after every epoch, each computed on that epoch's own weights.

    Introduced in notebook 08 (evaluation protocol). ``run_experiment`` evaluates the test split only
    at the best valid epoch (MMRec); to see what DiffMM-style "best test epoch" reporting would
    pick, this trains one epoch at a time, resuming from a checkpoint (the resumed run is the
    same run as an uninterrupted one), and evaluates the checkpointed weights on both splits.
    Early stopping is off; the checkpoint goes to a temporary folder unless
    ``train_config.checkpoint_dir`` is set. Rows: ``epoch``, ``loss_total``, ``valid_<metric>``,
    ``test_<metric>``.
    """
    tcfg = train_config or TrainConfig()
    dev = get_device(device)
    tmp = tempfile.TemporaryDirectory(prefix="diffcl-curves-") if tcfg.checkpoint_dir is None else None
    ckdir = tmp.name if tmp is not None else str(tcfg.checkpoint_dir)
    rows: list[dict[str, Any]] = []
    try:
        seed_everything(tcfg.seed)
        model = build_model(model_name, data, model_config, device=dev, cache_dir=cache_dir)
        for epoch in range(1, tcfg.epochs + 1):
            step = replace(tcfg, epochs=epoch, eval_every=1, patience=tcfg.epochs + 1, checkpoint_dir=ckdir,
                           resume=epoch > 1, progress=False)
            train(model, data, step, device=dev)
            ck = load_checkpoint(Path(ckdir) / CHECKPOINT_NAME, map_location=dev)
            model.load_state_dict(ck["model"])  # this epoch's weights, not the best ones
            last = ck["history"][-1]
            test = evaluate(model, data, "test", tcfg.ks, tcfg.eval_batch_size)
            row = {"epoch": epoch, "loss_total": last.get("loss_total")}
            row.update({k: v for k, v in last.items() if k.startswith("valid_")})
            row.update({f"test_{k}": round(v, 6) for k, v in test.items()})
            rows.append(row)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return rows


def selection_summary(curve: Sequence[dict[str, Any]], metric: str = "recall@20") -> dict[str, Any]:
    """Test ``metric`` at the best valid row (MMRec) vs the best test row (DiffMM), from ``valid_test_curves``.

    Introduced in notebook 08. ``curve`` may hold the rows of several runs (e.g. one per learning
    rate): the selection is then over every (run, epoch). ``optimism`` = best test − test at the
    best valid row (>= 0); ``*_index`` are the positions of the two rows. Ties go to the earliest row.
    """
    if not curve:
        raise DiffCLError("selection_summary: the curve is empty; pass the rows of valid_test_curves.")
    vk, tk = f"valid_{metric}", f"test_{metric}"
    if vk not in curve[0] or tk not in curve[0]:
        raise DiffCLError(f"selection_summary: rows need {vk!r} and {tk!r}; they have {sorted(curve[0])}.")
    by_valid = max(range(len(curve)), key=lambda j: (curve[j][vk], -j))
    by_test = max(range(len(curve)), key=lambda j: (curve[j][tk], -j))
    return {
        "valid_selected_epoch": int(curve[by_valid]["epoch"]),
        "valid_selected_test": float(curve[by_valid][tk]),
        "valid_selected_index": int(by_valid),
        "best_test_epoch": int(curve[by_test]["epoch"]),
        "best_test": float(curve[by_test][tk]),
        "best_test_index": int(by_test),
        "optimism": float(curve[by_test][tk] - curve[by_valid][tk]),
    }


# ---------------------------------------------------------------------------------------------
# Several seeds, per-user metrics, paired tests (``python -m diffcl_lite ablate --seeds N``)
# ---------------------------------------------------------------------------------------------
import hashlib  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from . import stats  # noqa: E402
from .evaluation import (DEFAULT_KS, ITEM_GROUPS, _csr_rows_to_dense, group_metric_name, group_recall,  # noqa: E402
                         item_groups, ranking_metrics)

#: metrics kept per test user (for the paired bootstrap over users)
PER_USER_METRICS = ("recall@20", "ndcg@20")
#: per-user Recall@20 restricted to cold / tail / head test items (NaN where a user has none)
GROUP_METRICS = tuple(group_metric_name(g, 20) for g in ITEM_GROUPS)
REFERENCE_LABEL = "diffcl"


@torch.no_grad()
def per_user_metrics(model, data: RecDataset, split: str = "test", ks: Sequence[int] = DEFAULT_KS,
                     batch_size: int = 1024, groups: dict[str, np.ndarray] | None = None,
                     group_k: int = 20) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(users, {metric: per-user values})`` with the protocol of :func:`~diffcl_lite.evaluation.evaluate`.

    The mean of each array over users equals the metric ``evaluate`` reports (a test checks it).
    Users are those with at least one held-out item in ``split``, in increasing id order.
    ``groups`` (``{name: item mask}``, e.g. :func:`~diffcl_lite.evaluation.item_groups`) adds
    ``recall@<group_k>[<name>]``: Recall restricted to the user's held-out items of that group,
    NaN for users with none (:func:`~diffcl_lite.evaluation.group_recall`).
    """
    if split not in ("valid", "test"):
        raise DiffCLError(f"per_user_metrics: split={split!r} must be 'valid' or 'test'.")
    user_emb, item_emb = model.final_embeddings()
    device = user_emb.device
    heldout = data.interaction_matrix(split)
    masked = data.interaction_matrix("train")
    if split == "test":
        masked = (masked + data.interaction_matrix("valid")).tocsr()
    n_rel_all = np.diff(heldout.indptr)
    users = np.where(n_rel_all > 0)[0]
    parts: dict[str, list[np.ndarray]] = {}
    masks = {g: torch.as_tensor(np.asarray(m, dtype=bool), device=device) for g, m in (groups or {}).items()}
    for g, m in masks.items():
        if m.shape != (data.n_items,):
            raise DiffCLError(f"per_user_metrics: the mask of group {g!r} has shape {tuple(m.shape)}, "
                              f"expected ({data.n_items},) (one entry per item).")
    kmax = max(max(ks), group_k) if masks else max(ks)
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        bt = torch.as_tensor(batch, device=device)
        # ŷ_ui = e_u · e_i, train (and valid, for test) items masked
        scores = (user_emb[bt] @ item_emb.T).masked_fill(_csr_rows_to_dense(masked, batch, device), float("-inf"))
        top = torch.topk(scores, kmax, dim=1).indices
        relevant = _csr_rows_to_dense(heldout, batch, device)
        hits = relevant.gather(1, top)
        for name, val in ranking_metrics(hits, torch.as_tensor(n_rel_all[batch], device=device), ks).items():
            parts.setdefault(name, []).append(val.double().cpu().numpy())
        for g, m in masks.items():
            parts.setdefault(f"recall@{group_k}[{g}]", []).append(group_recall(top, relevant, m, group_k).cpu().numpy())
    return users.astype(np.int64), {k: np.concatenate(v) for k, v in parts.items()}


@dataclass
class RunSpec:
    """One row of a table: a label, a model name and its configs (the seed comes from the run)."""

    label: str
    model: str
    config: DiffCLConfig = field(default_factory=DiffCLConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_VOLATILE_TRAIN_FIELDS = ("progress", "checkpoint_dir", "resume", "eval_batch_size")
#: the DiffCLConfig fields each baseline reads (see model.build_model)
BASELINE_FIELDS = {"mf": ("embedding_dim", "lambda_reg"), "lightgcn": ("embedding_dim", "n_layers", "lambda_reg")}


def run_key(spec: RunSpec, seed: int, dataset: str) -> str:
    """A stable id of (dataset, label, model, configs, seed): done runs are skipped on restart."""
    train = {k: v for k, v in asdict(spec.train).items() if k not in _VOLATILE_TRAIN_FIELDS and k != "seed"}
    config = spec.config.to_dict()
    if spec.model in BASELINE_FIELDS:  # a baseline's run does not change when DiffCL-only fields do
        config = {k: v for k, v in config.items() if k in BASELINE_FIELDS[spec.model]}
    blob = json.dumps({"dataset": dataset, "label": spec.label, "model": spec.model, "config": config,
                       "train": train, "seed": int(seed)}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


class RunStore:
    """An append-only JSONL file of finished runs, one JSON object per line.

    Each line is written with a single ``write`` + ``fsync``; a line cut short by a crash is
    dropped (with a warning) the next time the file is read, so a restart reruns that run only.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.records: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.exists():
            self._read()

    def _read(self) -> None:
        assert self.path is not None
        good, dropped = [], 0
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict) or "key" not in rec:
                    raise ValueError("not a run record")
            except ValueError:
                dropped += 1
                log.warning("%s: line %d is not a complete run record; it is dropped and that run reruns", self.path, n)
                continue
            good.append(line)
            self.records[rec["key"]] = rec
        if dropped:  # rewrite without the broken lines, atomically
            atomic_write_bytes(self.path, ("\n".join(good) + "\n" if good else "").encode())

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def add(self, record: dict[str, Any]) -> None:
        self.records[record["key"]] = record
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def run_one(data: RecDataset, spec: RunSpec, seed: int, device: str = "auto", cache_dir: str | None = None,
            keep_history: bool = True) -> dict[str, Any]:
    """Train ``spec`` with ``seed``; return a run record with the result and per-user test metrics.

    Besides Recall@20 and NDCG@20 per test user, the record holds the item-group Recall@20
    (:data:`GROUP_METRICS`, groups of :func:`~diffcl_lite.evaluation.item_groups`): per user in
    ``per_user`` (``None`` where the user has no test item of the group) and as means over the
    users that have one in ``result["test"]``; ``item_groups`` counts the items of each group.
    """
    tcfg = replace(spec.train, seed=int(seed))
    t0 = time.perf_counter()
    model, res = run_experiment(data, spec.model, spec.config, tcfg, device=device, cache_dir=cache_dir)
    groups = item_groups(data)
    users, per_user = per_user_metrics(model, data, "test", tcfg.ks, tcfg.eval_batch_size, groups=groups)
    result = res.to_json()
    if not keep_history:
        result.pop("history", None)
    for m in GROUP_METRICS:
        vals = per_user[m][np.isfinite(per_user[m])]
        result["test"][m] = round(float(vals.mean()), 6) if vals.size else None
    return {
        "key": run_key(spec, seed, data.name), "label": spec.label, "model": spec.model, "seed": int(seed),
        "dataset": data.name, "config": spec.config.to_dict(), "train": _plain_train(tcfg), "result": result,
        "per_user": {"users": users.tolist(), **{m: np.round(per_user[m], 6).tolist() for m in PER_USER_METRICS},
                     **{m: _finite_or_none(per_user[m]) for m in GROUP_METRICS}},
        "item_groups": {g: int(mask.sum()) for g, mask in groups.items()},
        "wall_seconds": round(time.perf_counter() - t0, 2),
    }


def _finite_or_none(values: np.ndarray) -> list[float | None]:
    """Per-user values for JSON: rounded, ``None`` where NaN (a user without items of a group)."""
    return [round(float(v), 6) if np.isfinite(v) else None for v in values]


def _plain_train(tcfg: TrainConfig) -> dict[str, Any]:
    d = asdict(tcfg)
    d["ks"] = list(d["ks"])
    return d


def run_seeded(data: RecDataset, specs: Sequence[RunSpec], seeds: Sequence[int], store: RunStore | None = None,
               device: str = "auto", cache_dir: str | None = None, progress: bool = True,
               train_missing: bool = True) -> list[dict[str, Any]]:
    """Every spec with every seed (seed-major order), skipping runs already in ``store``.

    ``train_missing=False`` trains nothing and returns only the runs ``store`` already holds (a
    report of an unfinished table).
    """
    from tqdm.auto import tqdm

    store = store or RunStore(None)
    jobs = [(s, spec) for s in seeds for spec in specs]
    out = []
    bar = tqdm(jobs, desc="runs", unit="run", disable=not progress)
    for seed, spec in bar:
        key = run_key(spec, seed, data.name)
        rec = store.get(key)
        if rec is None and not train_missing:
            log.info("run: %s seed %d not in %s; left out of the report", spec.label, seed, store.path)
            continue
        if rec is None:
            bar.set_postfix_str(f"{spec.label} seed {seed}")
            log.info("run: %s seed %d", spec.label, seed)
            rec = run_one(data, replace(spec, train=replace(spec.train, progress=False)), seed, device, cache_dir)
            store.add(rec)
        else:
            log.info("run: %s seed %d already done (%s)", spec.label, seed, store.path)
        out.append(rec)
    bar.close()
    return out


def ablation_specs(base: DiffCLConfig | None = None, train_config: TrainConfig | None = None,
                   include_baselines: bool = True, models: Sequence[str] | None = None) -> list[RunSpec]:
    """The rows of :func:`ablation_variants` as :class:`RunSpec` objects with one train config.

    ``models``: keep only the rows with these short names (``diffcl``, ``random-views``, ``no-cl``,
    ``no-align``, ``no-item-graph``, ``lightgcn``, ``mf``; see :func:`short_name`).
    """
    tcfg = train_config or TrainConfig()
    specs = [RunSpec(label, name, cfg, tcfg) for label, name, cfg in ablation_variants(base, include_baselines)]
    if models:
        known = [short_name(s) for s in specs]
        bad = [m for m in models if m not in known]
        if bad:
            raise DiffCLError(f"unknown models {bad}; choose from {known}.")
        specs = [s for s in specs if short_name(s) in models]
    return specs


def short_name(spec: RunSpec) -> str:
    """``diffcl``, ``random-views``, ``no-cl``, ``no-align``, ``no-item-graph``, ``lightgcn``, ``mf``."""
    if spec.model != "diffcl":
        return spec.model
    c = spec.config
    if c.view_kind == "random":
        return "random-views"
    if not c.use_cl:
        return "no-cl"
    if not c.use_align:
        return "no-align"
    if not c.use_item_graph:
        return "no-item-graph"
    return "diffcl"


def summarize(records: Sequence[dict[str, Any]], reference: str = REFERENCE_LABEL, metric: str = "recall@20",
              n_boot: int = 10_000, alpha: float = 0.05, boot_seed: int = 0) -> list[dict[str, Any]]:
    """One row per label: mean ± sd over seeds and paired tests of ``metric`` against ``reference``.

    Seeds test: paired t-test of the per-seed test ``metric`` over the seeds both rows have.
    Users test: per-user ``metric`` averaged over those seeds, paired by user, bootstrapped
    (:func:`~diffcl_lite.stats.paired_bootstrap`). Both p-value families are Holm-adjusted over
    the rows of the table; ``sig_users``/``sig_seeds`` mark ↑/↓ at ``alpha`` after adjustment.
    """
    by_label: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_label.setdefault(rec["label"], []).append(rec)
    if not by_label:
        raise DiffCLError("summarize: no run records; run the table first.")
    ref = {r["seed"]: r for r in by_label.get(reference, [])}
    rows: list[dict[str, Any]] = []
    for label, recs in by_label.items():
        recs = sorted(recs, key=lambda r: r["seed"])
        res = [r["result"] for r in recs]
        row: dict[str, Any] = {"label": label, "model": recs[0]["model"], "seeds": [r["seed"] for r in recs],
                               "is_reference": label == reference}
        for split in ("test", "valid"):
            for m in ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@20"):
                vals = [x[split].get(m, float("nan")) for x in res]
                row[f"{split}_{m}"] = {"values": vals, "mean": stats.mean_sd(vals)[0], "sd": stats.mean_sd(vals)[1]}
        if metric not in ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@20"):
            vals = [_nan(x["test"].get(metric)) for x in res]
            row[f"test_{metric}"] = {"values": vals, "mean": float(np.nanmean(vals)) if np.isfinite(vals).any() else None,
                                     "sd": stats.mean_sd([v for v in vals if np.isfinite(v)])[1]
                                     if np.isfinite(vals).any() else None}
        row["best_epoch"] = [x["best_epoch"] for x in res]
        row["epochs_run"] = [x["epochs_run"] for x in res]
        row["epoch_seconds"] = stats.mean_sd([x["epoch_seconds"] for x in res])[0]
        row["eval_seconds"] = stats.mean_sd([x["eval_seconds"] for x in res])[0]
        common = [r for r in recs if r["seed"] in ref]
        row["vs_reference"] = None
        if label != reference and len(common) >= 1 and ref:
            seeds = [r["seed"] for r in common]
            a = [_nan(r["result"]["test"].get(metric)) for r in common]
            b = [_nan(ref[s]["result"]["test"].get(metric)) for s in seeds]
            ok = [i for i in range(len(a)) if np.isfinite(a[i]) and np.isfinite(b[i])]
            a, b = [a[i] for i in ok], [b[i] for i in ok]
            t = stats.paired_ttest(a, b).to_json() if len(ok) >= 2 else None
            boot = None
            if metric in recs[0].get("per_user", {}) and ok:
                ua, va = _user_means(common, metric)
                ub, vb = _user_means([ref[s] for s in seeds], metric)
                if not np.array_equal(ua, ub):
                    raise DiffCLError(f"summarize: rows {label!r} and {reference!r} were evaluated on different test users; "
                                      "were they run on the same dataset?")
                # users without a held-out item of the group (NaN, the same users in every run) are left out
                both = np.isfinite(va) & np.isfinite(vb)
                if both.sum() >= 2:
                    boot = stats.paired_bootstrap(va[both], vb[both], n_boot=n_boot, seed=boot_seed).to_json()
            row["vs_reference"] = None if not ok else {
                "seeds": [seeds[i] for i in ok], "diff": float(np.mean(a) - np.mean(b)), "ttest": t, "bootstrap": boot}
        rows.append(row)
    for kind in ("ttest", "bootstrap"):
        idx = [i for i, r in enumerate(rows) if r["vs_reference"] and r["vs_reference"][kind]]
        adj = stats.holm([rows[i]["vs_reference"][kind]["p_value"] for i in idx])
        for i, p in zip(idx, adj):
            vr = rows[i]["vs_reference"]
            vr[kind]["p_holm"] = p
            vr["sig_users" if kind == "bootstrap" else "sig_seeds"] = stats.significance_mark(p, vr["diff"], alpha)
    return rows


def _user_means(recs: Sequence[dict[str, Any]], metric: str) -> tuple[np.ndarray, np.ndarray]:
    users = np.asarray(recs[0]["per_user"]["users"])
    # None (no held-out item of a group) -> NaN; a user is NaN in every run of one dataset
    vals = np.mean([np.array([np.nan if v is None else v for v in r["per_user"][metric]], dtype=np.float64)
                    for r in recs], axis=0)
    return users, vals


def _nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _fmt_p(p: float | None) -> str:
    if p is None or not np.isfinite(p):
        return "–"
    return "<0.001" if p < 1e-3 else f"{p:.3f}"


def summary_table(rows: Sequence[dict[str, Any]], metric: str = "recall@20", fmt: str = "markdown") -> str:
    """Markdown (or text) table: mean ± sd over seeds, difference to the reference, p-values, marks."""
    header = ["model", "seeds", "R@20", "N@20", "R@10", "valid R@20", f"Δ {metric.replace('recall', 'R')}",
              "p users (Holm)", "p seeds (Holm)", "sig", "best epoch", "s/epoch"]
    body = []
    for r in rows:
        vr = r["vs_reference"]
        ms = lambda key: stats.format_mean_sd(r[key]["values"])  # noqa: E731
        if vr is None:
            diff, pu, ps, sig = ("(reference)" if r.get("is_reference") else "–"), "–", "–", ""
        else:
            boot, tt = vr.get("bootstrap"), vr.get("ttest")
            diff = f"{vr['diff']:+.4f}"
            pu = _fmt_p(boot.get("p_holm") if boot else None)
            ps = _fmt_p(tt.get("p_holm") if tt else None)
            sig = f"users {vr.get('sig_users', '–')} / seeds {vr.get('sig_seeds', '–')}"
        body.append([r["label"], str(len(r["seeds"])), ms("test_recall@20"), ms("test_ndcg@20"), ms("test_recall@10"),
                     ms("valid_recall@20"), diff, pu, ps, sig, "/".join(str(e) for e in r["best_epoch"]),
                     f"{r['epoch_seconds']:.2f}"])
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]
    line = lambda row: "  ".join(v.ljust(w) for v, w in zip(row, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, body)])


def table_legend(n_boot: int = 10_000, reference: str = REFERENCE_LABEL) -> str:
    """The paragraph under a :func:`summary_table` that says what its columns and marks mean."""
    return (
        f"Test metrics at the best valid Recall@20 epoch, mean ± sd over seeds. Δ: mean difference of test R@20 to "
        f"`{reference}`. p users: paired bootstrap over test users of per-user Recall@20 (averaged over the seeds), "
        f"{n_boot:,} resamples; p seeds: paired t-test over seeds; both Holm-adjusted over the rows of the table. "
        f"sig: ↑/↓ significantly better/worse than `{reference}` at 0.05 after adjustment, – not significant."
    )


def write_summary(records: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], out_dir: str | Path, stem: str,
                  command: str | None = None, extra: dict[str, Any] | None = None,
                  n_boot: int = 10_000, reference: str = REFERENCE_LABEL) -> tuple[Path, Path]:
    """Write ``<stem>.md`` (table, legend, command) and ``<stem>.json`` (rows, runs without per-user arrays)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    first = records[0] if records else {}
    tr = first.get("train", {})
    text = [f"# {stem}", "", f"Dataset `{first.get('dataset', '?')}`, device `{first.get('result', {}).get('device', '?')}`, "
            f"up to {tr.get('epochs', '?')} epochs, patience {tr.get('patience', '?')}, batch {tr.get('batch_size', '?')}, "
            f"lr {tr.get('lr', '?')}.", "", summary_table(rows), "", table_legend(n_boot, reference)]
    if command:
        text += ["", "Regenerate with:", "", "```", command, "```"]
    md, js = out / f"{stem}.md", out / f"{stem}.json"
    atomic_write_bytes(md, ("\n".join(text) + "\n").encode())
    runs = [{k: v for k, v in r.items() if k != "per_user"} for r in records]
    payload = {"command": command, "rows": rows, "runs": runs, **(extra or {})}
    atomic_write_bytes(js, json.dumps(payload, indent=2, default=str).encode())
    return md, js


def run_ablation_seeds(
    data: RecDataset,
    base: DiffCLConfig | None = None,
    train_config: TrainConfig | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    out_dir: str | Path | None = "results",
    include_baselines: bool = True,
    device: str = "auto",
    cache_dir: str | None = None,
    command: str | None = None,
    n_boot: int = 10_000,
    progress: bool = True,
    models: Sequence[str] | None = None,
    train_missing: bool = True,
) -> list[dict[str, Any]]:
    """DiffCL, its ablations and the baselines over ``seeds``, with paired tests against DiffCL.

    Finished runs go to ``<out_dir>/ablation_<dataset>.runs.jsonl`` (with per-user test metrics)
    as they end; a restart skips them. Writes ``ablation_<dataset>.md/.json``; returns the rows of
    :func:`summarize`. ``train_missing=False`` reports the runs already finished and trains nothing.
    """
    if len(seeds) < 1:
        raise DiffCLError("run_ablation_seeds: seeds is empty; pass e.g. --seeds 3.")
    stem = f"ablation_{safe_name(data.name)}"
    store = RunStore(Path(out_dir) / f"{stem}.runs.jsonl" if out_dir is not None else None)
    records = run_seeded(data, ablation_specs(base, train_config, include_baselines, models), seeds, store, device,
                         cache_dir, progress, train_missing)
    if not records:
        raise DiffCLError(f"no finished runs of this table in {store.path}; run it without --report-only first.")
    rows = summarize(records, n_boot=n_boot)
    if out_dir is not None:
        write_summary(records, rows, out_dir, stem, command, n_boot=n_boot)
    return rows


__all__ = ["TABLE_COLUMNS", "results_table", "ablation_variants", "run_ablation", "safe_name", "write_results",
           "best_variant", "valid_test_curves", "selection_summary", "PER_USER_METRICS", "GROUP_METRICS",
           "REFERENCE_LABEL", "per_user_metrics", "RunSpec", "BASELINE_FIELDS", "run_key", "RunStore", "run_one",
           "run_seeded", "ablation_specs", "short_name", "summarize", "summary_table", "table_legend",
           "write_summary", "run_ablation_seeds"]
