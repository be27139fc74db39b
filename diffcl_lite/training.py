"""Training: BPR triplets, the epoch loop, early stopping, checkpoints, resume.

Introduced in notebook 05 (a short :func:`run_experiment` whose views the notebook inspects); the
full protocol is notebook 08 (full training). ``python -m diffcl_lite train`` calls
:func:`run_experiment`, the same function the notebooks call.

Protocol (MMRec): Adam; one uniform negative per train positive, resampled when it is a train
item of the user; evaluate on valid every ``eval_every`` epochs; early stopping on valid
Recall@20 with ``patience`` evaluations; the test metrics reported are those at the best valid
epoch (DiffMM reports the best *test* epoch instead, which is optimistic).
"""
from __future__ import annotations

import io
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import RecDataset
from .errors import DiffCLError
from .evaluation import DEFAULT_KS, evaluate
from .model import DiffCLConfig, Recommender, build_model
from .runs import dataset_fingerprint, ensure_writable_dir
from .fileutil import atomic_write_bytes
from .utils import get_device, seed_everything

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "diffcl_lite.checkpoint"
CHECKPOINT_VERSION = 2
#: TrainConfig fields that may change on resume without --resume-override: they say when to stop,
#: how to show progress or where to write, not what is computed
RESUME_FREE = frozenset({"epochs", "patience", "progress", "checkpoint_dir", "resume", "resume_override",
                         "eval_batch_size", "diagnostics"})
#: fields that cannot change on resume at all (the random state and the best score continue)
RESUME_FIXED = frozenset({"seed", "select_metric"})


