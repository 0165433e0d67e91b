#!/usr/bin/env bash
# The GPU checks and timings in one device call (under 10 minutes on an H100 or H200).
#   here:   bench/device_wheels.sh          (once: the transformers wheel the GPU box lacks, in .whl/)
#   device: bash bench/gpu_check.sh         (carry .whl; results land in $OUT, else bench/results)
# 1. the compiled fast path against eager greedy tokens on a tiny Gemma 3 (CPU and CUDA), and both
#    paths against eager on a 27B-wide model in float32 (random weights leave near-tied logits, so
#    in bf16 any change of kernel may flip a token: float32 is the exactness check);
# 2. the full 62-layer 27B shape in bf16, 1-64 concurrent requests, through the own decode loop (one
#    compiled decoder layer, one CUDA graph per step);
# 3. the same shape at 1 and 64 requests through compiled transformers `generate` (the other path).
# Each run reports compile time, graph count and its token agreement with eager.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PWD" || exit 1
fi
PY=python3; [ -x .venv/bin/python ] && PY=.venv/bin/python
export PYTHONUNBUFFERED=1
OUT_DIR="${OUT:-bench/results}"
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv | tee "$OUT_DIR/gpu_check_nvidia_smi.txt"
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
GPU=$("$PY" -c "import torch, re; print(re.sub(r'[^a-z0-9]+', '', torch.cuda.get_device_name().lower()))")
LOG="$OUT_DIR/gpu_check_${GPU}.log"
run() { echo "== $*" | tee -a "$LOG"; timeout "$1" "${@:2}" 2>&1 | tee -a "$LOG"; }
run 60 "$PY" -m pytest -q -p no:cacheprovider --noconftest tests/integration/model/test_fast_path.py
for decode in own generate; do
  run 45 "$PY" bench/model_decode.py --model 27b --layers 2 --dtype float32 --batches 1,8 --prompt-len 128 \
    --new-tokens 16 --decode "$decode" $([ "$decode" = own ] && echo --cuda-graph) \
    --out "$OUT_DIR/model_decode_${GPU}_27b_l2_fp32_${decode}.json"
done
run 230 "$PY" bench/model_decode.py --model 27b --batches 1,8,32,64 --new-tokens 32 --decode own --cuda-graph \
  --out "$OUT_DIR/model_decode_${GPU}_27b_own.json"
run 190 "$PY" bench/model_decode.py --model 27b --batches 1,64 --new-tokens 32 \
  --out "$OUT_DIR/model_decode_${GPU}_27b_generate.json"
ls -l "$OUT_DIR"
