#!/usr/bin/env bash
# The one prepared check for a lent GPU machine (run from the repository root):
#   bash scripts/gpu_check.sh
# 1. pytest on tests/ops/test_op_cuda.py: the CUDA kernels compiled to PTX and run against the float64
#    reference in every dtype, autograd, autocast, torch.compile;
# 2. scripts/bench_op.py on the GPU (float32, then bfloat16);
# and a short summary table last. Needs torch with CUDA, CuPy (cupy-cuda12x or -13x) and pytest;
# no network, no OpenMMLab, no pytest-timeout (the time limits are set here). Meant to finish in
# under 5 minutes.
set -u
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
OUT="${GPU_CHECK_OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0

echo "== environment"
"$PYTHON" - <<'PY' || { echo "torch is not importable"; exit 1; }
import platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda)
print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NONE")
try:
    import cupy
    print("cupy", cupy.__version__, "| CUDA runtime", cupy.cuda.runtime.runtimeGetVersion())
except Exception as exc:
    print("cupy: NOT importable:", exc)
PY
"$PYTHON" -c "
import sys, torch
from involution_ops.ops import cuda
problem = 'no CUDA device' if not torch.cuda.is_available() else cuda.load_error()
sys.exit(f'gpu_check: {problem}: nothing to check here' if problem else 0)" || exit 2
"$PYTHON" -c "import pytest" 2>/dev/null || {
  echo "gpu_check: pytest is not importable: pip install pytest (the test extra), then run again"; exit 1; }

echo "== pytest tests/ops/test_op_cuda.py (CUDA kernels vs reference, every dtype)"
# -o: the pyproject's addopts and pytest-timeout setting are not needed here; timeout(1) bounds the run
timeout 270 "$PYTHON" -m pytest tests/ops/test_op_cuda.py -q -rfEs -p no:cacheprovider -o addopts="" \
  -W "ignore::pytest.PytestConfigWarning" --junitxml="$OUT/test_op_cuda.xml" 2>&1 | tee "$OUT/test_op_cuda.txt" | tail -25
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== benchmark"
timeout 200 "$PYTHON" scripts/bench_op.py --device cuda --min-time 0.2 --json "$OUT/bench_fp32.json" || status=1
timeout 100 "$PYTHON" scripts/bench_op.py --device cuda --dtype bfloat16 --backends unfold cuda --min-time 0.2 \
  --json "$OUT/bench_bf16.json" || status=1

echo
echo "== summary (results in $OUT)"
"$PYTHON" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def load(name):
    path = out / name
    return json.loads(path.read_text()) if path.exists() else {}
print("| check | result |")
print("|---|---|")
junit = out / "test_op_cuda.xml"
if junit.exists():
    import xml.etree.ElementTree as ET
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    print(f"| pytest tests/ops/test_op_cuda.py | {passed} passed, {counts['failures']} failed, "
          f"{counts['errors']} errors, {counts['skipped']} skipped |")
    for case in suite.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            print(f"| FAILED {case.get('name')} | see {out}/test_op_cuda.txt |")
else:
    print("| pytest tests/ops/test_op_cuda.py | no result (timed out or did not start) |")
for name in ("bench_fp32.json", "bench_bf16.json"):
    bench = load(name)
    rows = [r for r in bench.get("rows", []) if r["device"] == "cuda"]
    base = {r["shape"]: r for r in rows if r["backend"] == "unfold"}
    for r in rows:
        if r["backend"] != "cuda":
            continue
        b = base.get(r["shape"], {})
        speed = f"{b['fwdbwd_ms'] / r['fwdbwd_ms']:.1f}x" if b.get("fwdbwd_ms") and r.get("fwdbwd_ms") else "-"
        mem = f"{100 * r['fwdbwd_mib'] / b['fwdbwd_mib']:.1f}%" if b.get("fwdbwd_mib") and r.get("fwdbwd_mib") is not None else "-"
        fwd = r.get("fwd_ms"); fb = r.get("fwdbwd_ms")
        print(f"| {bench['dtype']} {r['shape']} cuda | fwd {fwd:.2f} ms, fwd+bwd {fb:.2f} ms, {speed} vs unfold, memory {mem} of unfold |"
              if fwd is not None and fb is not None else f"| {bench['dtype']} {r['shape']} cuda | {r.get('note') or 'no result'} |")
PY
echo "gpu_check status: $([ $status -eq 0 ] && echo OK || echo FAILED)"
exit $status
