#!/usr/bin/env bash
# One prepared GPU check (run by hand on a CUDA machine from the repository root):
# CUDA tests, then LightGCN and DiffCL on synthetic-baby with epoch/eval time and peak GPU memory.
set -uo pipefail
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/diffcl_gpu}"; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_graphs.py tests/test_diffusion.py tests/test_model_training.py tests/test_evaluation.py 2>&1 | tail -5
timeout 300 python3 benchmarks/bench_train.py --dataset synthetic-baby --models lightgcn diffcl --epochs 3 --device cuda --json "$OUT/gpu_synthetic_baby.json"
timeout 120 python3 -m diffcl_lite train --dataset synthetic-baby --model diffcl --device auto --epochs 4 --quiet --json "$OUT/train_synthetic_baby_diffcl.json" 2>&1 | tail -4
