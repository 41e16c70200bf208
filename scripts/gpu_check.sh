#!/usr/bin/env bash
# The one prepared check for a lent GPU machine, from the repository root:
#   PYTHON=python bash scripts/gpu_check.sh        (`make gpu-check` runs it with the project's python)
# 1. the timings, `python -m involution_ops.bench.gpu_report` (involution_ops/bench/gpu_speed.py): the fast
#    CUDA kernels, the generic fallback, the official-style baseline, the unfold formula and torch's depthwise
#    conv2d at the RedNet-50 stage shapes, forward and backward, against the memory-bandwidth bound; a RedNet-50
#    training step against torchvision's ResNet-50 (float32, bfloat16 autocast) -> results/gpu.md;
# 2. pytest tests/ops/test_op_cuda.py: the CUDA kernels against the reference in every dtype.
# Outputs go to $GPU_CHECK_OUT (default: a new temporary folder): gpu.md, gpu.json, test_op_cuda.txt/.xml.
# Needs torch with CUDA, CuPy (cupy-cuda12x or -13x), pytest; torchvision for the ResNet-50 row; no network,
# no OpenMMLab. Each step has its own time limit; the whole run stays under 6 minutes.
set -u
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
read -r -a OPTS <<< "${GPU_CHECK_OPTS:-}"
OUT="${GPU_CHECK_OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package, installed or not
status=0

echo "== environment"
"$PYTHON" -c "
import platform, sys, torch
print('python', platform.python_version(), '| torch', torch.__version__, '| cuda', torch.version.cuda)
if sys.argv[1] == 'cuda' and not torch.cuda.is_available():
    sys.exit('gpu_check: no CUDA device: nothing to check here')
print('device:', torch.cuda.get_device_name(0) if sys.argv[1] == 'cuda' else 'cpu (dry run)')
from involution_ops.ops import cuda
print('CuPy kernels:', cuda.load_error() or 'loadable')" "$DEVICE" || exit 2

echo "== timings -> results/gpu.md"
timeout 180 "$PYTHON" -m involution_ops.bench.gpu_report --device "$DEVICE" --out results/gpu.md \
  --json "$OUT/gpu.json" ${OPTS[@]+"${OPTS[@]}"} || status=1
[ -f results/gpu.md ] && cp results/gpu.md "$OUT/gpu.md"

echo "== pytest tests/ops/test_op_cuda.py (CUDA kernels vs reference, every dtype)"
if "$PYTHON" -c "import pytest" 2>/dev/null; then
  # -o addopts="": the pyproject's options (pytest-timeout among them) are not needed; timeout(1) bounds the run
  timeout 150 "$PYTHON" -m pytest tests/ops/test_op_cuda.py -q -rfEs -p no:cacheprovider -o addopts="" \
    -W "ignore::pytest.PytestConfigWarning" --junitxml="$OUT/test_op_cuda.xml" > "$OUT/test_op_cuda.txt" 2>&1
  [ $? -eq 0 ] || status=1
  tail -25 "$OUT/test_op_cuda.txt"
else
  echo "gpu_check: pytest is not importable: pip install pytest (the test extra), then run again"; status=1
fi

echo "gpu_check status: $([ $status -eq 0 ] && echo OK || echo FAILED) (outputs in $OUT)"
exit $status
