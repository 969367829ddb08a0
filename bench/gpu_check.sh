#!/usr/bin/env bash
# Issue 14's GPU figures in one run of under 8 minutes on one H200 (16 cores), untrained ViT-B/32:
#   1. extraction of 20,000 generated 500x375 JPEGs (q90), decoded on the GPU, beside the PIL-decode
#      path on the same files, the decoder alone and the model alone, with the features' cosine;
#   2. the same for 50,000 32x32 JPEGs (CIFAR size);
#   3. the paper-protocol search + refit at ImageNet's shape (1,281,167 x 1024, 1000 classes);
#   4. one fit at that shape with TF32 matmuls (not clipprobe's default): its time per iteration.
# Each step has its own time limit (90 + 50 + 270 + 45 s); the log goes to $OUT/gpu_check.log.
#
# The device machine has torch, torchvision, scikit-learn, pyarrow but not open_clip, and no network.
# Once, in the repo root of the session's checkout, fetch its wheels (and keep them out of git):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
# then run it with the device tool: command "bash bench/gpu_check.sh", carry [".whl"], timeout_s 540.
set -u
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "could not install the carried wheels in .whl/"; exit 1; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
LOG="${OUT:-/tmp}/gpu_check.log"

step() {  # step LIMIT COMMAND...: run with a time limit, say how it ended
  local limit=$1; shift
  echo; echo "== $* (limit ${limit}s)"
  timeout "$limit" "$@" 2>&1 | grep -v -e "extract bench" -e "No pretrained weights loaded"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 124 ] && echo "== stopped at its ${limit}s limit" || echo "== exit $rc"
}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import os, torch, torchvision, open_clip; print('torch', torch.__version__, '| torchvision', \
torchvision.__version__, '| open_clip', open_clip.__version__, '|', os.cpu_count(), 'cores')"
  step 90 python3 bench/extract.py --device cuda --jpeg 500x375 --images 20000 --no-canonical
  step 50 python3 bench/extract.py --device cuda --jpeg 32x32 --images 50000 --no-canonical
  step 270 python3 bench/imagenet_probe.py
  step 45 python3 bench/imagenet_probe.py --fit 1 --max-iter 20 --tf32
  date -u
} 2>&1 | tee "$LOG"
