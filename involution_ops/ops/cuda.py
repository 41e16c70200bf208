"""CUDA backend: kernels from csrc/ compiled by CuPy (NVRTC), once per dtype and
device, launched on PyTorch's current stream.

Two families: the fast tiled kernels (csrc/involution_fast.cuh) for RedNet's
shapes, and the generic one-thread-per-output kernels (csrc/involution_cuda.cu)
for every other case. forward / backward_input / backward_weight take
kernels="auto" (the dispatch), "fast" (error where none applies) or "generic". `choose_kernel` picks one from the shapes, strides and
dtype and says why when it falls back; it needs neither CuPy nor a GPU.

CuPy is imported only when a CUDA tensor reaches the operator; CuPy 13 and 14,
cupy-cuda12x and cupy-cuda13x all work (only RawModule, get_function,
ExternalStream and Device are used).
"""
from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import torch

CSRC = Path(__file__).resolve().parent / "csrc"
KERNELS = ("forward_kernel", "backward_input_kernel", "backward_weight_kernel")
ROLES = ("forward", "backward_input", "backward_weight")
TYPE_NAMES = {
    torch.float32: "float",
    torch.float64: "double",
    torch.float16: "involution::half_t",
    torch.bfloat16: "involution::bf16_t",
}
COMPILE_OPTIONS: tuple[str, ...] = ()  # NVRTC defaults (C++17 on CUDA 12/13); CuPy may add its own
THREADS_PER_BLOCK = 256
MAX_BLOCKS = 65535 * 32  # grid-stride loops cover the rest

# Fast kernels: (K, stride, double accumulators) -> (tile rows TH, tile columns TW, pixels per thread P).
# Sized so that the 16-channel staged tile stays under 48 KB of static shared memory (NVRTC fails above it)
# and the accumulators fit the registers without spilling (P = 2 for double).
FAST_TILES: dict[tuple[int, int, bool], tuple[int, int, int]] = {
    (7, 1, False): (16, 16, 4),
    (3, 1, False): (16, 32, 4),
    (7, 2, False): (8, 8, 2),
    (3, 2, False): (8, 16, 4),
    (7, 1, True): (8, 16, 2),
    (3, 1, True): (8, 32, 2),
    (7, 2, True): (4, 8, 2),
    (3, 2, True): (4, 16, 2),
}
# Stride-2 grad-input: (K, double accumulators) -> (TH, TW, P) input pixels; 4 parity classes of
# (TH/2) x (TW/2/P) threads each (a multiple of 32, so that a class is whole warps).
FAST_INPUT_STRIDE2_TILES: dict[tuple[int, bool], tuple[int, int, int]] = {
    (7, False): (16, 32, 4),
    (3, False): (16, 32, 4),
    (7, True): (16, 32, 2),
    (3, True): (16, 32, 2),
}
FAST_CHANNELS = 16  # channels per group of the fast kernels
FAST_STRIDES = {"forward": (1, 2), "backward_input": (1, 2), "backward_weight": (1, 2)}
INDEX_TYPES = {32: "int", 64: "long long"}
MAX_GRID_YZ = 65535
INT32_MAX = 2**31 - 1

_lock = threading.Lock()
_modules: dict[tuple[int, torch.dtype], object] = {}
_import_error: str | None = None
_checked = False


def _tile_table() -> str:
    def entry(struct: str, arguments: str, th: int, tw: int, p: int) -> str:
        return f"template <> struct {struct}<{arguments}> {{ enum {{ TH = {th}, TW = {tw}, P = {p} }}; }};"

    def flag(wide: bool) -> str:
        return "true" if wide else "false"

    tiles = [entry("FastTile", f"{k}, {s}, {flag(wide)}", *t) for (k, s, wide), t in FAST_TILES.items()]
    inputs = [entry("FastInputTile", f"{k}, {flag(wide)}", *t) for (k, wide), t in FAST_INPUT_STRIDE2_TILES.items()]
    return "".join(
        f"#define {name} \\\n" + " \\\n".join(lines) + "\n"
        for name, lines in (("INVOLUTION_FAST_TILES", tiles), ("INVOLUTION_FAST_INPUT_TILES", inputs))
    )


