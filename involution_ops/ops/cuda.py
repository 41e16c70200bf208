"""CUDA backend: kernels from csrc/involution_cuda.cu compiled by CuPy (NVRTC),
once per dtype and device, launched on PyTorch's current stream.

CuPy is imported only when a CUDA tensor reaches the operator; CuPy 13 and 14,
cupy-cuda12x and cupy-cuda13x all work (only RawModule, get_function,
ExternalStream and Device are used).
"""
from __future__ import annotations

import threading
from pathlib import Path

import torch

CSRC = Path(__file__).resolve().parent / "csrc"
KERNELS = ("forward_kernel", "backward_input_kernel", "backward_weight_kernel")
TYPE_NAMES = {
    torch.float32: "float",
    torch.float64: "double",
    torch.float16: "involution::half_t",
    torch.bfloat16: "involution::bf16_t",
}
COMPILE_OPTIONS: tuple[str, ...] = ()  # NVRTC defaults (C++17 on CUDA 12/13); CuPy may add its own
THREADS_PER_BLOCK = 256
MAX_BLOCKS = 65535 * 32  # grid-stride loops cover the rest

_lock = threading.Lock()
_modules: dict[tuple[int, torch.dtype], object] = {}
_import_error: str | None = None
_checked = False


def kernel_source() -> str:
    """The .cu source with the shared index header inlined (NVRTC then needs no include path)."""
    header = (CSRC / "involution_index.h").read_text().replace("#pragma once\n", "", 1)
    return (CSRC / "involution_cuda.cu").read_text().replace('#include "involution_index.h"', header, 1)


def name_expressions(dtype: torch.dtype) -> list[str]:
    return [f"involution::{kernel}<{TYPE_NAMES[dtype]}>" for kernel in KERNELS]


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


def _function(name: str, dtype: torch.dtype, device: torch.device):
    import cupy

    if dtype not in TYPE_NAMES:
        raise TypeError(f"involution cuda: unsupported dtype {dtype}; use one of {list(TYPE_NAMES)}")
    key = (device.index, dtype)
    with _lock:
        module = _modules.get(key)
        if module is None:
            with cupy.cuda.Device(device.index):
                module = cupy.RawModule(
                    code=kernel_source(), options=COMPILE_OPTIONS, name_expressions=name_expressions(dtype)
                )
                for expression in name_expressions(dtype):  # compile and load now, once
                    module.get_function(expression)
            _modules[key] = module
    return module.get_function(f"involution::{name}<{TYPE_NAMES[dtype]}>")


def _launch(name: str, output: torch.Tensor, tensors: list[torch.Tensor], scalars: list[int]) -> torch.Tensor:
    import cupy
    import numpy as np

    total = output.numel()
    if total == 0:
        return output
    device = output.device
    kernel = _function(name, output.dtype, device)
    pointers = [np.uint64(t.data_ptr()) for t in (*tensors, output)]
    args = (*pointers, *(np.int64(v) for v in scalars))
    blocks = min((total + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK, MAX_BLOCKS)
    with cupy.cuda.Device(device.index):
        stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(device).cuda_stream, device.index)
        kernel((blocks,), (THREADS_PER_BLOCK,), args, stream=stream)
    return output


def _shape(n, c, h, w, groups, kh, kw, ho, wo, stride, padding, dilation) -> list[int]:
    return [n, c, h, w, groups, kh, kw, ho, wo, *stride, *padding, *dilation]


def forward(x, weight, stride, padding, dilation) -> torch.Tensor:
    n, c, h, w = x.shape
    _, groups, kh, kw, ho, wo = weight.shape
    out = torch.empty((n, c, ho, wo), dtype=x.dtype, device=x.device)
    scalars = _shape(n, c, h, w, groups, kh, kw, ho, wo, stride, padding, dilation) + [*x.stride(), *weight.stride()]
    return _launch("forward_kernel", out, [x, weight], scalars)


def backward_input(grad_out, weight, input_size, stride, padding, dilation) -> torch.Tensor:
    n, c, ho, wo = grad_out.shape
    _, groups, kh, kw, _, _ = weight.shape
    h, w = input_size
    grad_x = torch.empty((n, c, h, w), dtype=grad_out.dtype, device=grad_out.device)
    scalars = _shape(n, c, h, w, groups, kh, kw, ho, wo, stride, padding, dilation)
    scalars += [*grad_out.stride(), *weight.stride()]
    return _launch("backward_input_kernel", grad_x, [grad_out, weight], scalars)


def backward_weight(grad_out, x, kernel_size, groups, stride, padding, dilation) -> torch.Tensor:
    n, c, h, w = x.shape
    ho, wo = grad_out.shape[-2:]
    kh, kw = kernel_size
    grad_weight = torch.empty((n, groups, kh, kw, ho, wo), dtype=grad_out.dtype, device=grad_out.device)
    scalars = _shape(n, c, h, w, groups, kh, kw, ho, wo, stride, padding, dilation)
    scalars += [*grad_out.stride(), *x.stride()]
    return _launch("backward_weight_kernel", grad_weight, [grad_out, x], scalars)
