"""Static evidence for the CUDA kernels, without a GPU: compile every instantiation with
the NVRTC CuPy uses, read ptxas' resource report and the SASS (nvdisasm), and count.

Per kernel: registers, spills, static shared memory, the hot loop's instructions per
multiply-add, 64-bit division calls, and the instructions issued per output along the
interior path (the method is in METHOD, printed into the report). The same figures are
computed for the naive baseline with the shapes compiled in (cuda_baseline) and for the
generic kernels. `make cuda-static` writes them to results/cuda_static.md.

Stdlib and torch only at import; NVRTC and nvdisasm are found when called.
"""
from __future__ import annotations

import argparse
import functools
import sys
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from . import cuda, cuda_baseline, nvrtc, sass

ARCHES = ("sm_80", "sm_90")
REPORT_ARCH = "sm_90"  # H100
PTXAS_VERBOSE = ("-Xptxas=-v",)
FMA_OPCODES = ("FFMA", "DFMA")
HEADLINE = dict(k=7, s=1)  # the done-when figures: float32, K = 7, stride 1, sm_90

# Interior-path trip count of each loop, in address order, for the shapes of the report (K = 7, 16 channels
# per group, every tap inside the image). 0 marks a loop off the interior path (the generic kernels' code for
# kernel_size <= 0). The generic kernels unroll their runtime-bound tap and channel loops by 4 and 16; for
# K = 7 and 16 channels the unrolled loop runs once per enclosing iteration and the remainder is inline.
GENERIC_TRIPS = {
    "forward": lambda k: [0, 0, 1, k, 1],  # zero-fill (2), grid-stride, tap rows, tap columns (x4)
    "backward_input": lambda k: [1, 0, k, 1],  # grid-stride, kernel_w <= 0 path, tap rows, tap columns (x4)
    "backward_weight": lambda k: [1, 1],  # grid-stride, channels (x16)
}

METHOD = """\
How the figures are counted (`involution_ops/ops/cuda_static.py`):

- **Registers, spills, shared memory**: ptxas' own report (NVRTC with `-Xptxas=-v`). A spill is any byte of
  spill store or load; static shared memory only (no kernel uses dynamic shared memory).
- **Hot loop**: in the SASS from `nvdisasm`, a loop is a branch back to an earlier label. The hot loop is the
  innermost loop that contains floating-point multiply-adds (`FFMA`/`DFMA`; the one with the most if several).
  *Instructions per multiply-add* = instructions in its body / multiply-add instructions in its body. For the
  fast kernels that loop is the tap-row loop (all 16 channels, K taps, P pixels unrolled inside); for the
  baseline, whose taps are fully unrolled, it is the grid-stride loop (one output per iteration).
- **Division calls**: `CALL`s to the compiler's 64-bit division/remainder subroutines (`__internal_*_div/rem_*64`)
  in the kernel, counted statically (each sits behind a 32-bit fast path in the generic kernels).
- **Instructions per output (interior path)**: every instruction of the kernel body (the called subroutines
  excluded) is weighted by the product of the trip counts of the loops that contain it; the sum is what one
  thread issues, and one warp instruction issues it for 32 threads. Divided by the outputs one thread computes
  (fast forward and grad-input: 16 channels x P pixels; fast grad-weight: K x K taps x P pixels; baseline and
  generic: 1) and multiplied by (warps per block x 32) / threads per block (1 for full warps, 2 for a 16-thread
  block), it is the warp instructions issued per 32 outputs, i.e. per output and lane, the unit the issue uses.
  Trip counts: fast kernels 16 for the staging loop (one iteration per channel) and K for the tap-row loop
  (stride-2 grad-input: each parity class's loop runs its class's number of tap rows, and the code after the
  barrier, split among the 4 classes, counts a quarter per thread); baseline 1 (one output per thread); generic
  as listed in `GENERIC_TRIPS` (the loops for kernel_size <= 0 excluded). Straight-line code is counted once,
  both sides of every branch included (border guards, the 64-bit slow path's call set-up, the generic kernels'
  unrolled-loop remainders): an upper bound for the fast and generic kernels; for the baseline, whose only
  branches skip a tap outside the image, it is the interior path exactly. Full tiles are assumed: on an image
  smaller than a tile (RedNet's 7x7 stage against 16x16 tiles) part of each block idles, which only a GPU
  timing shows.
"""


