"""`make bench-op`: the involution backends against the `unfold` formula (the official naive
version: unfold -> view -> multiply -> sum, `involution_ops.ops.unfold`) in one run.

For every shape and backend: forward time, forward+backward time, their speed in GMAC/s
(forward N*C*Ho*Wo*K*K multiply-adds, forward+backward three times that), and the peak extra
memory of forward+backward (above the inputs), each case in a fresh subprocess. Each case also
times a matrix product of the same dtype on the same device and threads (the 1x1 convolution of
that layer: (N*H*W, C) x (C, C), "sgemm" in float32), so the operator's speed is printed as a
fraction of what this machine's GEMM reaches at the same moment. Times are taken first, with the
allocator as training has it (freed buffers reused); memory is measured after, in one more run.
CPU memory is the peak resident set size (VmHWM, reset before the run) minus the resident size
before it, with glibc then told to map every buffer fresh and return it when freed; CUDA memory
is max_memory_allocated minus memory_allocated before. The table (`op_speed_table`) gives the
ratios against `unfold` and the verdicts against `TARGETS`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import involution_ops

from . import environment

KERNEL = 7
# name: (N, C, H, W, stride); K = 7, G = C / 16, padding 3: the RedNet-50 stages (and the stride-2
# involution opening stage 2) and a detection FPN level
SHAPES: dict[str, tuple[int, int, int, int, int]] = {
    "N8-C64-56x56": (8, 64, 56, 56, 1),
    "N8-C64-56x56-s2": (8, 64, 56, 56, 2),
    "N8-C128-28x28": (8, 128, 28, 28, 1),
    "N8-C256-14x14": (8, 256, 14, 14, 1),
    "N8-C512-7x7": (8, 512, 7, 7, 1),
    "N2-C256-200x336": (2, 256, 200, 336, 1),
}
BACKENDS = ("unfold", "reference", "cpu", "cuda")
PACKAGE_PARENT = Path(involution_ops.__file__).resolve().parents[1]  # the worker imports this same package

Shape = Sequence[int]  # (N, C, H, W, stride)


def out_size(size: int, stride: int, kernel: int = KERNEL) -> int:
    pad = kernel // 2
    return (size + 2 * pad - (kernel - 1) - 1) // stride + 1


def forward_macs(shape: Shape, kernel: int = KERNEL) -> int:
    n, c, h, w, stride = shape
    return n * c * out_size(h, stride, kernel) * out_size(w, stride, kernel) * kernel * kernel


# --------------------------------------------------------------------------- worker (one case per process)

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


def operator(backend: str, stride: int, kernel: int = KERNEL) -> Callable:
    """op(x, weight) of a backend, or of the unfold formula, at padding K // 2."""
    from involution_ops import involution
    from involution_ops.ops.unfold import involution_unfold

    pad = kernel // 2
    if backend == "unfold":
        return lambda x, weight: involution_unfold(x, weight, stride, pad, 1)
    return lambda x, weight: involution(x, weight, stride, pad, 1, backend=backend)


