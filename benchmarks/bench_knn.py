"""Benchmark the blockwise kNN item-item graph (run by hand, not a test).

Times ``diffcl_lite.graphs.knn_graph`` on seeded random float32 features of the sizes of the
public datasets (Clothing 23,033 x 4096 image features, Baby 7,050 x 4096, TikTok 6,710 x 128)
and reports wall time and the process's peak resident memory (``resource.getrusage``; on Linux
``ru_maxrss`` is in KiB and covers the whole process: Python, torch and the features).

    python benchmarks/bench_knn.py                      # the three default sizes
    python benchmarks/bench_knn.py --sizes 23033x4096 --k 10 --block-size 2048 --threads 2

Target on a 2-core CPU: 23,033 x 4096 with k=10 in <= 30 s and <= 4 GB peak RSS.
"""
from __future__ import annotations

import argparse
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffcl_lite.graphs import knn_graph  # noqa: E402
from diffcl_lite.lessons.measures.graphs import graph_summary  # noqa: E402

log = logging.getLogger("bench_knn")


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024


def random_features(n: int, d: int, seed: int, chunk: int = 4096) -> np.ndarray:
    """Seeded float32 features (n, d) generated chunk by chunk (no float64 n x d temporary)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        out[start:stop] = rng.standard_normal((stop - start, d), dtype=np.float32)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["23033x4096", "7050x4096", "6710x128"],
                        help="n_items x dim pairs, e.g. 23033x4096")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--block-size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-header", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if len(args.sizes) > 1:
        # one child process per size, so that each peak RSS is that size's own
        log.info("torch %s, %d threads, device %s", torch.__version__, torch.get_num_threads(), args.device)
        log.info("%-12s %8s %10s %14s %12s", "size", "k", "seconds", "peak RSS MiB", "edges")
        common = ["--k", str(args.k), "--block-size", str(args.block_size), "--seed", str(args.seed),
                  "--device", args.device, "--no-header"]
        if args.threads:
            common += ["--threads", str(args.threads)]
        for size in args.sizes:
            subprocess.run([sys.executable, __file__, "--sizes", size, *common], check=True)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.no_header:
        log.info("torch %s, %d threads, device %s", torch.__version__, torch.get_num_threads(), args.device)
        log.info("%-12s %8s %10s %14s %12s", "size", "k", "seconds", "peak RSS MiB", "edges")
    for size in args.sizes:
        n, d = (int(v) for v in size.lower().split("x"))
        feats = random_features(n, d, args.seed)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        g = knn_graph(feats, k=args.k, block_size=args.block_size, device=args.device)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        edges = graph_summary(g)["edges"]
        log.info("%-12s %8d %10.2f %14.0f %12d", size, args.k, seconds, peak_rss_mib(), edges)
        del feats, g
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