@dataclass(frozen=True)
class KernelFigures:
    family: str  # fast, generic, baseline
    role: str
    label: str
    resources: sass.Resources
    hot_loop_instructions: int
    hot_loop_fmas: int
    division_calls: int
    instructions_per_output: float
    outputs_per_thread: int

    @property
    def instructions_per_mac(self) -> float:
        return self.hot_loop_instructions / self.hot_loop_fmas if self.hot_loop_fmas else math.inf

    @property
    def spill_bytes(self) -> int:
        return self.resources.spill_stores + self.resources.spill_loads


class StaticAnalysisError(RuntimeError):
    pass


@functools.lru_cache(maxsize=None)
def compile_module(source: str, expressions: tuple[str, ...], arch: str, library: str | None = None):
    """CUBIN for `arch` with ptxas' resource report in the log (cached: tests and the report share it)."""
    return nvrtc.compile_program(source, list(expressions), arch, cuda.COMPILE_OPTIONS + PTXAS_VERBOSE, library)


def require_nvdisasm() -> str:
    path = sass.find_nvdisasm()
    if path is None:
        raise StaticAnalysisError("nvdisasm not found: pip install nvidia-cuda-nvdisasm (the `test` extra)")
    return path


def _body(function: sass.Function) -> int:
    """Index after the kernel's own code: the called subroutines ($__internal_*) follow it."""
    starts = [index for label, index in function.labels.items() if label.startswith("$")]
    return min(starts) if starts else len(function.instructions)


def hot_loop(function: sass.Function) -> tuple[int, int]:
    """(instructions, multiply-adds) of the innermost loop with multiply-adds."""
    best = (0, 0, 0)
    body = _body(function)
    loops = [(a, b) for a, b in function.loops() if b < body]
    for a, b in loops:
        inner = any(a <= c and d <= b and (c, d) != (a, b) and _fmas(function, c, d) for c, d in loops)
        fmas = _fmas(function, a, b)
        if fmas and not inner and fmas > best[1]:
            best = (b - a + 1, fmas, a)
    return best[0], best[1]


def _fmas(function: sass.Function, first: int, last: int) -> int:
    return sum(i.opcode.startswith(FMA_OPCODES) for i in function.instructions[first : last + 1])


def interior_instructions(function: sass.Function, trips: list[float], classes: int = 1) -> float:
    """Instructions one thread issues on the interior path: each instruction weighted by its loops' trip counts.
    With `classes` > 1 (stride-2 grad-input), the code after the block barrier is split between that many
    thread classes, so it counts 1/classes per thread."""
    body = _body(function)
    loops = [(a, b) for a, b in function.loops() if b < body]
    if len(loops) != len(trips):
        raise StaticAnalysisError(
            f"{function.name}: {len(loops)} loops in the SASS, the model expects {len(trips)} "
            f"(loops at {loops}); the compiler changed the code shape: update the trip counts"
        )
    barriers = [i for i, instruction in enumerate(function.instructions[:body]) if instruction.opcode.startswith("BAR")]
    split = barriers[0] if classes > 1 and barriers else body
    total = 0.0
    for index in range(body):
        weight = 1.0 if index <= split else 1.0 / classes
        for (a, b), trip in zip(loops, trips):
            if a <= index <= b:
                weight *= trip
        total += weight
    return total


