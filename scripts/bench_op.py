#!/usr/bin/env python
"""Benchmark the involution backends against the `unfold` formula (the official
naive version: unfold -> view -> multiply -> sum) in one run.

For every shape and backend: forward time, forward+backward time, their speed in
GMAC/s (forward N*C*Ho*Wo*K*K multiply-adds, forward+backward three times that),
and the peak extra memory of forward+backward (above the inputs), each case in a
fresh subprocess. Each case also times a matrix product of the same dtype on the
same device and threads (the 1x1 convolution of that layer: (N*H*W, C) x (C, C),
"sgemm" in float32), so the operator's speed is printed as a fraction of what
this machine's GEMM reaches at the same moment. Times are taken first, with the allocator
as training has it (freed buffers reused); memory is measured after, in one more run. CPU memory is
the peak resident set size (VmHWM, reset before the run) minus the resident size before it, with
glibc then told to map every buffer fresh and return it when freed; CUDA memory is
max_memory_allocated minus memory_allocated before. Prints a table of ratios against `unfold`.

    python scripts/bench_op.py                      # CPU, and CUDA when available
    python scripts/bench_op.py --device cuda --dtype bfloat16
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name: (N, C, H, W, stride); K = 7, G = C / 16, padding 3: the RedNet-50 stages (and the stride-2
# involution opening stage 2) and a detection FPN level
SHAPES = {
    "N8-C64-56x56": (8, 64, 56, 56, 1),
    "N8-C64-56x56-s2": (8, 64, 56, 56, 2),
    "N8-C128-28x28": (8, 128, 28, 28, 1),
    "N8-C256-14x14": (8, 256, 14, 14, 1),
    "N8-C512-7x7": (8, 512, 7, 7, 1),
    "N2-C256-200x336": (2, 256, 200, 336, 1),
}
KERNEL = 7
BACKENDS = ("unfold", "reference", "cpu", "cuda")
TARGET_SPEEDUP = 10.0
TARGET_MEMORY = 0.10
TARGET_GEMM_SHARE = 0.25  # operator fwd+bwd GMAC/s as a share of the same run's GEMM GMAC/s


# --------------------------------------------------------------------------- worker (one case per process)

def _out_size(size: int, stride: int) -> int:
    pad = KERNEL // 2
    return (size + 2 * pad - (KERNEL - 1) - 1) // stride + 1


def _forward_macs(shape) -> int:
    n, c, h, w, stride = shape
    return n * c * _out_size(h, stride) * _out_size(w, stride) * KERNEL * KERNEL


def _unfold_formula(x, weight, padding, stride):
    import torch.nn.functional as F

    n, c = x.shape[:2]
    _, g, kh, kw, ho, wo = weight.shape
    cols = F.unfold(x, (kh, kw), padding=padding, stride=stride).view(n, g, c // g, kh * kw, ho, wo)
    return (cols * weight.view(n, g, 1, kh * kw, ho, wo)).sum(dim=3).view(n, c, ho, wo)


def _rss_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def _glibc_returns_freed_memory() -> None:
    """From here on glibc maps every buffer over 64 KiB fresh and unmaps it when it is freed, and it
    gives back what its heap holds now, so the RSS peak of the next run is what that run needs.
    Set only after the timings: fresh pages cost a page fault and a zero-fill on every call."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 65536)  # M_MMAP_THRESHOLD
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the peaks may hide memory the heap kept
        pass