def kernel_source() -> str:
    """The CUDA source with the local headers inlined (NVRTC then needs no include path)."""
    source = (CSRC / "involution_cuda.cu").read_text()

    def inline(match: re.Match) -> str:
        return (CSRC / match.group(1)).read_text().replace("#pragma once\n", "", 1)

    return _tile_table() + re.sub(r'#include "([\w.]+)"', inline, source)


def fast_expression(role: str, dtype: torch.dtype, k: int, s: int, index_bits: int) -> str:
    return f"involution::fast_{role}_kernel<{TYPE_NAMES[dtype]}, {k}, {s}, {INDEX_TYPES[index_bits]}>"


def generic_expression(role: str, dtype: torch.dtype) -> str:
    return f"involution::{role}_kernel<{TYPE_NAMES[dtype]}>"


def fast_instances(dtype: torch.dtype) -> list[tuple[str, int, int, int]]:
    """(role, K, stride, index bits) of every fast instantiation."""
    return [
        (role, k, s, bits)
        for role in ROLES
        for k in (3, 7)
        for s in FAST_STRIDES[role]
        for bits in INDEX_TYPES
    ]


def name_expressions(dtype: torch.dtype) -> list[str]:
    """Every kernel one NVRTC compile for `dtype` instantiates: the generic ones, then the fast ones."""
    generic = [generic_expression(role, dtype) for role in ROLES]
    return generic + [fast_expression(role, dtype, k, s, bits) for role, k, s, bits in fast_instances(dtype)]


def fast_tile(k: int, s: int, dtype: torch.dtype, role: str = "forward") -> tuple[int, int, int]:
    """(TH, TW, P) of a fast kernel: TH x TW pixels per block (grad-input: of the input), P per thread."""
    if role == "backward_input" and s == 2:
        return FAST_INPUT_STRIDE2_TILES[(k, dtype == torch.float64)]
    return FAST_TILES[(k, s, dtype == torch.float64)]



# --------------------------------------------------------------------------- dispatch

@dataclass(frozen=True)
class KernelChoice:
    """The kernel one call runs: `expression` is its CuPy name expression; `reason` says why a fast
    kernel does not apply (empty when `fast`)."""

    expression: str
    fast: bool
    reason: str
    index_bits: int = 64
    grid: tuple[int, int, int] = (1, 1, 1)
    block: int = THREADS_PER_BLOCK


def _max_offset(shape: tuple[int, ...], strides: tuple[int, ...]) -> int:
    if any(size == 0 for size in shape):
        return 0
    return sum((size - 1) * abs(stride) for size, stride in zip(shape, strides))


