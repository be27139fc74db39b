"""Epoch time, evaluation time and peak memory of MF, LightGCN and DiffCL (run by hand, not a test).

    python benchmarks/bench_train.py --dataset synthetic-tiktok --models mf lightgcn diffcl --epochs 2
    python benchmarks/bench_train.py --dataset synthetic-baby --device cuda --json out.json
    python benchmarks/bench_train.py --dataset mmrec:PATH/TO/tiktok-dev --models lightgcn diffcl \
        --threads 1 --no-breakdown --config '{"view_steps": 2}'

``--config`` overrides DiffCLConfig fields (JSON). With the breakdown on, every DiffCL step runs
one extra propagation to time it, so compare epoch times across models with ``--no-breakdown``;
the last line prints each model's epoch time relative to LightGCN's in the same run.

For DiffCL it also reports where a training step's time goes: propagation (all views through
LightGCN + item-item graph), the loss terms (views, InfoNCE, alignment, denoising), backward and
the optimiser step. Targets on a 2-core CPU: TikTok size DiffCL <= 4 s/epoch, LightGCN <= 1 s,
evaluation <= 2 s; Baby size DiffCL <= 12 s/epoch, evaluation <= 5 s, peak RSS <= 4 GB.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from diffcl_lite import datasets  # noqa: E402
from diffcl_lite.evaluation import evaluate  # noqa: E402
from diffcl_lite.model import DiffCLConfig, build_model  # noqa: E402
from diffcl_lite.training import BPRSampler  # noqa: E402
from diffcl_lite.utils import get_device, seed_everything  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def bench(name: str, data, device: torch.device, epochs: int, batch_size: int, breakdown: bool,
          config: dict | None = None) -> dict:
    seed_everything(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    model = build_model(name, data, DiffCLConfig(**(config or {})), device=device)
    sync(device)
    build_s = time.perf_counter() - t0
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = BPRSampler(data, batch_size, seed=0)
    epoch_times, parts = [], {"propagate": 0.0, "loss_terms": 0.0, "backward": 0.0, "step": 0.0}
    for _ in range(epochs):
        model.train()
        sync(device)
        t = time.perf_counter()
        for u, p, n in sampler.epoch():
            u, p, n = (torch.as_tensor(a, device=device) for a in (u, p, n))
            if breakdown and name == "diffcl":
                sync(device); a = time.perf_counter()
                model.view_embeddings()
                sync(device); b = time.perf_counter()
                parts["propagate"] += b - a
            sync(device); a = time.perf_counter()
            terms = model.loss(u, p, n)
            sync(device); b = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            terms["total"].backward()
            sync(device); c = time.perf_counter()
            opt.step()
            sync(device); d = time.perf_counter()
            parts["loss_terms"] += b - a
            parts["backward"] += c - b
            parts["step"] += d - c
        sync(device)
        epoch_times.append(time.perf_counter() - t)
    t = time.perf_counter()
    metrics = evaluate(model, data, "valid")
    sync(device)
    eval_s = time.perf_counter() - t
    out = {
        "model": name, "dataset": data.name, "device": str(device), "build_seconds": round(build_s, 3),
        "epoch_seconds": [round(x, 3) for x in epoch_times], "eval_seconds": round(eval_s, 3),
        "valid_recall@20": round(metrics["recall@20"], 5), "peak_rss_gb": round(peak_rss_gb(), 3),
        "threads": torch.get_num_threads(),
    }
    if breakdown and name == "diffcl":
        n = epochs
        # loss_terms includes a second propagation; subtract it to get the CL/alignment/diffusion share
        out["config"] = config or {}
        out["per_epoch_breakdown_s"] = {
            "propagation (views, item graph)": round(parts["propagate"] / n, 3),
            "views + InfoNCE + alignment + denoising + BPR": round((parts["loss_terms"] - parts["propagate"]) / n, 3),
            "backward": round(parts["backward"] / n, 3),
            "optimizer step": round(parts["step"] / n, 3),
        }
    if device.type == "cuda":
        out["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="synthetic-tiktok")
    ap.add_argument("--models", nargs="+", default=["mf", "lightgcn", "diffcl"])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-breakdown", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--config", default="{}", help="DiffCLConfig overrides as JSON, e.g. '{\"view_steps\": 2}'")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    t = time.perf_counter()
    data = datasets.load(args.dataset)
    print(f"{data!r} loaded in {time.perf_counter() - t:.1f}s on {device}", flush=True)
    results = []
    for name in args.models:
        r = bench(name, data, device, args.epochs, args.batch_size, not args.no_breakdown, json.loads(args.config))
        print(json.dumps(r), flush=True)
        results.append(r)
    base = [min(r["epoch_seconds"]) for r in results if r["model"] == "lightgcn"]
    if base:
        ratios = {r["model"]: round(min(r["epoch_seconds"]) / base[0], 2) for r in results}
        print(json.dumps({"epoch_time_vs_lightgcn (best epoch of each)": ratios}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
