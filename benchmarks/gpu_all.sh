#!/usr/bin/env bash
# The one prepared GPU session (issue 26), <= 8 min on an H100: install probsft (no deps; the GPU
# image has torch/transformers/trl), then benchmarks/gpu_bench.py, which writes ONE results.json and
# ONE results.md into $OUT (default ./gpu_out): the fused loss (ours vs naive, cut-cross-entropy,
# Liger FLCE, TRL's chunked head; nll, p, alpha(5), deft at N 8192) and the runner vs HF Trainer.
# Usage on a GPU machine, from the repository root:   bash benchmarks/gpu_all.sh [gpu_bench args]
# Optional baseline wheels (cut-cross-entropy, liger-kernel) are installed from .whl/ if present
# (the GPU machine has no network; prepare them where pip works, and carry .whl/ along:
#   pip download --no-deps -d .whl cut-cross-entropy liger-kernel); a missing one is a row
# "not installed" in the table.
# The scaled-up continuum experiment (benchmarks/gpu_validate.py, ~4 min) is not part of the 8 min:
# GPU_VALIDATE=1 bash benchmarks/gpu_all.sh runs it afterwards into $OUT/validate.
# CPU check of the same code path (tests/benchmarks/test_gpu_bench.py runs it):
#   python benchmarks/gpu_bench.py --dry-run --out /tmp/gpu_dry
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"; export OUT
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
SITE=/tmp/site; mkdir -p $SITE
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE .whl/*.whl
fi
$PY -m pip install -q --no-deps --no-build-isolation --no-cache-dir --target $SITE . || echo "install of probsft failed"
export PYTHONPATH=$SITE:${PYTHONPATH:-}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
# the sections keep their own budgets (--fused-budget 240 s, --finetune-budget 120 s; ~30 s of
# install and imports before) and rewrite the JSON/markdown after every row; the outer limit only
# guards against a hang
timeout 450 $PY benchmarks/gpu_bench.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_bench.log"
echo "gpu_bench exit ${PIPESTATUS[0]}"
if [ "${GPU_VALIDATE:-0}" = 1 ]; then
  timeout 300 $PY benchmarks/gpu_validate.py --out "$OUT/validate" 2>&1 | tee "$OUT/gpu_validate.log"
fi