@dataclass
class TrainConfig:
    """Optimisation and protocol settings (MMRec defaults)."""

    epochs: int = 100
    batch_size: int = 2048
    lr: float = 1e-3
    weight_decay: float = 0.0
    eval_every: int = 1
    patience: int = 20                       # evaluations without improvement of valid Recall@20
    ks: tuple[int, ...] = DEFAULT_KS
    eval_batch_size: int = 1024
    seed: int = 0
    max_batches: int | None = None           # cap batches per epoch (fast mode, CI)
    checkpoint_dir: str | None = None
    resume: bool = False
    progress: bool = True
    select_metric: str = "recall@20"
    resume_override: tuple[str, ...] = ()    # fields allowed to differ from the checkpoint on resume
    diagnostics: bool = True                 # record DiffCL's view diagnostics in the history every epoch

    def __post_init__(self) -> None:
        self.ks = tuple(int(k) for k in self.ks)
        if isinstance(self.resume_override, str):
            self.resume_override = tuple(p for p in self.resume_override.replace(",", " ").split() if p)
        self.resume_override = tuple(str(x).replace("-", "_") for x in self.resume_override)
        for name in ("epochs", "batch_size", "eval_every", "patience", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise DiffCLError(f"TrainConfig: {name}={getattr(self, name)} must be >= 1 (--{name.replace('_', '-')}).")
        if self.lr <= 0:
            raise DiffCLError(f"TrainConfig: lr={self.lr} must be > 0 (--lr).")
        if self.select_metric.split("@")[-1] not in {str(k) for k in self.ks}:
            raise DiffCLError(f"TrainConfig: select_metric={self.select_metric!r} needs its K in ks={self.ks}.")


@dataclass
class TrainResult:
    """What a run returns: the best epoch's metrics, the history and timings."""

    model: str
    dataset: str
    best_epoch: int
    valid: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    epoch_seconds: float = 0.0
    eval_seconds: float = 0.0
    epochs_run: int = 0
    stopped_early: bool = False
    device: str = "cpu"

    def to_json(self) -> dict[str, Any]:
        """The JSON written by ``--json`` (a stable contract for scripts)."""
        return {
            "model": self.model,
            "dataset": self.dataset,
            "best_epoch": self.best_epoch,
            "valid": self.valid,
            "test": self.test,
            "seconds": round(self.seconds, 3),
            "epoch_seconds": round(self.epoch_seconds, 4),
            "eval_seconds": round(self.eval_seconds, 4),
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "device": self.device,
            "history": self.history,
        }


class BPRSampler:
    """Yields batches of (user, positive item, negative item) triplets, one negative per positive.

    Negatives are uniform over items and resampled (up to ``max_tries`` times) when they are a
    train item of the user.
    """

    def __init__(self, data: RecDataset, batch_size: int, seed: int = 0, max_tries: int = 20) -> None:
        self.pairs = np.unique(data.train, axis=0)
        self.n_items = data.n_items
        self.batch_size = batch_size
        self.max_tries = max_tries
        self.rng = np.random.default_rng(seed)
        # sorted keys u * n_items + i for O(log n) membership tests
        self._keys = np.sort(self.pairs[:, 0] * self.n_items + self.pairs[:, 1])

    def __len__(self) -> int:
        return math.ceil(len(self.pairs) / self.batch_size)

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users * self.n_items + items
        pos = np.searchsorted(self._keys, keys)
        pos = np.minimum(pos, len(self._keys) - 1)
        return self._keys[pos] == keys

    def sample_negatives(self, users: np.ndarray) -> np.ndarray:
        neg = self.rng.integers(0, self.n_items, size=len(users))
        for _ in range(self.max_tries):
            bad = self.is_positive(users, neg)
            if not bad.any():
                break
            neg[bad] = self.rng.integers(0, self.n_items, size=int(bad.sum()))
        return neg

    def epoch(self):
        order = self.rng.permutation(len(self.pairs))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            users, pos = self.pairs[idx, 0], self.pairs[idx, 1]
            yield users, pos, self.sample_negatives(users)


def _rng_state(sampler: BPRSampler) -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy_sampler": sampler.rng.bit_generator.state,
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], sampler: BPRSampler) -> None:
    # RNG states are CPU byte tensors, also when the checkpoint was loaded with map_location="cuda"
    torch.set_rng_state(state["torch"].cpu())
    sampler.rng.bit_generator.state = state["numpy_sampler"]
    random.setstate(_tuplify(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _tuplify(x):
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves a half-written checkpoint."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code runs)."""
    path = Path(path)
    if not path.exists():
        raise DiffCLError(f"checkpoint {path} does not exist; run without --resume first, or pass the right --checkpoint-dir.")
    if path.is_dir():
        raise DiffCLError(f"checkpoint {path} is a folder; pass its parent folder as --checkpoint-dir.")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated, corrupted or foreign file; torch's own advice does not apply here
        raise DiffCLError(
            f"checkpoint {path} cannot be read: it is damaged (for example truncated) or not a diffcl_lite checkpoint "
            f"({type(exc).__name__}). Fix: delete it, or pass another --checkpoint-dir, and start again without --resume."
        ) from None
    if not isinstance(ck, dict) or not {"epoch", "model", "history"} <= set(ck):
        raise DiffCLError(
            f"checkpoint {path} is not a diffcl_lite checkpoint (no epoch, model weights and history in it). "
            f"Fix: delete it, or pass another --checkpoint-dir, and start again without --resume."
        )
    return ck


def accumulation_dtype(device: torch.device) -> torch.dtype:
    """The dtype the epoch's loss sums accumulate in: float64, except float32 on MPS (no float64 there)."""
    # float64 keeps the CPU and CUDA numbers of earlier versions bit-identical
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def _remove_stale_temporaries(folder: Path) -> None:
    """Delete ``.checkpoint.pt.*.tmp`` files that a process killed while writing left behind."""
    stale = sorted(folder.glob(f".{CHECKPOINT_NAME}.*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    if stale:
        log.warning("%s: removed %d temporary file(s) left by an interrupted checkpoint write", folder, len(stale))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _describe_dataset(fp: dict[str, Any]) -> str:
    mods = ", ".join(f"{k} {v}" for k, v in (fp.get("modalities") or {}).items()) or "no features"
    return (f"{fp.get('name')!r} ({fp.get('users')} users, {fp.get('items')} items, {fp.get('train')}/"
            f"{fp.get('valid')}/{fp.get('test')} train/valid/test, {mods})")


def _check_resume(ck: dict[str, Any], path: Path, model: Recommender, cfg: "TrainConfig",
                  model_config: dict[str, Any] | None, fingerprint: dict[str, Any]) -> list[str]:
    """Compare a checkpoint with this run; raise a :class:`DiffCLError` listing what differs.

    Returns the fields that differ but are allowed by ``cfg.resume_override``.
    """
    if ck.get("format") != CHECKPOINT_FORMAT or "dataset" not in ck:
        raise DiffCLError(
            f"checkpoint {path} was written by an older diffcl_lite and does not record its dataset and settings, "
            f"so resuming it cannot be checked. Fix: start again without --resume (or pass another --checkpoint-dir)."
        )
    if ck.get("model_name") != model.name:
        raise DiffCLError(
            f"checkpoint {path} is for model {ck.get('model_name')!r}, not {model.name!r}. Fix: pass --model "
            f"{ck.get('model_name')} to continue it, or drop --resume (or use another --checkpoint-dir) to start a new run."
        )
    old_fp = ck["dataset"] or {}
    if old_fp.get("sha256") != fingerprint["sha256"]:
        raise DiffCLError(
            f"checkpoint {path} was trained on another dataset: {_describe_dataset(old_fp)}; this run's dataset is "
            f"{_describe_dataset(fingerprint)}. Fix: pass the --dataset the checkpoint was trained on, or drop --resume "
            f"(or use another --checkpoint-dir) to start a new run on this dataset."
        )
    diffs: list[tuple[str, str, Any, Any]] = []
    now_train = _plain(asdict(cfg))
    for name, new in now_train.items():
        old = (ck.get("train_config") or {}).get(name, new)
        if name not in RESUME_FREE and old != new:
            diffs.append(("train", name, old, new))
    old_model = ck.get("model_config")
    if old_model is not None and model_config is not None:
        for name, new in _plain(model_config).items():
            old = old_model.get(name, new)
            if old != new:
                diffs.append(("model", name, old, new))
    known = set(now_train) | set(model_config or {})
    unknown = [n for n in cfg.resume_override if n not in known]
    if unknown:
        raise DiffCLError(
            f"--resume-override {','.join(unknown)}: no such setting. Fix: name TrainConfig or DiffCLConfig fields, "
            f"e.g. --resume-override lr,lambda_cl."
        )
    fixed = [d for d in diffs if d[1] in RESUME_FIXED]
    refused = [d for d in diffs if d[1] not in cfg.resume_override or d[1] in RESUME_FIXED]
    if refused:
        lines = "\n".join(f"  {scope}.{name}: {old!r} in the checkpoint, {new!r} now ({_flag(name)})"
                          for scope, name, old, new in refused)
        overridable = [d[1] for d in refused if d[1] not in RESUME_FIXED]
        fixes = ["drop --resume to start a new run (or pass another --checkpoint-dir)"]
        if overridable:
            names = ",".join(overridable)
            fixes.append(f"continue the checkpoint with the new values: --resume-override {names} "
                         f"(in Python: TrainConfig(resume_override={tuple(overridable)!r}))")
        if fixed:
            fixes.append("for " + ", ".join(_flag(d[1]) for d in fixed) + ": pass the checkpoint's value (the random "
                         "state and the best score continue from the checkpoint, so these cannot change on resume)")
        raise DiffCLError(
            f"checkpoint {path} (epoch {ck.get('epoch')}) was trained with other settings than this run:\n{lines}\n"
            f"Fix: " + "; or ".join(fixes) + ". Fields that may always change on resume: "
            + ", ".join(sorted(RESUME_FREE - {"resume", "resume_override", "checkpoint_dir", "progress"})) + "."
        )
    return [f"{scope}.{name}: {old!r} -> {new!r}" for scope, name, old, new in diffs]


def _to_cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _oom_error(exc: BaseException, cfg: TrainConfig, where: str) -> DiffCLError:
    return DiffCLError(
        f"out of GPU memory during {where} ({exc.__class__.__name__}). Lower --batch-size (now {cfg.batch_size}) "
        f"or --eval-batch-size (now {cfg.eval_batch_size}), or use --device cpu."
    )


def _check_ks(data: RecDataset, cfg: TrainConfig) -> None:
    """Recall@K needs at least K items."""
    if max(cfg.ks) > data.n_items:
        k = max(1, min(10, data.n_items))
        raise DiffCLError(
            f"{data.name}: the dataset has {data.n_items} items, fewer than K={max(cfg.ks)} of the metrics (ks={cfg.ks}); "
            f"Recall@K needs at least K items. Fix: pass smaller --ks, e.g. --ks {k} --select-metric recall@{k} "
            f"(in Python: TrainConfig(ks=({k},), select_metric='recall@{k}'))."
        )


def _resume(ckpt_path: Path, model: Recommender, optimizer: torch.optim.Optimizer, sampler: "BPRSampler",
            cfg: TrainConfig, model_config: Any, fingerprint: Any, device: torch.device,
            ) -> tuple[list[dict[str, Any]], dict[str, Any], int, int]:
    """Load ``checkpoint.pt`` into the model, optimiser and sampler; ``(history, best, bad_evals, start_epoch)``."""
    ck = load_checkpoint(ckpt_path, map_location=device)
    overridden = _check_resume(ck, ckpt_path, model, cfg, model_config, fingerprint)
    try:
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DiffCLError(
            f"checkpoint {ckpt_path}: its weights do not fit this model ({first[:300]}). Fix: drop --resume "
            f"(or pass another --checkpoint-dir) to start a new run."
        ) from None
    for group in optimizer.param_groups:  # the optimiser runs at this run's lr (equal unless overridden)
        group["lr"], group["weight_decay"] = cfg.lr, cfg.weight_decay
    if overridden:
        log.warning("resuming %s with overridden settings: %s", ckpt_path, "; ".join(overridden))
    _set_rng_state(ck["rng"], sampler)
    start_epoch = int(ck["epoch"]) + 1
    log.info("resumed from %s at epoch %d", ckpt_path, start_epoch)
    return list(ck["history"]), dict(ck["best"]), int(ck["bad_evals"]), start_epoch


def _train_epoch(model: Recommender, sampler: "BPRSampler", optimizer: torch.optim.Optimizer, device: torch.device,
                 n_batches: int, cfg: TrainConfig) -> tuple[dict[str, float], float]:
    """One pass over ``n_batches`` BPR batches (train mode): ``(the sum of each loss term, seconds of the pass)``."""
    model.train()
    if hasattr(model, "pre_epoch"):
        model.pre_epoch()  # e.g. FREEDOM's per-epoch edge pruning
    t0 = time.perf_counter()
    sums: dict[str, Any] = {}
    acc_dtype = accumulation_dtype(device)
    try:
        for b, (u, p, n) in enumerate(sampler.epoch()):
            if b >= n_batches:
                break
            terms = model.loss(torch.as_tensor(u, device=device), torch.as_tensor(p, device=device),
                               torch.as_tensor(n, device=device))
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            # accumulate on the device: a float() per term would synchronise the GPU every step
            for k, v in terms.items():
                sums[k] = sums[k] + v.detach().to(acc_dtype) if k in sums else v.detach().to(acc_dtype)
    except torch.cuda.OutOfMemoryError as exc:  # type: ignore[attr-defined]
        raise _oom_error(exc, cfg, "training") from exc
    sums = {k: float(v) for k, v in sums.items()}  # one synchronisation per epoch
    return sums, time.perf_counter() - t0


def _checkpoint_setup(model: Recommender, data: RecDataset, cfg: TrainConfig, run_meta: dict[str, Any] | None,
                      ) -> tuple[Path | None, Any, Any]:
    """``(checkpoint path or None, the model's config, the dataset's fingerprint)``; the folder must be writable."""
    ckpt_path = None
    if cfg.checkpoint_dir:
        ckpt_path = ensure_writable_dir(cfg.checkpoint_dir, "--checkpoint-dir") / CHECKPOINT_NAME
        _remove_stale_temporaries(ckpt_path.parent)
    model_config = (run_meta or {}).get("model_config")
    if model_config is None and hasattr(model, "config"):
        model_config = asdict(model.config)
    fingerprint = dataset_fingerprint(data) if ckpt_path is not None else None
    return ckpt_path, model_config, fingerprint


def _epoch_row(model: Recommender, cfg: TrainConfig, epoch: int, sums: dict[str, float], n_batches: int,
               seconds: float) -> dict[str, Any]:
    """The history row of an epoch: each loss term's mean over the batches, the time, the view diagnostics."""
    # loss_k = (1 / n_batches) sum_b loss_k(b)
    row: dict[str, Any] = {"epoch": epoch, **{f"loss_{k}": v / n_batches for k, v in sums.items()},
                           "train_seconds": round(seconds, 4)}
    if not all(math.isfinite(v) for v in sums.values()):
        raise DiffCLError(f"epoch {epoch}: the loss became NaN/inf ({sums}); lower --lr (now {cfg.lr}) or the loss weights.")
    if cfg.diagnostics and hasattr(model, "view_diagnostics"):
        # views' deviation from x0 and from each other, uniformity, CL gradient (one fixed sample of nodes)
        row.update(model.view_diagnostics())
    return row


def _evaluate_epoch(model: Recommender, data: RecDataset, cfg: TrainConfig, epoch: int, best: dict[str, Any],
                    bad_evals: int) -> tuple[dict[str, float], dict[str, Any], int]:
    """Valid metrics; a better ``cfg.select_metric`` becomes ``best`` (with its test metrics and weights).

    Returns ``(valid, best, bad_evals)``: ``bad_evals`` counts the evaluations since the last improvement.
    """
    try:
        valid = evaluate(model, data, "valid", cfg.ks, cfg.eval_batch_size)
        score = valid[cfg.select_metric]
        if score > best["score"]:
            test = evaluate(model, data, "test", cfg.ks, cfg.eval_batch_size)
            best = {"epoch": epoch, "score": score, "valid": valid, "test": test, "state": _to_cpu_state(model)}
            bad_evals = 0
        else:
            bad_evals += 1
    except torch.cuda.OutOfMemoryError as exc:  # type: ignore[attr-defined]
        raise _oom_error(exc, cfg, "evaluation") from exc
    return valid, best, bad_evals


def train(
    model: Recommender,
    data: RecDataset,
    cfg: TrainConfig | None = None,
    device: torch.device | None = None,
    run_meta: dict[str, Any] | None = None,
    label: str | None = None,
    on_epoch: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` with early stopping; return a :class:`TrainResult`.

    At the end the model holds the weights of the best valid epoch. ``label`` names the progress
    bar (default: the model's name). ``on_epoch(row, history)`` is called after every epoch (and
    after its checkpoint), e.g. by :class:`~diffcl_lite.runs.RunLog` to write ``history.csv``.

    With ``cfg.checkpoint_dir`` the folder is checked for writability before any work and
    ``checkpoint.pt`` records the dataset's fingerprint and both configs; ``cfg.resume`` then
    refuses a checkpoint of another dataset or model, and any changed setting outside
    :data:`RESUME_FREE` unless it is named in ``cfg.resume_override``.
    """
    cfg = cfg or TrainConfig()
    device = device or next(model.parameters()).device
    _check_ks(data, cfg)
    ckpt_path, model_config, fingerprint = _checkpoint_setup(model, data, cfg, run_meta)
    sampler = BPRSampler(data, cfg.batch_size, seed=cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": 0, "score": -1.0, "valid": {}, "test": {}, "state": None}
    bad_evals, start_epoch = 0, 1
    if cfg.resume:
        if ckpt_path is None:
            raise DiffCLError("--resume needs --checkpoint-dir DIR (the folder holding checkpoint.pt).")
        assert fingerprint is not None
        history, best, bad_evals, start_epoch = _resume(ckpt_path, model, optimizer, sampler, cfg, model_config,
                                                        fingerprint, device)
    t_run = time.perf_counter()
    train_times, eval_times = [], []
    stopped = False
    n_batches = len(sampler) if cfg.max_batches is None else min(len(sampler), cfg.max_batches)
    epochs = tqdm(range(start_epoch, cfg.epochs + 1), desc=label or model.name, disable=not cfg.progress,
                  initial=start_epoch - 1, total=cfg.epochs, unit="epoch")
    for epoch in epochs:
        if bad_evals >= cfg.patience:
            stopped = True
            break
        sums, seconds = _train_epoch(model, sampler, optimizer, device, n_batches, cfg)
        train_times.append(seconds)
        row = _epoch_row(model, cfg, epoch, sums, n_batches, train_times[-1])
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            t1 = time.perf_counter()
            valid, best, bad_evals = _evaluate_epoch(model, data, cfg, epoch, best, bad_evals)
            eval_times.append(time.perf_counter() - t1)
            row.update({f"valid_{k}": round(v, 6) for k, v in valid.items()})
            row["eval_seconds"] = round(eval_times[-1], 4)
            epochs.set_postfix(loss=f"{row.get('loss_total', float('nan')):.4f}", r20=f"{valid.get('recall@20', 0):.4f}",
                               best=best["epoch"])
        history.append(row)
        log.info("epoch %d: %s", epoch, {k: v for k, v in row.items() if k != "epoch"})
        if ckpt_path is not None:
            save_checkpoint(ckpt_path, {
                "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": epoch, "model_name": model.name,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": _rng_state(sampler),
                "history": history, "best": best, "bad_evals": bad_evals, "train_config": _plain(asdict(cfg)),
                "model_config": _plain(model_config) if model_config is not None else None,
                "dataset": fingerprint, "meta": _plain(run_meta or {})})
        if on_epoch is not None:
            on_epoch(row, history)
    epochs.close()
    if best["state"] is not None:
        model.load_state_dict({k: v.to(device) for k, v in best["state"].items()})
    return TrainResult(
        model=model.name, dataset=data.name, best_epoch=int(best["epoch"]),
        valid={k: round(float(v), 6) for k, v in best["valid"].items()},
        test={k: round(float(v), 6) for k, v in best["test"].items()},
        history=history, seconds=time.perf_counter() - t_run,
        epoch_seconds=float(np.mean(train_times)) if train_times else 0.0,
        eval_seconds=float(np.mean(eval_times)) if eval_times else 0.0,
        epochs_run=len(history), stopped_early=stopped or bad_evals >= cfg.patience, device=str(device),
    )


def _plain(x: Any) -> Any:
    """Only plain types in checkpoints, so they load with weights_only=True."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def run_experiment(
    data: RecDataset,
    model_name: str = "diffcl",
    model_config: DiffCLConfig | None = None,
    train_config: TrainConfig | None = None,
    device: str | torch.device | None = "auto",
    cache_dir: str | None = None,
    label: str | None = None,
    on_epoch: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None,
) -> tuple[Recommender, TrainResult]:
    """Seed, build the model on the chosen device, train it; the CLI and notebook 08 both call this.

    ``label`` names the progress bar; ``on_epoch`` goes to :func:`train`.
    """
    tcfg = train_config or TrainConfig()
    dev = get_device(device)
    if tcfg.checkpoint_dir:  # before the model is built: a bad folder fails at once
        ensure_writable_dir(tcfg.checkpoint_dir, "--checkpoint-dir")
    seed_everything(tcfg.seed)
    t0 = time.perf_counter()
    try:
        model = build_model(model_name, data, model_config, device=dev, cache_dir=cache_dir)
    except torch.cuda.OutOfMemoryError as exc:  # type: ignore[attr-defined]
        raise _oom_error(exc, tcfg, "model construction") from exc
    log.info("built %s in %.2fs on %s", model_name, time.perf_counter() - t0, dev)
    meta = {"model_config": asdict(model_config or DiffCLConfig()), "dataset": data.name, "model_name": model_name}
    result = train(model, data, tcfg, device=dev, run_meta=meta, label=label, on_epoch=on_epoch)
    return model, result


__all__ = ["TrainConfig", "TrainResult", "BPRSampler", "train", "run_experiment", "save_checkpoint",
           "load_checkpoint", "RESUME_FREE", "RESUME_FIXED"]