def stride2_input_trips(function: sass.Function, k: int, p: int) -> list[int]:
    """Staging (16), then each parity class's tap-row loop: a class with tap columns NB has NB*P*16 multiply-adds
    per iteration and runs NA times, NA fixed by the row parity (classes with NA = 1 have no loop)."""
    pad = (k - 1) // 2
    rows = [(k - 1 - ((py + pad) & 1)) // 2 + 1 for py in (0, 1)]
    looping = [na for na in rows if na > 1]
    body = _body(function)
    loops = [(a, b) for a, b in function.loops() if b < body]
    trips, seen = [cuda.FAST_CHANNELS], {}
    for a, b in loops[1:]:
        columns = _fmas(function, a, b) // (cuda.FAST_CHANNELS * p)
        index = seen[columns] = seen.get(columns, -1) + 1
        if index >= len(looping):
            raise StaticAnalysisError(f"{function.name}: unexpected loop at {a}..{b}: update the class model")
        trips.append(looping[index])
    return trips


def division_calls(function: sass.Function) -> int:
    return sum(1 for target in function.calls() if ("div" in target or "rem" in target) and "64" in target)


def _figures(family, role, label, function, resources, trips, outputs_per_thread, threads, classes=1) -> KernelFigures:
    warps = -(-threads // 32)
    per_output = interior_instructions(function, trips, classes) * (warps * 32 / threads) / outputs_per_thread
    loop_instructions, loop_fmas = hot_loop(function)
    return KernelFigures(
        family, role, label, resources, loop_instructions, loop_fmas, division_calls(function), per_output,
        outputs_per_thread,
    )


def _lookup(compiled, functions, expression):
    name = compiled.lowered[expression]
    resources = sass.parse_resources(compiled.log)
    if name not in functions or name not in resources:
        raise StaticAnalysisError(f"{expression}: not found in the CUBIN or in ptxas' report")
    return functions[name], resources[name]


def backend_figures(dtype: torch.dtype, arch: str, nvdisasm: str, library: str | None = None) -> list[KernelFigures]:
    """Every fast and generic kernel of `dtype` (one NVRTC compile, as CuPy does)."""
    expressions = tuple(cuda.name_expressions(dtype))
    compiled = compile_module(cuda.kernel_source(), expressions, arch, library)
    functions = sass.disassemble(compiled.image, nvdisasm)
    found = []
    for role in cuda.ROLES:
        function, resources = _lookup(compiled, functions, cuda.generic_expression(role, dtype))
        trips = GENERIC_TRIPS[role](HEADLINE["k"])
        found.append(_figures("generic", role, f"generic {role}", function, resources, trips, 1, cuda.THREADS_PER_BLOCK))
    for role, k, s, bits in cuda.fast_instances(dtype):
        function, resources = _lookup(compiled, functions, cuda.fast_expression(role, dtype, k, s, bits))
        th, tw, p = cuda.fast_tile(k, s, dtype, role)
        outputs = k * k * p if role == "backward_weight" else cuda.FAST_CHANNELS * p
        label = f"fast {role} K{k} s{s} int{bits}"
        if role == "backward_input" and s == 2:
            trips, classes = stride2_input_trips(function, k, p), 4
        else:
            trips, classes = [cuda.FAST_CHANNELS, k], 1
        found.append(_figures("fast", role, label, function, resources, trips, outputs, th * tw // p, classes))
    return found


def baseline_figures(arch: str, nvdisasm: str, library: str | None = None, batch: int = 8) -> list[KernelFigures]:
    """The naive constant-shape kernels at RedNet-50's four 7x7 stride-1 stage shapes, float32."""
    found = []
    for stage, geometry in cuda_baseline.rednet50_geometries(batch).items():
        for role, kernel in cuda_baseline.KERNELS.items():
            source = cuda_baseline.kernel_source(role, torch.float32, geometry)
            compiled = compile_module(source, (kernel,), arch, library)
            function, resources = _lookup(compiled, sass.disassemble(compiled.image, nvdisasm), kernel)
            label = f"baseline {role} {stage} (C={geometry.c}, {geometry.h}px)"
            found.append(_figures("baseline", role, label, function, resources, [1], 1, cuda_baseline.THREADS_PER_BLOCK))
    return found


def headline(figures: list[KernelFigures], role: str) -> KernelFigures:
    """The fast float32 K = 7 stride-1 32-bit-index kernel of `role`."""
    label = f"fast {role} K{HEADLINE['k']} s{HEADLINE['s']} int32"
    return next(f for f in figures if f.label == label)


def _row(f: KernelFigures) -> str:
    r = f.resources
    return (
        f"| {f.label} | {r.registers} | {f.spill_bytes} | {r.shared_memory} | {f.hot_loop_instructions} / "
        f"{f.hot_loop_fmas} = {f.instructions_per_mac:.2f} | {f.division_calls} | {f.instructions_per_output:.1f} |"
    )


_HEADER = (
    "| kernel | registers | spill bytes | static smem (B) | hot loop: instructions / multiply-adds = per MAC "
    "| 64-bit division calls | warp instructions per output (interior) |\n|---|---|---|---|---|---|---|"
)


def report(library: str | None = None, nvdisasm: str | None = None) -> str:
    """The markdown of results/cuda_static.md."""
    nvdisasm = nvdisasm or require_nvdisasm()
    library = library or nvrtc.find_library()
    if library is None:
        raise StaticAnalysisError("libnvrtc not found: pip install nvidia-cuda-nvrtc-cu12 (the `test` extra)")
    major, minor = nvrtc.version(library)
    ours = backend_figures(torch.float32, REPORT_ARCH, nvdisasm, library)
    baseline = baseline_figures(REPORT_ARCH, nvdisasm, library)
    lines = [
        "# CUDA kernels: static figures (no GPU)",
        "",
        f"Generated by `make cuda-static` (scripts/cuda_static.py): NVRTC {major}.{minor} "
        f"(`{Path(library).name}`, the one cupy-cuda12x loads), {REPORT_ARCH} (H100), SASS from nvdisasm. "
        "Do not edit by hand.",
        "",
        "## RedNet's 7x7 stride-1 involution, float32: fast kernels against the naive baseline and the generic kernels",
        "",
        "| role | fast: instr./MAC | baseline (min over stages): instr./MAC | generic: instr./MAC "
        "| fast: warp instr./output | baseline (min over stages) | generic | fast / baseline |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for role in cuda.ROLES:
        fast = headline(ours, role)
        base = [f for f in baseline if f.role == role]
        best = min(base, key=lambda f: f.instructions_per_output)
        generic = next(f for f in ours if f.family == "generic" and f.role == role)
        lines.append(
            f"| {role} | {fast.instructions_per_mac:.2f} | {min(f.instructions_per_mac for f in base):.2f} | "
            f"{generic.instructions_per_mac:.2f} | {fast.instructions_per_output:.1f} | "
            f"{best.instructions_per_output:.1f} | {generic.instructions_per_output:.1f} | "
            f"{fast.instructions_per_output / best.instructions_per_output:.2f} |"
        )
    lines += [
        "",
        "Done-when (issue 20): at most 2 instructions per multiply-add in the hot loop of forward and grad-weight, "
        "2.5 in grad-input; no 64-bit division call in any fast kernel; no spills; warp instructions per output at "
        "most half the baseline's in each role. `tests/ops/test_cuda_static.py` asserts these on every run.",
        "",
        f"## Every kernel, float32, {REPORT_ARCH}",
        "",
        _HEADER,
        *(_row(f) for f in ours + baseline),
        "",
        "Fast tiles (rows x columns per block, pixels per thread): "
        + "; ".join(f"K{k} s{s}{' double' if wide else ''}: {th}x{tw}, P={p}" for (k, s, wide), (th, tw, p)
                    in cuda.FAST_TILES.items())
        + ". Stride-2 grad-input (input pixels per block, 4 parity classes): "
        + "; ".join(f"K{k}{' double' if wide else ''}: {th}x{tw}, P={p}"
                    for (k, wide), (th, tw, p) in cuda.FAST_INPUT_STRIDE2_TILES.items())
        + ".",
        "",
        "## Registers, spills and shared memory of every instantiation",
        "",
        "| dtype | arch | kernels | max registers | spill bytes (all kernels) | max static smem (B) |",
        "|---|---|---|---|---|---|",
    ]
    for dtype in cuda.TYPE_NAMES:
        for arch in ARCHES:
            compiled = compile_module(cuda.kernel_source(), tuple(cuda.name_expressions(dtype)), arch, library)
            resources = sass.parse_resources(compiled.log)
            used = [resources[compiled.lowered[e]] for e in cuda.name_expressions(dtype)]
            lines.append(
                f"| {str(dtype).replace('torch.', '')} | {arch} | {len(used)} | {max(r.registers for r in used)} | "
                f"{sum(r.spill_stores + r.spill_loads for r in used)} | {max(r.shared_memory for r in used)} |"
            )
    lines += ["", "## Method", "", METHOD]
    return "\n".join(lines) + "\n"


def write_report(path: Path, library: str | None = None, nvdisasm: str | None = None) -> str:
    text = report(library, nvdisasm)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    """`make cuda-static`, `involution-cuda-static`: write the report (default results/cuda_static.md
    of the current folder, the checkout when make runs it)."""
    parser = argparse.ArgumentParser(description="The CUDA kernels compiled with NVRTC for sm_90, disassembled "
                                                 "with nvdisasm and counted against the naive constant-shape "
                                                 "baseline and the generic kernels; no GPU needed.")
    parser.add_argument("--output", type=Path, default=Path("results") / "cuda_static.md")
    args = parser.parse_args(argv)
    try:
        write_report(args.output)
    except StaticAnalysisError as error:
        print(f"cuda-static: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0