def _worker(spec: dict) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    from involution_ops import involution

    device, backend = torch.device(spec["device"]), spec["backend"]
    dtype = getattr(torch, spec["dtype"])
    n, c, h, w, stride = spec["shape"]
    ho, wo = _out_size(h, stride), _out_size(w, stride)
    pad = KERNEL // 2
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, c, h, w, device=device, dtype=dtype, generator=gen)
    weight = torch.randn(n, c // 16, KERNEL, KERNEL, ho, wo, device=device, dtype=dtype, generator=gen)
    grad = torch.randn(n, c, ho, wo, device=device, dtype=dtype, generator=gen)

    if backend == "unfold":
        op = lambda a, b: _unfold_formula(a, b, pad, stride)  # noqa: E731
    else:
        op = lambda a, b: involution(a, b, stride, pad, 1, backend=backend)  # noqa: E731
        involution(x[:1, :16], weight[:1, :1].contiguous(), stride, pad, 1, backend=backend)  # builds/loads the kernel

    def forward():
        with torch.no_grad():
            op(x, weight)

    def forward_backward():
        a, b = x.detach().requires_grad_(True), weight.detach().requires_grad_(True)
        op(a, b).backward(grad)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(run) -> float:
        sync()
        start = time.perf_counter()
        run()
        sync()
        return time.perf_counter() - start

    def measure_memory(run) -> float:
        sync()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            timed(run)
            return (torch.cuda.max_memory_allocated(device) - before) / 2**20
        before = _rss_mib("VmRSS")
        _reset_peak_rss()
        run()
        return _rss_mib("VmHWM") - before

    def measure_time(run, first: float) -> float:
        if first > 4 * spec["min_time"]:
            return first  # a long first run is already a fair single measurement
        times = []
        while sum(times) < spec["min_time"] and len(times) < spec["max_repeat"]:
            times.append(timed(run))
        return sorted(times)[len(times) // 2]

    # the layer's 1x1 convolution as a GEMM, timed before and after the operator (the machine may be shared)
    gemm_a = torch.randn(n * h * w, c, device=device, dtype=dtype, generator=gen)
    gemm_b = torch.randn(c, c, device=device, dtype=dtype, generator=gen)

    def gemm():
        torch.mm(gemm_a, gemm_b)

    runs = [(mode, run) for mode, run in (("fwd", forward), ("fwdbwd", forward_backward))
            if mode not in spec.get("skip", ())]
    gemm_times = [measure_time(gemm, 0.0)]
    result = {}
    for mode, run in runs:
        first = timed(run)  # warm-up; for a long run also its one measurement
        result[mode + "_ms"] = measure_time(run, first) * 1000
    gemm_times.append(measure_time(gemm, 0.0))
    if device.type == "cpu":
        _glibc_returns_freed_memory()
    for mode, run in runs:
        result[mode + "_mib"] = measure_memory(run)
    result["gemm_gmacs"] = n * h * w * c * c / min(gemm_times) / 1e9
    result["threads"] = torch.get_num_threads()
    return result


# --------------------------------------------------------------------------- driver

def _available_mib() -> float:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def _unfold_skips(shape, dtype_bytes: int, device: str, fraction: float) -> tuple[list[str], str]:
    """The unfold formula needs K*K copies of the input: skip what cannot fit instead of swapping or dying."""
    if device != "cpu":
        return [], ""
    copy_mib = _forward_macs(shape) * dtype_bytes / 2**20  # one value per MAC
    budget = _available_mib() * fraction
    skips = [mode for mode, copies in (("fwd", 2), ("fwdbwd", 3)) if copies * copy_mib > budget]
    note = f"needs ~{3 * copy_mib / 1024:.1f} GiB, {budget / 1024:.1f} GiB allowed" if skips else ""
    return skips, note


def _run_case(spec: dict, timeout: float) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            capture_output=True, text=True, timeout=timeout, env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit {proc.returncode}: {tail[0][:160]}"}
    return json.loads(lines[-1])


def _single_image_comparison(device, shape_name, shape, backends, spec, args, dtype_bytes) -> list[dict]:
    """When unfold cannot fit at the full batch, compare unfold and the kernel at batch 1 (ratios are per image)."""
    single = (1, *shape[1:])
    skips, note = _unfold_skips(single, dtype_bytes, device, args.memory_fraction)
    rows = []
    for backend in [b for b in backends if b in ("unfold", device)]:
        case = dict(spec, backend=backend, shape=single, skip=skips if backend == "unfold" else [])
        print(f"[bench_op] {device} {shape_name} at N=1 {backend} ...", file=sys.stderr, flush=True)
        result = _run_case(case, args.timeout)
        rows.append(dict(device=device, shape=f"{shape_name}@N1", backend=backend,
                         note=(note if backend == "unfold" else "") or result.get("error", "") or "batch 1: unfold too big at full batch",
                         **{k: v for k, v in result.items() if k != "error"}))
    return rows


def _fmt(value, spec="{:.1f}") -> str:
    return "-" if value is None else spec.format(value)


def _ratio(base, value) -> str:
    return "-" if base is None or value is None or value == 0 else f"{base / value:.1f}x"


def _share(value, base) -> str:
    return "-" if base is None or value is None or base <= 0 else f"{100 * value / base:.1f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CPU, plus CUDA when a GPU and CuPy are there")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64", "float16", "bfloat16"))
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds of timed runs per measurement")
    parser.add_argument("--max-repeat", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per case")
    parser.add_argument("--memory-fraction", type=float, default=0.6,
                        help="skip unfold cases whose estimated need exceeds this share of MemAvailable")
    parser.add_argument("--json", type=Path, help="also write the results here (refuses to overwrite)")
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0
    if args.json is not None and args.json.exists():
        parser.error(f"{args.json} exists; choose another path (results are never overwritten)")

    import torch

    sys.path.insert(0, str(ROOT))
    devices = ["cpu"] if args.device in ("auto", "cpu") else []
    if args.device in ("auto", "cuda"):
        from involution_ops.ops import cuda as cuda_backend

        if torch.cuda.is_available() and cuda_backend.load_error() is None:
            devices.append("cuda")
        elif args.device == "cuda":
            parser.error(f"no usable CUDA backend: {cuda_backend.load_error() or 'no CUDA device'}")
    dtype_bytes = torch.empty(0, dtype=getattr(torch, args.dtype)).element_size()
    if "cpu" in devices and args.dtype == "float16":
        print("note: the CPU kernel computes float16 in float32 but PyTorch's own CPU ops are slow in float16")

    load_before = os.getloadavg()
    rows = []
    for device in devices:
        backends = [b for b in args.backends if b in ("unfold", "reference", device)]
        for shape_name in args.shapes:
            shape = SHAPES[shape_name]
            for backend in backends:
                spec = dict(device=device, backend=backend, dtype=args.dtype, shape=shape,
                            min_time=args.min_time, max_repeat=args.max_repeat)
                note = ""
                if backend == "unfold":
                    spec["skip"], note = _unfold_skips(shape, dtype_bytes, device, args.memory_fraction)
                print(f"[bench_op] {device} {shape_name} {backend} ...", file=sys.stderr, flush=True)
                result = _run_case(spec, args.timeout)
                rows.append(dict(device=device, shape=shape_name, backend=backend, note=note or result.get("error", ""),
                                 **{k: v for k, v in result.items() if k != "error"}))
                if backend == "unfold" and spec["skip"] and shape[0] > 1:
                    rows += _single_image_comparison(device, shape_name, shape, backends, spec, args, dtype_bytes)

    for row in rows:
        _add_speed(row)
    load_after = os.getloadavg()
    _print_table(rows, args.dtype, load_before, load_after)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "x") as out:
            json.dump(dict(dtype=args.dtype, kernel=KERNEL, torch=torch.__version__,
                           threads=torch.get_num_threads(), loadavg_before=load_before, loadavg_after=load_after,
                           rows=rows), out, indent=1)
    return 0


def _add_speed(row: dict) -> None:
    """GMAC/s of the operator and its share of the GEMM speed measured in the same process."""
    shape = SHAPES[row["shape"].split("@")[0]]
    if row["shape"].endswith("@N1"):
        shape = (1, *shape[1:])
    macs = _forward_macs(shape)
    row["fwd_gmac"] = macs / 1e9
    for mode, factor in (("fwd", 1), ("fwdbwd", 3)):
        if row.get(mode + "_ms"):
            row[mode + "_gmacs"] = factor * macs / (row[mode + "_ms"] / 1000) / 1e9
            if row.get("gemm_gmacs"):
                row[mode + "_gemm_share"] = row[mode + "_gmacs"] / row["gemm_gmacs"]


def _print_table(rows: list[dict], dtype: str, load_before, load_after) -> None:
    import torch

    gemm = {"float32": "sgemm", "float64": "dgemm"}.get(dtype, f"{dtype} gemm")
    print(f"\ninvolution K={KERNEL}, G=C/16, padding 3, {dtype}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads, {os.cpu_count()} CPUs; load average (1, 5, 15 min) "
          f"{' '.join(f'{v:.2f}' for v in load_before)} before, {' '.join(f'{v:.2f}' for v in load_after)} after "
          "(a load above the thread count means other processes shared the CPUs).")
    print(f"Ratios are against `unfold` on the same device (speed-up = unfold time / time; memory = peak extra "
          f"memory of fwd+bwd / unfold's). GMAC/s: forward {KERNEL * KERNEL} MAC per output value, fwd+bwd 3x; "
          f"'{gemm}' = GMAC/s of torch.mm (N*H*W, C) x (C, C) timed in the same process, '% {gemm}' = "
          "fwd+bwd GMAC/s / that.")
    header = ("device", "shape", "backend", "GMAC", "fwd ms", "fwd+bwd ms", "fwd GMAC/s", "fwd+bwd GMAC/s", gemm,
              f"% {gemm}", "fwd+bwd MiB", "fwd speed-up", "fwd+bwd speed-up", "memory", "note")
    table = [header]
    baselines = {(r["device"], r["shape"]): r for r in rows if r["backend"] == "unfold"}
    verdicts = []
    for r in rows:
        base = baselines.get((r["device"], r["shape"]), {})
        table.append((
            r["device"], r["shape"], r["backend"], _fmt(r.get("fwd_gmac"), "{:.3f}"), _fmt(r.get("fwd_ms")),
            _fmt(r.get("fwdbwd_ms")), _fmt(r.get("fwd_gmacs"), "{:.2f}"), _fmt(r.get("fwdbwd_gmacs"), "{:.2f}"),
            _fmt(r.get("gemm_gmacs")), _fmt(r.get("fwdbwd_gemm_share") and 100 * r["fwdbwd_gemm_share"], "{:.0f}%"),
            _fmt(r.get("fwdbwd_mib"), "{:.0f}"),
            _ratio(base.get("fwd_ms"), r.get("fwd_ms")) if r["backend"] != "unfold" else "1.0x",
            _ratio(base.get("fwdbwd_ms"), r.get("fwdbwd_ms")) if r["backend"] != "unfold" else "1.0x",
            _share(r.get("fwdbwd_mib"), base.get("fwdbwd_mib")) if r["backend"] != "unfold" else "100%",
            r.get("note", ""),
        ))
        if r["backend"] == "cpu" and r["device"] == "cpu":
            speed = (base.get("fwdbwd_ms") or 0) / r["fwdbwd_ms"] if r.get("fwdbwd_ms") else None
            memory = r["fwdbwd_mib"] / base["fwdbwd_mib"] if base.get("fwdbwd_mib") and "fwdbwd_mib" in r else None
            if speed and memory is not None:
                ok = speed >= TARGET_SPEEDUP and memory <= TARGET_MEMORY
                verdicts.append(f"{r['shape']}: cpu kernel fwd+bwd {speed:.1f}x faster than unfold "
                                f"(target >= {TARGET_SPEEDUP:.0f}x), {100 * memory:.1f}% of its peak extra memory "
                                f"(target <= {100 * TARGET_MEMORY:.0f}%): {'PASS' if ok else 'FAIL'}")
            elif not any(other["shape"] == r["shape"] + "@N1" for other in rows):
                verdicts.append(f"{r['shape']}: cpu kernel target not measurable (unfold skipped or failed)")
        if r["backend"] == r["device"] and r.get("fwdbwd_gemm_share") is not None:
            share = r["fwdbwd_gemm_share"]
            verdicts.append(f"{r['shape']}: {r['device']} kernel fwd+bwd {r['fwdbwd_gmacs']:.2f} GMAC/s = "
                            f"{100 * share:.0f}% of {gemm} {r['gemm_gmacs']:.1f} GMAC/s "
                            f"(target >= {100 * TARGET_GEMM_SHARE:.0f}%): "
                            f"{'PASS' if share >= TARGET_GEMM_SHARE else 'FAIL'}")
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for index, row in enumerate(table):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    sys.exit(main())
