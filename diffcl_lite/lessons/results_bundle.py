"""The results that notebook 09 reads, shipped inside the package (introduced in notebook 09).

``results/`` at the repository root holds the full files of ``python -m diffcl_lite verdict`` and
``ablate`` (every run, with its history). A notebook opened in Colab, Binder or a grader's sandbox
has the package but not the repository, so a slim copy of what notebook 09 reads lives in
``diffcl_lite/lessons/results/``: the verdict payload without its runs, the tiktok-dev table's
rows, the published anchors and the tuners' finalists. It is a projection of the files in ``results/``, nothing more:
``python -m diffcl_lite.lessons.results_bundle`` rewrites it, and a test fails when the two differ.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from ..errors import DiffCLError
from ..fileutil import atomic_write_bytes

log = logging.getLogger(__name__)

#: where the packaged copy lives
BUNDLE_DIR = Path(__file__).resolve().parent / "results"
#: file name -> the keys of its JSON object that notebook 09 reads (None: the whole object)
BUNDLED: dict[str, tuple[str, ...] | None] = {
    "verdict.json": ("command", "seeds", "lr_grid", "train", "base_flags", "size", "regimes", "extra_tables", "claims"),
    "ablation_tiktok-dev.json": ("command", "rows"),
    "anchors.json": None,
    # the tuner's choice for each model (section 7's "weight at the grid's edge" diagnostic)
    "tune_synthetic.json": ("command", "finalists"),
    "tune_synthetic-hard.json": ("command", "finalists"),
}

__all__ = ["BUNDLE_DIR", "BUNDLED", "slim", "bundle_payloads", "write_bundle", "find_results", "main"]


def slim(payload: Any, keys: tuple[str, ...] | None) -> Any:
    """The part of a results file that the notebook reads (``keys`` of a JSON object; all if None)."""
    if keys is None:
        return payload
    if not isinstance(payload, dict):
        raise DiffCLError(f"expected a JSON object with keys {', '.join(keys)}; got {type(payload).__name__}.")
    return {k: payload[k] for k in keys if k in payload}


def bundle_payloads(results_dir: str | Path) -> dict[str, Any]:
    """``{file name: slim payload}`` for the files of ``results_dir`` that the bundle holds (missing ones skipped)."""
    src = Path(results_dir)
    out: dict[str, Any] = {}
    for name, keys in BUNDLED.items():
        path = src / name
        if not path.is_file():
            continue
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise DiffCLError(f"{path}: not valid JSON ({exc}); regenerate it with the command at the foot "
                              f"of {path.with_suffix('.md').name}.") from None
        out[name] = slim(payload, keys)
    if "verdict.json" not in out:
        raise DiffCLError(f"{src}: no verdict.json; run `python -m diffcl_lite verdict --out {src}` first.")
    return out


def _encode(payload: Any) -> bytes:
    return (json.dumps(payload, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()


def write_bundle(results_dir: str | Path = "results", bundle_dir: str | Path = BUNDLE_DIR) -> list[Path]:
    """Rewrite the packaged copy from ``results_dir``; each file is replaced atomically. Returns the paths."""
    dst = Path(bundle_dir)
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for name, payload in bundle_payloads(results_dir).items():
        atomic_write_bytes(dst / name, _encode(payload))
        written.append(dst / name)
    log.info("wrote %s", ", ".join(str(p) for p in written))
    return written


def find_results(start: str | Path | None = None) -> Path:
    """The ``results/`` folder holding ``verdict.json``: the nearest above ``start`` (default: the
    working directory), else the copy shipped in the package."""
    here = Path.cwd() if start is None else Path(start)
    for folder in [here, *here.resolve().parents]:
        if (folder / "results" / "verdict.json").is_file():
            return folder / "results"
    if (BUNDLE_DIR / "verdict.json").is_file():
        return BUNDLE_DIR
    raise DiffCLError(f"no results/verdict.json above {here} and none shipped in {BUNDLE_DIR}; run "
                      "`python -m diffcl_lite verdict --out results` in the repository, or pass RESULTS_DIR.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffcl_lite.lessons.results_bundle",
                                     description="Rewrite the results copy that notebook 09 reads from results/.")
    parser.add_argument("--results", default="results", help="the folder of the full results files [results]")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the copy is stale")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.check:
        stale = [n for n, p in bundle_payloads(args.results).items()
                 if not (BUNDLE_DIR / n).is_file() or (BUNDLE_DIR / n).read_bytes() != _encode(p)]
        if stale:
            log.error("stale in %s: %s (fix: python -m diffcl_lite.lessons.results_bundle)", BUNDLE_DIR, ", ".join(stale))
            return 1
        return 0
    write_bundle(args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
