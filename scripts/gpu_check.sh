#!/usr/bin/env bash
# The one prepared check for a lent GPU machine (run from the repository root):
#   bash scripts/gpu_check.sh
# 1. the CUDA kernels against the float64 reference in every dtype (self-contained, no pytest needed);
# 2. tests/test_op_cuda.py when pytest is importable;
# 3. scripts/bench_op.py on the GPU (float32, then bfloat16);
# and a short summary table last. Needs torch with CUDA and CuPy (cupy-cuda12x or -13x); no network,
# no OpenMMLab. Meant to finish in under 5 minutes.
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

echo "== CUDA kernels vs reference, every dtype"
timeout 150 "$PYTHON" - "$OUT/verify.json" <<'PY'
import json, sys, time
import torch
from involution_ops import involution
from involution_ops.ops import cuda
from involution_ops.ops.reference import involution_reference

if not torch.cuda.is_available() or cuda.load_error():
    print("SKIP:", cuda.load_error() or "no CUDA device"); json.dump({}, open(sys.argv[1], "w")); sys.exit(3)

# (n, c, g, h, w, k, stride, padding, dilation): odd/even sizes, strides 1-3, dilation 2, K 1-7, G 1-16
CASES = [(1, 4, 1, 8, 8, 3, 1, 1, 1), (3, 8, 2, 9, 7, 5, 2, 2, 1), (1, 16, 4, 11, 10, 7, 3, 3, 1),
         (3, 32, 16, 6, 9, 1, 1, 0, 1), (1, 8, 4, 13, 12, 3, 2, 2, 2), (2, 64, 4, 15, 17, 7, 1, 3, 1),
         (1, 4, 2, 7, 9, 7, 2, 3, 1), (2, 256, 16, 28, 28, 7, 1, 3, 1)]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
summary, failures = {}, 0
for dtype in DTYPES:
    worst, start = 0.0, time.time()
    for n, c, g, h, w, k, s, p, d in CASES:
        ho, wo = (h + 2 * p - d * (k - 1) - 1) // s + 1, (w + 2 * p - d * (k - 1) - 1) // s + 1
        gen = torch.Generator(device="cuda").manual_seed(0)
        for layout in ("contiguous", "channels_last", "noncontiguous"):
            x = torch.randn(n, c, h, 2 * w, device="cuda", generator=gen).to(dtype)
            x = x[..., ::2] if layout == "noncontiguous" else x[..., :w].contiguous()
            if layout == "channels_last":
                x = x.contiguous(memory_format=torch.channels_last)
            weight = torch.randn(n, g, k, k, wo, ho, device="cuda", generator=gen).to(dtype).transpose(-1, -2)
            grad = torch.randn(n, c, ho, wo, device="cuda", generator=gen).to(dtype)
            xg, wg = x.detach().requires_grad_(True), weight.detach().requires_grad_(True)
            out = involution(xg, wg, s, p, d, backend="cuda")
            got = (out, *torch.autograd.grad(out, (xg, wg), grad))
            x64, w64 = x.double().requires_grad_(True), weight.double().requires_grad_(True)
            ref = involution_reference(x64, w64, s, p, d)
            want = (ref, *torch.autograd.grad(ref, (x64, w64), grad.double()))
            for a, b in zip(got, want):
                scale = max(b.abs().max().item(), 1.0)
                err = (a.double() - b).abs().max().item() / scale
                worst = max(worst, err)
    torch.cuda.synchronize()
    limit = {torch.float64: 1e-12, torch.float32: 1e-5}.get(dtype, 2 * torch.finfo(dtype).eps)
    ok = worst <= limit
    failures += not ok
    summary[str(dtype).replace("torch.", "")] = dict(max_rel_error=worst, limit=limit, ok=ok, seconds=time.time() - start)
    print(f"{dtype}: max error / max |ref| = {worst:.2e} (limit {limit:.0e}) {'PASS' if ok else 'FAIL'}")
with torch.autocast("cuda", dtype=torch.float16):
    auto = involution(torch.randn(1, 16, 8, 8, device="cuda"), torch.randn(1, 1, 3, 3, 8, 8, device="cuda"), 1, 1, 1)
summary["autocast_fp16_output"] = str(auto.dtype)
print("autocast fp16 output dtype:", auto.dtype)
json.dump(summary, open(sys.argv[1], "w"))
sys.exit(1 if failures or auto.dtype != torch.float16 else 0)
PY
verify=$?
if [ $verify -eq 3 ]; then
  echo "gpu_check: no usable GPU or CuPy here, nothing to check"
  exit 2
fi
[ $verify -eq 0 ] || status=1

echo "== pytest tests/test_op_cuda.py"
if "$PYTHON" -c "import pytest" 2>/dev/null; then
  timeout 120 "$PYTHON" -m pytest tests/test_op_cuda.py -q -x -p no:cacheprovider -o addopts="" 2>&1 | tail -5
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
else
  echo "pytest not installed: skipped (the self-contained check above covers the same ground)"
fi

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
verify = load("verify.json")
print("| check | result |")
print("|---|---|")
for dtype, r in verify.items():
    if isinstance(r, dict):
        print(f"| cuda vs reference {dtype} | {'PASS' if r['ok'] else 'FAIL'} (rel. err {r['max_rel_error']:.1e}) |")
if "autocast_fp16_output" in verify:
    print(f"| autocast fp16 output | {verify['autocast_fp16_output']} |")
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
