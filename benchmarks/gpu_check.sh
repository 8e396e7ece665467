#!/usr/bin/env bash
# GPU check for one CUDA device (an H200 in mind), random weights at real sizes:
#  - batching (first): SD 1.5 (512) and SDXL (1024) with their real text encoders, batches of
#    1/2/4/8 compatible jobs through Engine.generate_batch: images per second, peak memory,
#    ratio to a batch of 1;
#  - options: seconds per image and peak GPU memory for SD 1.5, SDXL and FLUX.1 with each
#    memory and speed option, and a batch of N images vs. single jobs.
# See benchmarks/gpu_check.py.
#
#   OUT=/some/folder benchmarks/gpu_check.sh      # results: $OUT/gpu_check.{txt,json}
#   PYTHON=/path/to/python benchmarks/gpu_check.sh
#   benchmarks/gpu_check.sh --sections batching --batch-sizes 1,2,4,8,16   # one section
#
# Needs torch with CUDA and diffusers (the engine extra); no network. Bounded to about
# 8 minutes: the Python side stops starting cases after BUDGET_S seconds (default 420) and a
# hard timeout of 480 s stops it whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
if ! "$PYTHON" -c "import torch, diffusers; assert torch.cuda.is_available()" 2>"$OUT/setup.txt"; then
    echo "gpu_check: needs torch with a CUDA device and diffusers for $PYTHON" | tee -a "$OUT/setup.txt" >&2
    exit 2
fi
"$PYTHON" -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, torch.cuda.get_device_name(0))" | tee "$OUT/versions.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$OUT/versions.txt" 2>/dev/null || true
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout 480 "$PYTHON" benchmarks/gpu_check.py \
    --out "$OUT" --budget-s "${BUDGET_S:-420}" "$@" 2>&1 | tee "$OUT/log.txt"
