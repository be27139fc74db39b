"""Run folders: what ``train`` and ``ablate`` leave behind, and ``runs compare``.

Every CLI run writes, by default under ``runs/<dataset>-<model>-<YYYYmmdd-HHMMSS>/`` (or
``--run-dir DIR``)::

    config.json     the resolved configuration (model, train, run); `--config config.json` replays it
    history.csv     one row per epoch: losses, valid metrics, diagnostics, seconds (rewritten each epoch)
    log.txt         the run's log at INFO level, whatever the console shows
    result.json     the final results (the same JSON as ``--json``), written at the end
    curve.png       the learning curve: training loss and valid Recall@20 per epoch
    tb/             TensorBoard event files, with ``--tensorboard`` (needs the tensorboard package)

``ablate`` writes one such folder per variant inside its own run folder, plus ``results.json``
and ``ablation.md`` for the whole table. ``python -m diffcl_lite runs compare DIR...`` prints one
row per run (a run folder, an ablation folder, or a folder of run folders) and the settings
that differ between them. Nothing here imports torch.
"""
from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import logging
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import DiffCLError

log = logging.getLogger(__name__)

RUNS_ROOT = "runs"  # relative to the working folder; $DIFFCL_RUNS replaces it
CONFIG_NAME = "config.json"
HISTORY_NAME = "history.csv"
RESULT_NAME = "result.json"
CURVE_NAME = "curve.png"
LOG_NAME = "log.txt"

__all__ = [
    "safe_name", "dataset_label", "new_run_dir", "ensure_writable_dir", "check_writable_file",
    "dataset_fingerprint", "RunLog", "write_history_csv", "plot_history", "compare_runs", "format_runs",
]


# ====================================================================== names and folders
def safe_name(text: str) -> str:
    """``text`` with every character that is not a letter, digit, '-', '_' or '.' replaced by '_'."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")
    return out or "run"


def dataset_label(spec: str) -> str:
    """A short name for a dataset spec: ``mmrec:/data/tiktok-dev`` -> ``tiktok-dev``."""
    text = str(spec)
    for prefix in ("mmrec:", "diffmm:"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    if "/" in text or os.sep in text:
        text = Path(text.rstrip("/" + os.sep)).name or text
    return safe_name(text)


def runs_root() -> Path:
    """Where run folders go by default: ``$DIFFCL_RUNS``, else ``runs/`` in the working folder."""
    return Path(os.environ.get("DIFFCL_RUNS") or RUNS_ROOT).expanduser()


def new_run_dir(dataset: str, model: str, root: "str | os.PathLike[str] | None" = None,
                now: _dt.datetime | None = None) -> Path:
    """Create and return a fresh ``<root>/<dataset>-<model>-<YYYYmmdd-HHMMSS>`` folder (``-2``, ``-3`` if taken)."""
    base = Path(root) if root is not None else runs_root()
    ensure_writable_dir(base, "--run-dir")
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    stem = f"{dataset_label(dataset)}-{safe_name(model)}-{stamp}"
    for k in range(1, 1000):
        path = base / (stem if k == 1 else f"{stem}-{k}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise DiffCLError(f"{base}: 999 run folders named {stem}-*; pass --run-dir DIR.")


def ensure_writable_dir(path: "str | os.PathLike[str]", flag: str) -> Path:
    """Create ``path`` if needed and check that a file can be written there; else a clear error.

    ``flag`` names the option the folder came from (e.g. ``--checkpoint-dir``), for the message.
    Called before any training work, so a bad folder fails in a second, not after an epoch.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise DiffCLError(f"{flag} {path}: this is a file, not a folder. Fix: pass a folder path (it is created if missing).")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DiffCLError(
            f"{flag} {path}: cannot create the folder ({exc.strerror or exc}). Fix: pass a folder you can write, "
            f"or create it first."
        ) from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".diffcl-write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DiffCLError(
            f"{flag} {path}: the folder is not writable ({exc.strerror or exc}). Fix: pass a folder you can write "
            f"(check its permissions, or whether the disk is mounted read-only)."
        ) from None
    return path


