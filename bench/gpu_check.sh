#!/usr/bin/env bash
# One GPU device call (~8 minutes): equality of the fast path with eager greedy decoding, then the
# decode benchmark on a 27B-wide model at reduced depth, then the full 62-layer 27B shape.
# Writes bench/results/model_decode_<gpu>_*.json. Installs nothing beyond the repo's requirements.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
OUT_DIR="${OUT:-bench/results}"
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv | tee "$OUT_DIR/gpu_check_nvidia_smi.txt"
GPU=$(python -c "import torch, re; print(re.sub(r'[^a-z0-9]+', '', torch.cuda.get_device_name().lower()))")
run() { echo "== $*"; timeout "$1" "${@:2}" 2>&1 | tee -a "$OUT_DIR/gpu_check_${GPU}.log"; }
# 1. fast path vs eager, greedy, random weights, fixed seed: 27B width, 2 layers, short runs.
run 150 python bench/model_decode.py --model 27b --layers 2 --batches 1,8 --prompt-len 128 --new-tokens 32 \
  --out "$OUT_DIR/model_decode_${GPU}_27b_l2.json"
# 2. 27B width at 8 layers, all batch sizes (iterate here; decode time scales with depth).
run 150 python bench/model_decode.py --model 27b --layers 8 --batches 1,8,32,64 \
  --out "$OUT_DIR/model_decode_${GPU}_27b_l8.json"
# 3. full 62-layer 27B shape: the committed figures (54 GB of bf16 weights).
run 240 python bench/model_decode.py --model 27b --batches 1,8,32,64 --new-tokens 32 \
  --out "$OUT_DIR/model_decode_${GPU}_27b.json"
ls -l "$OUT_DIR"
