"""Training: BPR triplets, the epoch loop, early stopping, checkpoints, resume.

Introduced in notebook 08 (full training); ``python -m diffcl_lite train`` calls
:func:`run_experiment`, the same function the notebook calls.

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
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import RecDataset
from .errors import DiffCLError
from .evaluation import DEFAULT_KS, evaluate
from .model import DiffCLConfig, Recommender, build_model
from .utils import atomic_write_bytes, get_device, seed_everything

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"


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

    def __post_init__(self) -> None:
        self.ks = tuple(int(k) for k in self.ks)
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
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupted / foreign file
        raise DiffCLError(f"checkpoint {path} could not be read ({exc}); delete it and start again without --resume.") from exc


def _to_cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _oom_error(exc: BaseException, cfg: TrainConfig, where: str) -> DiffCLError:
    return DiffCLError(
        f"out of GPU memory during {where} ({exc.__class__.__name__}). Lower --batch-size (now {cfg.batch_size}) "
        f"or --eval-batch-size (now {cfg.eval_batch_size}), or use --device cpu."
    )


def train(
    model: Recommender,
    data: RecDataset,
    cfg: TrainConfig | None = None,
    device: torch.device | None = None,
    run_meta: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` with early stopping; return a :class:`TrainResult`.

    At the end the model holds the weights of the best valid epoch.
    """
    cfg = cfg or TrainConfig()
    device = device or next(model.parameters()).device
    sampler = BPRSampler(data, cfg.batch_size, seed=cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": 0, "score": -1.0, "valid": {}, "test": {}, "state": None}
    bad_evals, start_epoch = 0, 1
    ckpt_path = Path(cfg.checkpoint_dir) / CHECKPOINT_NAME if cfg.checkpoint_dir else None
    if cfg.resume:
        if ckpt_path is None:
            raise DiffCLError("--resume needs --checkpoint-dir DIR (the folder holding checkpoint.pt).")
        ck = load_checkpoint(ckpt_path, map_location=device)
        if ck.get("model_name") != model.name:
            raise DiffCLError(f"checkpoint {ckpt_path} is for model {ck.get('model_name')!r}, not {model.name!r}.")
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        _set_rng_state(ck["rng"], sampler)
        history = list(ck["history"])
        best = dict(ck["best"])
        bad_evals = int(ck["bad_evals"])
        start_epoch = int(ck["epoch"]) + 1
        log.info("resumed from %s at epoch %d", ckpt_path, start_epoch)
    t_run = time.perf_counter()
    train_times, eval_times = [], []
    stopped = False
    n_batches = len(sampler) if cfg.max_batches is None else min(len(sampler), cfg.max_batches)
    epochs = tqdm(range(start_epoch, cfg.epochs + 1), desc=f"{model.name}", disable=not cfg.progress,
                  initial=start_epoch - 1, total=cfg.epochs, unit="epoch")
    for epoch in epochs:
        if bad_evals >= cfg.patience:
            stopped = True
            break
        model.train()
        t0 = time.perf_counter()
        sums: dict[str, Any] = {}
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
                    sums[k] = sums[k] + v.detach().double() if k in sums else v.detach().double()
        except torch.cuda.OutOfMemoryError as exc:  # type: ignore[attr-defined]
            raise _oom_error(exc, cfg, "training") from exc
        sums = {k: float(v) for k, v in sums.items()}  # one synchronisation per epoch
        train_times.append(time.perf_counter() - t0)
        row: dict[str, Any] = {"epoch": epoch, **{f"loss_{k}": v / n_batches for k, v in sums.items()},
                               "train_seconds": round(train_times[-1], 4)}
        if not all(math.isfinite(v) for v in sums.values()):
            raise DiffCLError(f"epoch {epoch}: the loss became NaN/inf ({sums}); lower --lr (now {cfg.lr}) or the loss weights.")
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            t1 = time.perf_counter()
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
            eval_times.append(time.perf_counter() - t1)
            row.update({f"valid_{k}": round(v, 6) for k, v in valid.items()})
            row["eval_seconds"] = round(eval_times[-1], 4)
            epochs.set_postfix(loss=f"{row.get('loss_total', float('nan')):.4f}", r20=f"{valid.get('recall@20', 0):.4f}",
                               best=best["epoch"])
        history.append(row)
        log.info("epoch %d: %s", epoch, {k: v for k, v in row.items() if k != "epoch"})
        if ckpt_path is not None:
            save_checkpoint(ckpt_path, {
                "epoch": epoch, "model_name": model.name, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "rng": _rng_state(sampler), "history": history,
                "best": best, "bad_evals": bad_evals, "train_config": _plain(asdict(cfg)),
                "meta": _plain(run_meta or {}),
            })
    epochs.close()
    if best["state"] is not None:
        model.load_state_dict({k: v.to(device) for k, v in best["state"].items()})
    return TrainResult(
        model=model.name,
        dataset=data.name,
        best_epoch=int(best["epoch"]),
        valid={k: round(float(v), 6) for k, v in best["valid"].items()},
        test={k: round(float(v), 6) for k, v in best["test"].items()},
        history=history,
        seconds=time.perf_counter() - t_run,
        epoch_seconds=float(np.mean(train_times)) if train_times else 0.0,
        eval_seconds=float(np.mean(eval_times)) if eval_times else 0.0,
        epochs_run=len(history),
        stopped_early=stopped or bad_evals >= cfg.patience,
        device=str(device),
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
) -> tuple[Recommender, TrainResult]:
    """Seed, build the model on the chosen device, train it; the CLI and notebook 08 both call this."""
    tcfg = train_config or TrainConfig()
    dev = get_device(device)
    seed_everything(tcfg.seed)
    t0 = time.perf_counter()
    try:
        model = build_model(model_name, data, model_config, device=dev, cache_dir=cache_dir)
    except torch.cuda.OutOfMemoryError as exc:  # type: ignore[attr-defined]
        raise _oom_error(exc, tcfg, "model construction") from exc
    log.info("built %s in %.2fs on %s", model_name, time.perf_counter() - t0, dev)
    meta = {"model_config": asdict(model_config or DiffCLConfig()), "dataset": data.name}
    result = train(model, data, tcfg, device=dev, run_meta=meta)
    return model, result


__all__ = ["TrainConfig", "TrainResult", "BPRSampler", "train", "run_experiment", "save_checkpoint",
           "load_checkpoint"]