def check_writable_file(path: "str | os.PathLike[str]", flag: str) -> Path:
    """Check, before any work, that ``path`` can be written later (its folder is writable, it is no folder)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise DiffCLError(f"{flag} {path}: this is a folder; pass a file name, e.g. {path / 'result.json'}.")
    ensure_writable_dir(path.parent if str(path.parent) else Path("."), flag)
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    from .fileutil import atomic_write_bytes

    atomic_write_bytes(path, data)


# ====================================================================== dataset fingerprint
def dataset_fingerprint(data: Any) -> dict[str, Any]:
    """What identifies a dataset's content: sizes, modalities and a sha256 over ids and features.

    ``sha256`` covers ``n_users``, ``n_items``, the (user, item) rows of each split and every
    feature array (name, shape, float32 values), so two loads of the same files agree and a
    different dataset (or another split of it) does not.
    """
    import numpy as np

    h = hashlib.sha256()
    h.update(f"users={int(data.n_users)};items={int(data.n_items)}".encode())
    for split in ("train", "valid", "test"):
        pairs = np.ascontiguousarray(np.asarray(getattr(data, split), dtype=np.int64))
        h.update(f";{split}={pairs.shape}".encode())
        h.update(pairs.tobytes())
    for name in sorted(data.features):
        arr = np.ascontiguousarray(np.asarray(data.features[name], dtype=np.float32))
        h.update(f";{name}={arr.shape}".encode())
        h.update(arr.tobytes())
    return {
        "name": str(getattr(data, "name", "")),
        "users": int(data.n_users),
        "items": int(data.n_items),
        "train": int(len(data.train)),
        "valid": int(len(data.valid)),
        "test": int(len(data.test)),
        "modalities": {k: int(np.asarray(v).shape[1]) for k, v in data.features.items()},
        "sha256": h.hexdigest(),
    }


# ====================================================================== per-epoch logs
def _columns(history: Sequence[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for row in history:
        for k in row:
            if k not in cols:
                cols.append(k)
    return cols


def write_history_csv(path: "str | os.PathLike[str]", history: Sequence[dict[str, Any]]) -> Path:
    """Write the epoch rows as CSV (columns: every key of any row, in first-seen order), atomically."""
    buf = io.StringIO()
    cols = _columns(history)
    writer = csv.DictWriter(buf, fieldnames=cols, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in row.items()})
    path = Path(path)
    _atomic_write(path, buf.getvalue().encode("utf-8"))
    return path


def plot_history(history: Sequence[dict[str, Any]], path: "str | os.PathLike[str]", title: str = "",
                 metric: str = "valid_recall@20") -> Path | None:
    """Save the learning curve (training loss and ``metric`` per epoch) as a PNG; None if there is nothing to plot."""
    epochs = [r["epoch"] for r in history if "epoch" in r]
    if not epochs:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    loss = [(r["epoch"], r["loss_total"]) for r in history if isinstance(r.get("loss_total"), (int, float))]
    if loss:
        ax.plot(*zip(*loss), color="tab:blue", marker=".", label="train loss")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss (total)", color="tab:blue")
    points = [(r["epoch"], r[metric]) for r in history if isinstance(r.get(metric), (int, float))]
    if points:
        ax2 = ax.twinx()
        ax2.plot(*zip(*points), color="tab:orange", marker=".", label=metric)
        ax2.set_ylabel(metric, color="tab:orange")
        best = max(points, key=lambda p: p[1])
        ax2.axvline(best[0], color="tab:orange", alpha=0.3, linestyle="--")
    ax.set_title(title or "learning curve")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path = Path(path)
    _atomic_write(path, buf.getvalue())
    return path


class RunLog:
    """Writes one run folder while a run goes on (see the module docstring).

    ``log_epoch(row, history)`` is the ``on_epoch`` callback of :func:`~diffcl_lite.training.train`.
    ``log_to_file=True`` copies the ``diffcl_lite`` log records (INFO and up) to ``log.txt``
    until :meth:`close`.
    """

    def __init__(self, folder: "str | os.PathLike[str]", tensorboard: bool = False, log_to_file: bool = True,
                 title: str = "") -> None:
        self.folder = ensure_writable_dir(folder, "--run-dir")
        self.title = title
        self._tb = None
        self._handler: logging.Handler | None = None
        self._old_level: int | None = None
        if tensorboard:
            self._tb = _tensorboard_writer(self.folder / "tb")
        if log_to_file:
            handler = logging.FileHandler(self.folder / LOG_NAME, encoding="utf-8")
            handler.setLevel(logging.INFO)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            pkg = logging.getLogger("diffcl_lite")
            self._old_level = pkg.level
            if pkg.getEffectiveLevel() > logging.INFO:
                pkg.setLevel(logging.INFO)
            pkg.addHandler(handler)
            self._handler = handler

    def write_config(self, config: dict[str, Any]) -> Path:
        path = self.folder / CONFIG_NAME
        _atomic_write(path, json.dumps(_plain(config), indent=2).encode("utf-8"))
        return path

    def log_epoch(self, row: dict[str, Any], history: Sequence[dict[str, Any]]) -> None:
        write_history_csv(self.folder / HISTORY_NAME, history)
        if self._tb is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self._tb.add_scalar(k.replace("@", "_at_"), v, int(row["epoch"]))
            self._tb.flush()

    def finish(self, result: dict[str, Any]) -> Path:
        """Write ``result.json``, the final ``history.csv`` and ``curve.png``."""
        history = result.get("history") or []
        write_history_csv(self.folder / HISTORY_NAME, history)
        path = self.folder / RESULT_NAME
        _atomic_write(path, json.dumps(_plain(result), indent=2).encode("utf-8"))
        try:
            plot_history(history, self.folder / CURVE_NAME, title=self.title)
        except Exception as exc:  # a plot must never lose a finished run
            log.warning("%s: could not draw the learning curve (%s: %s)", self.folder / CURVE_NAME, type(exc).__name__, exc)
        return path

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._handler is not None:
            pkg = logging.getLogger("diffcl_lite")
            pkg.removeHandler(self._handler)
            self._handler.close()
            self._handler = None
            if self._old_level is not None:
                pkg.setLevel(self._old_level)

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def tensorboard_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _tensorboard_writer(folder: Path):
    if not tensorboard_available():
        raise DiffCLError(
            "--tensorboard needs the tensorboard package, which is not installed. Fix: `pip install tensorboard`, "
            "or leave out --tensorboard (history.csv and curve.png are written anyway)."
        )
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder))


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if hasattr(x, "item"):
        return _plain(x.item())
    return str(x)


# ====================================================================== runs compare
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DiffCLError(f"{path}: cannot read it as JSON ({exc}). Fix: pass run folders written by train or ablate.") from None


def _history_rows(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in ("model", "train", "run"):
            out.update(_flat(v, f"{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _one_run(folder: Path, label: str | None = None) -> dict[str, Any]:
    config = _read_json(folder / CONFIG_NAME) if (folder / CONFIG_NAME).is_file() else {}
    row: dict[str, Any] = {"run": label or folder.name, "path": str(folder), "config": config}
    if (folder / RESULT_NAME).is_file():
        res = _read_json(folder / RESULT_NAME)
        row.update({"status": "done", "dataset": res.get("dataset"), "model": res.get("label") or res.get("model"),
                    "best_epoch": res.get("best_epoch"), "epochs_run": res.get("epochs_run"),
                    "valid": res.get("valid") or {}, "test": res.get("test") or {},
                    "epoch_seconds": res.get("epoch_seconds"), "seconds": res.get("seconds")})
        return row
    if (folder / HISTORY_NAME).is_file():  # a run still going, or one that was stopped
        hist = _history_rows(folder / HISTORY_NAME)
        scores = [(float(r["valid_recall@20"]), int(r["epoch"])) for r in hist if r.get("valid_recall@20")]
        best = max(scores, default=(float("nan"), None))
        run = config.get("run", {}) if isinstance(config, dict) else {}
        row.update({"status": "incomplete", "dataset": run.get("dataset"), "model": run.get("label") or run.get("model"),
                    "best_epoch": best[1], "epochs_run": len(hist), "valid": {"recall@20": best[0]}, "test": {}})
        return row
    raise DiffCLError(
        f"{folder}: no {RESULT_NAME} or {HISTORY_NAME} here. Fix: pass run folders written by `train` or `ablate` "
        f"(by default under {RUNS_ROOT}/)."
    )


def _expand(path: Path) -> list[tuple[Path, str | None]]:
    if not path.is_dir():
        raise DiffCLError(f"{path}: not a folder. Fix: pass run folders written by `train` or `ablate`.")
    if (path / RESULT_NAME).is_file() or (path / HISTORY_NAME).is_file():
        return [(path, None)]
    subs = sorted(p for p in path.iterdir() if p.is_dir() and ((p / RESULT_NAME).is_file() or (p / HISTORY_NAME).is_file()))
    if subs:  # an ablation folder (variants inside) or a folder of runs
        return [(p, f"{path.name}/{p.name}") for p in subs]
    raise DiffCLError(
        f"{path}: no run found (no {RESULT_NAME} or {HISTORY_NAME} in it or in its sub-folders). Fix: pass run "
        f"folders written by `train` or `ablate` (by default under {RUNS_ROOT}/)."
    )


def compare_runs(paths: Iterable["str | os.PathLike[str]"]) -> list[dict[str, Any]]:
    """One dict per run found in ``paths`` (run folders, ablation folders, or folders of runs)."""
    rows: list[dict[str, Any]] = []
    for p in paths:
        for folder, label in _expand(Path(p).expanduser()):
            rows.append(_one_run(folder, label))
    if not rows:
        raise DiffCLError("runs compare: no run folders given. Fix: `python -m diffcl_lite runs compare runs/*`.")
    return rows


def config_differences(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """``{setting: [value per run]}`` for the settings whose value is not the same in every run."""
    flats = [_flat(r.get("config") or {}) for r in rows]
    keys: list[str] = []
    for f in flats:
        keys += [k for k in f if k not in keys]
    skip = {"train.checkpoint_dir", "train.resume", "train.progress", "run.run_dir", "run.json"}
    out = {}
    for k in keys:
        if k in skip:
            continue
        values = [f.get(k, "-") for f in flats]
        if len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1:
            out[k] = values
    return out


COMPARE_METRICS = [("valid", "recall@20", "valid R@20"), ("test", "recall@10", "R@10"), ("test", "recall@20", "R@20"),
                   ("test", "ndcg@20", "N@20"), ("test", "precision@20", "P@20")]


def format_runs(rows: Sequence[dict[str, Any]], fmt: str = "text") -> str:
    """The ``runs compare`` table (``fmt``: ``text`` or ``markdown``), then the settings that differ."""
    def num(v: Any, spec: str) -> str:
        try:
            f = float(v)
        except (TypeError, ValueError):
            return "-"
        return "-" if math.isnan(f) else format(f, spec)

    header = ["run", "model", "dataset", "status", "best", "epochs", *[c for *_, c in COMPARE_METRICS], "s/epoch"]
    body = []
    for r in rows:
        body.append([str(r["run"]), str(r.get("model") or "-"), str(r.get("dataset") or "-"), r["status"],
                     str(r.get("best_epoch") if r.get("best_epoch") is not None else "-"), str(r.get("epochs_run") or "-"),
                     *[num((r.get(split) or {}).get(k), ".4f") for split, k, _ in COMPARE_METRICS],
                     num(r.get("epoch_seconds"), ".2f")])
    diffs = config_differences(rows)
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        if diffs:
            lines += ["", "| setting | " + " | ".join(str(r["run"]) for r in rows) + " |",
                      "|---|" + "|".join("---" for _ in rows) + "|"]
            lines += [f"| {k} | " + " | ".join(json.dumps(v, default=str) for v in vals) + " |" for k, vals in diffs.items()]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]
    fmt_row = lambda row: "  ".join(v.ljust(w) if i < 4 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))  # noqa: E731
    lines = [fmt_row(header), fmt_row(["-" * w for w in widths]), *map(fmt_row, body)]
    if diffs:
        lines += ["", "settings that differ:"]
        lines += [f"  {k}: " + ", ".join(f"{r['run']}={json.dumps(v, default=str)}" for r, v in zip(rows, vals))
                  for k, vals in diffs.items()]
    else:
        lines += ["", "settings that differ: none"]
    return "\n".join(lines)
