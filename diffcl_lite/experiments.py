"""Experiment tables: one model, or DiffCL with its ablations and baselines, same protocol.

Introduced in notebook 08; ``python -m diffcl_lite ablate`` calls :func:`run_ablation`.
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
from .utils import atomic_write_bytes

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
