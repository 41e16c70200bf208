"""The naive baseline the official involution code is built like: one thread per output
element, every shape compiled into the source as a constant (one NVRTC compile per
shape), 32-bit indices, the taps unrolled. Written here for comparison only (the
static report `make cuda-static` and the GPU benchmark); the operator never uses it.

Contiguous float32 / float64 inputs only.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

TYPE_NAMES = {torch.float32: "float", torch.float64: "double"}
THREADS_PER_BLOCK = 1024
KERNELS = {
    "forward": "involution_baseline_forward",
    "backward_input": "involution_baseline_backward_input",
    "backward_weight": "involution_baseline_backward_weight",
}


@dataclass(frozen=True)
class Geometry:
    n: int
    c: int
    h: int
    w: int
    groups: int
    kh: int
    kw: int
    ho: int
    wo: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int

    def constants(self) -> str:
        return "\n".join(f"#define {name.upper()} {value}" for name, value in self.__dict__.items())


_COMMON = r"""
typedef {dtype} scalar_t;
{constants}
#define CPG (C / GROUPS)
#define KERNEL_LOOP(i, total) for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < (total); i += blockDim.x * gridDim.x)
"""

_SOURCES = {
    "forward": r"""
extern "C" __global__ void involution_baseline_forward(const scalar_t* bottom, const scalar_t* weight, scalar_t* top) {
  KERNEL_LOOP(index, N * C * HO * WO) {
    const int n = index / C / HO / WO, c = (index / HO / WO) % C, h = (index / WO) % HO, w = index % WO;
    const int g = c / CPG;
    scalar_t value = 0;
#pragma unroll
    for (int kh = 0; kh < KH; ++kh) {
#pragma unroll
      for (int kw = 0; kw < KW; ++kw) {
        const int h_in = -PH + h * SH + kh * DH, w_in = -PW + w * SW + kw * DW;
        if (h_in >= 0 && h_in < H && w_in >= 0 && w_in < W) {
          const int x_at = ((n * C + c) * H + h_in) * W + w_in;
          const int w_at = ((((n * GROUPS + g) * KH + kh) * KW + kw) * HO + h) * WO + w;
          value += weight[w_at] * bottom[x_at];
        }
      }
    }
    top[index] = value;
  }
}
""",
    "backward_input": r"""
extern "C" __global__ void involution_baseline_backward_input(const scalar_t* top_diff, const scalar_t* weight,
                                                              scalar_t* bottom_diff) {
  KERNEL_LOOP(index, N * C * H * W) {
    const int n = index / C / H / W, c = (index / H / W) % C, h = (index / W) % H, w = index % W;
    const int g = c / CPG;
    scalar_t value = 0;
#pragma unroll
    for (int kh = 0; kh < KH; ++kh) {
#pragma unroll
      for (int kw = 0; kw < KW; ++kw) {
        const int h_s = h + PH - kh * DH, w_s = w + PW - kw * DW;
        if (h_s % SH == 0 && w_s % SW == 0) {
          const int h_out = h_s / SH, w_out = w_s / SW;
          if (h_out >= 0 && h_out < HO && w_out >= 0 && w_out < WO) {
            const int top_at = ((n * C + c) * HO + h_out) * WO + w_out;
            const int w_at = ((((n * GROUPS + g) * KH + kh) * KW + kw) * HO + h_out) * WO + w_out;
            value += weight[w_at] * top_diff[top_at];
          }
        }
      }
    }
    bottom_diff[index] = value;
  }
}
""",
    "backward_weight": r"""
