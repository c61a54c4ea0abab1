#!/usr/bin/env bash
# The GPU checks in one call, under 8 minutes, for a machine with an NVIDIA GPU (the device tool's H100/H200):
#   1. onnxruntime-gpu really runs CUDA (preload_dlls loads CUDA 13 / cuDNN 9 from the nvidia-* wheels);
#   2. the CUDA provider tests (tests/service/test_runtime.py, which run CUDA paths only where CUDA works);
#   3. every committed model on CUDAExecutionProvider within 1e-3 of CPU (bench/gpu_parity.py);
#   4. the serving benchmark on CUDA: pixelserve --device cuda against Triton (bench/vs_triton.py) when the
#      [bench] environment is there, else pixelserve alone under wrk.
# Results go to $OUT (the device tool's output folder) or ./gpu-check, one log per step plus summary.txt.
#
#   bench/gpu_check.sh                 # after: pip install -e '.[serve,dev]' (wheels carried with the tree)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check}"
mkdir -p "$out"
py="${PYTHON:-python3}"
summary="$out/summary.txt"
: >"$summary"

step() {  # step NAME TIMEOUT_S COMMAND...: run, log, record the status and the time it took
  local name=$1 limit=$2
  shift 2
  local started=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "$name: rc=$rc in $((SECONDS - started)) s" | tee -a "$summary"
  tail -n 15 "$out/$name.log" | sed 's/^/    /' >>"$summary"
  return 0
}

step nvidia-smi 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step providers 60 "$py" -c "
import onnxruntime as ort
ort.preload_dlls()
print(ort.__version__, ort.get_available_providers())
import numpy as np, pathlib
model = sorted(pathlib.Path('models').glob('*/*/model.onnx'))[0]
s = ort.InferenceSession(str(model), providers=['CUDAExecutionProvider', 'CPUExecutionProvider'])
print('session providers:', s.get_providers())
assert s.get_providers()[0] == 'CUDAExecutionProvider', 'CUDA did not start'
"
step runtime-tests 180 "$py" -m pytest -q tests/service/test_runtime.py -p no:cacheprovider
step parity 120 "$py" -m bench.gpu_parity --model-repository models --tolerance 1e-3
if [ -x .venv-bench/bin/perf_analyzer ]; then
  step serving 240 "$py" -m bench.vs_triton --rounds 1 --interval-ms 2000 --wrk-seconds 4 \
    --pixelserve-arg=--device=cuda --json "$out/serving.json"
else
  step serving 240 "$py" -m bench.serving_wrk --device cuda --seconds 8 --json "$out/serving.json"
fi
cat "$summary"