def _why_not_fast(role, dtype, channels, groups, kernel_size, stride, padding, dilation, n) -> str:
    kh, kw = kernel_size
    if dtype not in TYPE_NAMES:
        return f"dtype {dtype} has no kernels"
    if kh != kw or kh not in (3, 7):
        return f"kernel size {kernel_size}: the fast kernels are for 3x3 and 7x7"
    if tuple(dilation) != (1, 1):
        return f"dilation {tuple(dilation)}: the fast kernels are for dilation 1"
    if stride[0] != stride[1] or stride[0] not in FAST_STRIDES[role]:
        return f"stride {tuple(stride)}: the fast {role} kernels are for strides {FAST_STRIDES[role]}"
    if tuple(padding) != ((kh - 1) // 2,) * 2:
        return f"padding {tuple(padding)}: the fast kernels are for padding (K-1)/2 = {(kh - 1) // 2}"
    if groups <= 0 or channels != FAST_CHANNELS * groups:
        return f"{channels} channels in {groups} groups: the fast kernels are for {FAST_CHANNELS} channels per group"
    if n * groups > MAX_GRID_YZ:
        return f"batch x groups = {n * groups} exceeds the grid's z limit {MAX_GRID_YZ}"
    return ""


def choose_kernel(
    role: str,
    dtype: torch.dtype,
    tensors: list[torch.Tensor],
    output_shape: tuple[int, ...],
    groups: int,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    kernels: str = "auto",
) -> KernelChoice:
    """The instantiation for one call of `role` ("forward", "backward_input", "backward_weight").

    `tensors` are the kernel's inputs (any strides), `output_shape` its contiguous output's shape.
    `kernels`: "auto" (fast where it applies), "fast" (ValueError naming the reason otherwise)
    or "generic". Only shapes, strides and dtype are read: no GPU needed."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {ROLES}")
    if kernels not in ("auto", "fast", "generic"):
        raise ValueError(f"kernels={kernels!r}: use 'auto', 'fast' or 'generic'")
    if dtype not in TYPE_NAMES:
        raise TypeError(f"involution cuda: unsupported dtype {dtype}; use one of {list(TYPE_NAMES)}")
    n, channels = int(output_shape[0]), int(tensors[0].shape[1] if role == "backward_weight" else output_shape[1])
    total = math.prod(int(size) for size in output_shape)
    blocks = max(1, min(-(-total // THREADS_PER_BLOCK), MAX_BLOCKS))
    generic = KernelChoice(generic_expression(role, dtype), False, "", 64, (blocks, 1, 1), THREADS_PER_BLOCK)
    if kernels == "generic":
        return replace(generic, reason="generic kernels requested")
    reason = _why_not_fast(role, dtype, channels, groups, kernel_size, stride, padding, dilation, n)
    if not reason:
        k, s = kernel_size[0], stride[0]
        th, tw, p = fast_tile(k, s, dtype, role)
        rows, cols = output_shape[-2:]  # the tiles cover the output's plane (grad-input: the input's)
        tiles_h, tiles_w = -(-int(rows) // th), -(-int(cols) // tw)
        if tiles_h > MAX_GRID_YZ:
            reason = f"{rows} rows need {tiles_h} tile rows, more than the grid's y limit {MAX_GRID_YZ}"
        else:
            offsets = [_max_offset(tuple(t.shape), tuple(t.stride())) for t in tensors]
            bits = 32 if max(offsets + [total]) <= INT32_MAX else 64
            grid = (tiles_w, tiles_h, n * groups)
            return KernelChoice(fast_expression(role, dtype, k, s, bits), True, "", bits, grid, th * tw // p)
    if kernels == "fast":
        raise ValueError(f"involution cuda: no fast {role} kernel for this call: {reason}")
    return replace(generic, reason=reason)


# --------------------------------------------------------------------------- loading and launching

def load_error() -> str | None:
    """None when CuPy is importable, else why the CUDA backend cannot run."""
    global _import_error, _checked
    if not _checked:
        try:
            import cupy  # noqa: F401
        except Exception as exc:
            _import_error = (
                f"CuPy is not importable ({type(exc).__name__}: {exc}); "
                "pip install cupy-cuda12x or cupy-cuda13x to match your CUDA driver"
            )
        _checked = True
    return _import_error


def load() -> None:
    error = load_error()
    if error is not None:
        raise RuntimeError(f"involution: the cuda kernels are unavailable: {error}")


def _function(expression: str, dtype: torch.dtype, device: torch.device):
    import cupy

    key = (device.index, dtype)
    with _lock:
        module = _modules.get(key)
        if module is None:
            with cupy.cuda.Device(device.index):
                module = cupy.RawModule(
                    code=kernel_source(), options=COMPILE_OPTIONS, name_expressions=name_expressions(dtype)
                )
                for name in name_expressions(dtype):  # compile and load now, once
                    module.get_function(name)
            _modules[key] = module
    return module.get_function(expression)


def compiled_modules() -> list[tuple[int, torch.dtype]]:
    """(device index, dtype) of every module compiled so far: one NVRTC compile each."""
    with _lock:
        return list(_modules)


def launch(choice: KernelChoice, output: torch.Tensor, tensors: list[torch.Tensor], scalars: list[int]) -> torch.Tensor:
    """Run `choice` on the tensors' data into `output`, with `scalars` marshalled by `scalar_args`.

    Every kernel of forward / backward_input / backward_weight runs through this one function,
    after the dispatch and the argument marshalling: the tests replace it with a host emulation
    of the same kernels, which then checks all of the backend but the GPU launch itself."""
    import cupy
    import numpy as np

    if output.numel() == 0:
        return output
    device = output.device
    kernel = _function(choice.expression, output.dtype, device)
    pointers = [np.uint64(t.data_ptr()) for t in (*tensors, output)]
    args = (*pointers, *scalar_args(choice, scalars))
    with cupy.cuda.Device(device.index):
        stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(device).cuda_stream, device.index)
        kernel(choice.grid, (choice.block,), args, stream=stream)
    return output


FAST_SIZE_ARGS = 5  # groups, h, w, ho, wo: int in every fast kernel


def scalar_args(choice: KernelChoice, scalars: list[int]) -> list:
    """The kernel's scalar arguments as NumPy ints: the fast kernels take their first FAST_SIZE_ARGS
    (sizes) as 32-bit ints and the rest in the choice's index type; the generic ones all as 64-bit."""
    import numpy as np

    if not choice.fast:
        return [np.int64(v) for v in scalars]
    index = np.int32 if choice.index_bits == 32 else np.int64
    return [np.int32(v) for v in scalars[:FAST_SIZE_ARGS]] + [index(v) for v in scalars[FAST_SIZE_ARGS:]]


def _shape(n, c, h, w, groups, kh, kw, ho, wo, stride, padding, dilation) -> list[int]:
    return [n, c, h, w, groups, kh, kw, ho, wo, *stride, *padding, *dilation]


def _run(choice, output, tensors, n, c, h, w, groups, kh, kw, ho, wo, stride, padding, dilation):
    strides = [s for t in tensors for s in t.stride()]
    if choice.fast:
        scalars = [groups, h, w, ho, wo, *strides]
    else:
        scalars = _shape(n, c, h, w, groups, kh, kw, ho, wo, stride, padding, dilation) + strides
    return launch(choice, output, tensors, scalars)


def forward(x, weight, stride, padding, dilation, kernels: str = "auto") -> torch.Tensor:
    n, c, h, w = x.shape
    _, groups, kh, kw, ho, wo = weight.shape
    out = torch.empty((n, c, ho, wo), dtype=x.dtype, device=x.device)
    choice = choose_kernel("forward", x.dtype, [x, weight], tuple(out.shape), groups, (kh, kw), stride, padding,
                           dilation, kernels)
    return _run(choice, out, [x, weight], n, c, h, w, groups, kh, kw, ho, wo, stride, padding, dilation)


def backward_input(grad_out, weight, input_size, stride, padding, dilation, kernels: str = "auto") -> torch.Tensor:
    n, c, ho, wo = grad_out.shape
    _, groups, kh, kw, _, _ = weight.shape
    h, w = input_size
    grad_x = torch.empty((n, c, h, w), dtype=grad_out.dtype, device=grad_out.device)
    choice = choose_kernel("backward_input", grad_out.dtype, [grad_out, weight], tuple(grad_x.shape), groups,
                           (kh, kw), stride, padding, dilation, kernels)
    return _run(choice, grad_x, [grad_out, weight], n, c, h, w, groups, kh, kw, ho, wo, stride, padding, dilation)


def backward_weight(grad_out, x, kernel_size, groups, stride, padding, dilation, kernels: str = "auto") -> torch.Tensor:
    n, c, h, w = x.shape
    ho, wo = grad_out.shape[-2:]
    kh, kw = kernel_size
    grad_weight = torch.empty((n, groups, kh, kw, ho, wo), dtype=grad_out.dtype, device=grad_out.device)
    choice = choose_kernel("backward_weight", grad_out.dtype, [grad_out, x], tuple(grad_weight.shape), groups,
                           (kh, kw), stride, padding, dilation, kernels)
    return _run(choice, grad_weight, [grad_out, x], n, c, h, w, groups, kh, kw, ho, wo, stride, padding, dilation)