extern "C" __global__ void involution_baseline_backward_weight(const scalar_t* top_diff, const scalar_t* bottom,
                                                               scalar_t* weight_diff) {
  KERNEL_LOOP(index, N * GROUPS * KH * KW * HO * WO) {
    const int w = index % WO, h = (index / WO) % HO, kw = (index / WO / HO) % KW, kh = (index / WO / HO / KW) % KH;
    const int g = (index / WO / HO / KW / KH) % GROUPS, n = index / WO / HO / KW / KH / GROUPS;
    const int h_in = -PH + h * SH + kh * DH, w_in = -PW + w * SW + kw * DW;
    scalar_t value = 0;
    if (h_in >= 0 && h_in < H && w_in >= 0 && w_in < W) {
#pragma unroll
      for (int cc = 0; cc < CPG; ++cc) {
        const int c = g * CPG + cc;
        value += top_diff[((n * C + c) * HO + h) * WO + w] * bottom[((n * C + c) * H + h_in) * W + w_in];
      }
    }
    weight_diff[index] = value;
  }
}
""",
}


def kernel_source(role: str, dtype: torch.dtype, geometry: Geometry) -> str:
    """The CUDA source of one baseline kernel with `geometry` compiled in."""
    if dtype not in TYPE_NAMES:
        raise TypeError(f"involution baseline: {dtype} unsupported; use float32 or float64")
    return _COMMON.format(dtype=TYPE_NAMES[dtype], constants=geometry.constants()) + _SOURCES[role]


def module_source(dtype: torch.dtype, geometry: Geometry) -> str:
    """The three baseline kernels with `geometry` compiled in, in one source."""
    return kernel_source("forward", dtype, geometry) + "".join(_SOURCES[role] for role in KERNELS if role != "forward")


def rednet50_geometries(batch: int = 8) -> dict[str, Geometry]:
    """The 7x7 stride-1 involutions of RedNet-50's four stages (16 channels per group)."""
    stages = {"stage1": (64, 56), "stage2": (128, 28), "stage3": (256, 14), "stage4": (512, 7)}
    return {
        name: Geometry(batch, c, size, size, c // 16, 7, 7, size, size, 1, 1, 3, 3, 1, 1)
        for name, (c, size) in stages.items()
    }


@functools.lru_cache(maxsize=None)
def _function(role: str, dtype: torch.dtype, geometry: Geometry, device_index: int):
    import cupy

    with cupy.cuda.Device(device_index):
        module = cupy.RawModule(code=kernel_source(role, dtype, geometry))  # one shape, one compile
        return module.get_function(KERNELS[role])


def launch(role: str, geometry: Geometry, output: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
    """Run the `role` kernel compiled for `geometry` on the inputs' data into `output`.

    forward / backward_input / backward_weight run every kernel through this one function: the
    tests replace it with a host emulation of the same kernel source."""
    import cupy
    import numpy as np

    for tensor in inputs:
        if not tensor.is_contiguous():
            raise ValueError(f"involution baseline: {role} takes contiguous inputs; call .contiguous() first")
    total = output.numel()
    if total == 0:
        return output
    if total >= 2**31:
        raise ValueError(f"involution baseline: {total} outputs overflow its 32-bit indices")
    device = output.device
    kernel = _function(role, output.dtype, geometry, device.index)
    blocks = (total + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
    with cupy.cuda.Device(device.index):
        stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(device).cuda_stream, device.index)
        kernel((blocks,), (THREADS_PER_BLOCK,), [np.uint64(t.data_ptr()) for t in (*inputs, output)], stream=stream)
    return output


def forward(x, weight, stride, padding, dilation) -> torch.Tensor:
    n, c, h, w = x.shape
    _, groups, kh, kw, ho, wo = weight.shape
    geometry = Geometry(n, c, h, w, groups, kh, kw, ho, wo, *stride, *padding, *dilation)
    out = torch.empty((n, c, ho, wo), dtype=x.dtype, device=x.device)
    return launch("forward", geometry, out, [x, weight])


def backward_input(grad_out, weight, input_size, stride, padding, dilation) -> torch.Tensor:
    n, c, ho, wo = grad_out.shape
    _, groups, kh, kw, _, _ = weight.shape
    h, w = input_size
    geometry = Geometry(n, c, h, w, groups, kh, kw, ho, wo, *stride, *padding, *dilation)
    grad_x = torch.empty((n, c, h, w), dtype=grad_out.dtype, device=grad_out.device)
    return launch("backward_input", geometry, grad_x, [grad_out, weight])


def backward_weight(grad_out, x, kernel_size, groups, stride, padding, dilation) -> torch.Tensor:
    n, c, h, w = x.shape
    ho, wo = grad_out.shape[-2:]
    kh, kw = kernel_size
    geometry = Geometry(n, c, h, w, groups, kh, kw, ho, wo, *stride, *padding, *dilation)
    grad_weight = torch.empty((n, groups, kh, kw, ho, wo), dtype=grad_out.dtype, device=grad_out.device)
    return launch("backward_weight", geometry, grad_weight, [grad_out, x])
