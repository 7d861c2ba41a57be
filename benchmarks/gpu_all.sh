#!/usr/bin/env bash
# One prepared GPU session: install probsft (no deps; the GPU image has torch/transformers), then run
# every GPU benchmark, each under its own time limit, writing JSON results into $OUT (or ./gpu_out).
# Usage on a GPU machine, from the repository root:   bash benchmarks/gpu_all.sh
# Optional wheels for baselines (liger-kernel, cut-cross-entropy) are installed from .whl/ if present.
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
SITE=/tmp/site; mkdir -p $SITE
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE .whl/*.whl
fi
$PY -m pip install -q --no-deps --no-build-isolation --no-cache-dir --target $SITE . || echo "install of probsft failed"
export PYTHONPATH=$SITE:${PYTHONPATH:-}
run() {  # name, seconds, command...
  local name=$1 secs=$2; shift 2
  echo "=== $name (limit ${secs}s)"
  timeout "$secs" "$@" 2>&1 | tee "$OUT/$name.log"
  echo "=== $name exit ${PIPESTATUS[0]}"
}
RES=/tmp/gpu_results; mkdir -p $RES
$PY -c "import importlib.util as u; print('cut_cross_entropy', bool(u.find_spec('cut_cross_entropy')), 'liger_kernel', bool(u.find_spec('liger_kernel')))" | tee -a "$OUT/gpu.txt"
# the fused loss: ours (eager/compile, token/vocab), ours-cce (CCE per-token backend, every f),
# naive, Liger, CCE; objectives nll and alpha(10); N 8192 on the Qwen/Llama heads
run gpu_fused 170 $PY benchmarks/gpu_fused.py --out $RES/fused
# runner vs HF Trainer tokens/s (after the host-sync removal: one host read per step)
run gpu_finetune 100 $PY benchmarks/gpu_finetune.py --out $RES/finetune
# host syncs per step (CPU profiler count; must print 0 for the runner on any machine)
run profile_syncs 40 $PY benchmarks/profile_syncs.py --steps 4 --hf
run gpu_validate 160 $PY benchmarks/gpu_validate.py --out $RES/validate
# the results folders travel back as one archive (the device tool returns at most 8 files)
tar -czf "$OUT/results.tar.gz" -C $RES .
