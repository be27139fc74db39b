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