def measure_case(spec: dict) -> dict:
    """Times (ms), memory (MiB) and the same process's GEMM speed of one (device, backend, dtype, shape)."""
    import torch

    device, backend = torch.device(spec["device"]), spec["backend"]
    dtype = getattr(torch, spec["dtype"])
    n, c, h, w, stride = spec["shape"]
    ho, wo = out_size(h, stride), out_size(w, stride)
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, c, h, w, device=device, dtype=dtype, generator=gen)
    weight = torch.randn(n, c // 16, KERNEL, KERNEL, ho, wo, device=device, dtype=dtype, generator=gen)
    grad = torch.randn(n, c, ho, wo, device=device, dtype=dtype, generator=gen)
    op = operator(backend, stride)
    if backend != "unfold":
        op(x[:1, :16], weight[:1, :1].contiguous())  # builds/loads the kernel

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

def available_memory_mib() -> float:
    """MemAvailable of /proc/meminfo in MiB (what the shape budget is a fraction of)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def unfold_skips(shape: Shape, dtype_bytes: int, device: str, fraction: float) -> tuple[list[str], str]:
    """The unfold formula needs K*K copies of the input: skip what cannot fit instead of swapping or dying."""
    if device != "cpu":
        return [], ""
    copy_mib = forward_macs(shape) * dtype_bytes / 2**20  # one value per MAC
    budget = available_memory_mib() * fraction
    skips = [mode for mode, copies in (("fwd", 2), ("fwdbwd", 3)) if copies * copy_mib > budget]
    note = f"needs ~{3 * copy_mib / 1024:.1f} GiB, {budget / 1024:.1f} GiB allowed" if skips else ""
    return skips, note


def run_case(spec: dict, timeout: float) -> dict:
    """`measure_case` in a fresh process (its peak memory is its own); {"error": ...} when it fails."""
    path = os.environ.get("PYTHONPATH")
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_PARENT) + (os.pathsep + path if path else ""))
    try:
        proc = subprocess.run([sys.executable, "-m", __name__, "--worker", json.dumps(spec)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit {proc.returncode}: {tail[0][:160]}"}
    return json.loads(lines[-1])


def _row(device: str, shape_name: str, dims: Shape, backend: str, note: str, result: dict) -> dict:
    return dict(device=device, shape=shape_name, dims=list(dims), backend=backend, note=note or result.get("error", ""),
                **{k: v for k, v in result.items() if k != "error"})


def measure(devices: Sequence[str], shapes: dict[str, Shape], backends: Sequence[str], dtype: str = "float32",
            min_time: float = 0.5, max_repeat: int = 20, timeout: float = 600, memory_fraction: float = 0.6,
            case: Callable[[dict, float], dict] = run_case,
            log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)) -> list[dict]:
    """One row per (device, shape, backend the device runs), each measured by `case` (a subprocess
    by default). Where unfold cannot fit at the full batch, unfold and the device's kernel are
    also compared at batch 1 (shape name `<name>@N1`)."""
    import torch

    dtype_bytes = torch.empty(0, dtype=getattr(torch, dtype)).element_size()
    rows = []
    for device in devices:
        chosen = [b for b in backends if b in ("unfold", "reference", device)]
        for shape_name, shape in shapes.items():
            for backend in chosen:
                spec = dict(device=device, backend=backend, dtype=dtype, shape=list(shape),
                            min_time=min_time, max_repeat=max_repeat)
                note = ""
                if backend == "unfold":
                    spec["skip"], note = unfold_skips(shape, dtype_bytes, device, memory_fraction)
                log(f"[bench_op] {device} {shape_name} {backend} ...")
                rows.append(_row(device, shape_name, shape, backend, note, case(spec, timeout)))
                if backend == "unfold" and spec["skip"] and shape[0] > 1:
                    single = [1, *shape[1:]]
                    skips, single_note = unfold_skips(single, dtype_bytes, device, memory_fraction)
                    for compared in [b for b in chosen if b in ("unfold", device)]:
                        log(f"[bench_op] {device} {shape_name} at N=1 {compared} ...")
                        result = case(dict(spec, backend=compared, shape=single,
                                           skip=skips if compared == "unfold" else []), timeout)
                        rows.append(_row(device, f"{shape_name}@N1", single, compared,
                                         (single_note if compared == "unfold" else "")
                                         or "batch 1: unfold too big at full batch", result))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """The command line of `make bench-op` (scripts/bench_op.py)."""
    from . import op_speed_table

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
        print(json.dumps(measure_case(json.loads(args.worker))))
        return 0
    if args.json is not None and args.json.exists():
        parser.error(f"{args.json} exists; choose another path (results are never overwritten)")

    import torch

    devices = ["cpu"] if args.device in ("auto", "cpu") else []
    if args.device in ("auto", "cuda"):
        from involution_ops.ops import cuda as cuda_backend

        if torch.cuda.is_available() and cuda_backend.load_error() is None:
            devices.append("cuda")
        elif args.device == "cuda":
            parser.error(f"no usable CUDA backend: {cuda_backend.load_error() or 'no CUDA device'}")
    if "cpu" in devices and args.dtype == "float16":
        print("note: the CPU kernel computes float16 in float32 but PyTorch's own CPU ops are slow in float16")

    load_before = environment.load_average()
    rows = measure(devices, {name: SHAPES[name] for name in args.shapes}, args.backends, args.dtype,
                   args.min_time, args.max_repeat, args.timeout, args.memory_fraction)
    load_after = environment.load_average()
    op_speed_table.add_speed(rows)
    print(op_speed_table.render(rows, args.dtype, load_before, load_after))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "x") as out:
            json.dump(dict(dtype=args.dtype, kernel=KERNEL, torch=torch.__version__,
                           threads=torch.get_num_threads(), loadavg_before=load_before, loadavg_after=load_after,
                           rows=rows), out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
