"""The CUDA kernels: NVRTC compilation to PTX (no GPU needed), a host emulation
that runs the very kernel source on the CPU through the CUDA backend's own
argument marshalling (no GPU needed), and runtime checks against the reference
in every dtype (skipped without a GPU and CuPy)."""
from __future__ import annotations

import ctypes
import shutil
import subprocess

import pytest
import torch

from support import require
from involution_ops import involution
from involution_ops.ops import cuda, nvrtc
from involution_ops.ops.reference import involution_reference
from test_op import CASES, _case_id, _make

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def _tolerances(dtype, expected):
    if dtype == torch.float64:
        return dict(rtol=1e-10, atol=1e-10)
    if dtype == torch.float32:
        return dict(rtol=1e-4, atol=1e-4)
    # float32 accumulation: only the final rounding to the 16-bit dtype remains
    eps = torch.finfo(dtype).eps
    return dict(rtol=eps, atol=eps * max(expected.abs().max().item(), 1.0))


def _compare(case, dtype, run_forward, run_backward_input, run_backward_weight):
    """Kernel results vs the float64 reference evaluated on the same (rounded) inputs."""
    n, c, g, h, w, k, s, p, d, layout = case
    x, weight, grad = _make(*case, dtype=dtype)
    x64, w64 = x.double().requires_grad_(True), weight.double().requires_grad_(True)
    expected = involution_reference(x64, w64, s, p, d)
    expected_gx, expected_gw = torch.autograd.grad(expected, (x64, w64), grad.double())
    got = run_forward(x, weight, s, p, d)
    got_gx = run_backward_input(grad, weight, (h, w), s, p, d)
    got_gw = run_backward_weight(grad, x, tuple(weight.shape[2:4]), g, s, p, d)
    for result, want in ((got, expected), (got_gx, expected_gx), (got_gw, expected_gw)):
        assert result.dtype == dtype and result.shape == want.shape
        torch.testing.assert_close(result.cpu().double(), want.detach(), **_tolerances(dtype, want))


def _pairs(s, p, d):
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    return pair(s), pair(p), pair(d)


# --------------------------------------------------------------------------- NVRTC to PTX

@pytest.fixture(scope="module")
def nvrtc_library():
    library = nvrtc.find_library()
    if library is None:
        require.missing("nvrtc", "no NVRTC library found: pip install nvidia-cuda-nvrtc-cu12 (the `test` extra)")
    return library


@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cuda_source_compiles_to_ptx(nvrtc_library, dtype, arch):
    expressions = cuda.name_expressions(dtype)
    ptx, lowered = nvrtc.compile_to_ptx(
        cuda.kernel_source(), expressions, arch, cuda.COMPILE_OPTIONS, library=nvrtc_library
    )
    assert f".target sm_{arch[-2:]}" in ptx
    for expression in expressions:
        assert f".entry {lowered[expression]}(" in ptx, expression


def test_cupy_accepts_the_module_arguments():
    """The CuPy API the backend uses (CuPy 13 and 14): RawModule keywords, ExternalStream, Device."""
    cupy = require.module("cupy", "cupy")
    module = cupy.RawModule(
        code=cuda.kernel_source(), options=cuda.COMPILE_OPTIONS, name_expressions=cuda.name_expressions(torch.float32)
    )
    assert callable(module.get_function)
    assert callable(cupy.cuda.ExternalStream) and callable(cupy.cuda.Device)


# --------------------------------------------------------------------------- host emulation

_SHIM = r"""
#include <cstring>
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
struct involution_dim3 { unsigned int x; };
static involution_dim3 blockIdx, threadIdx, blockDim, gridDim;
static inline float __uint_as_float(unsigned int u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline unsigned int __float_as_uint(float f) { unsigned int u; std::memcpy(&u, &f, 4); return u; }
static inline float involution_host_half_to_float(unsigned short b) { _Float16 h; std::memcpy(&h, &b, 2); return (float)h; }
static inline unsigned short involution_host_float_to_half(float f) {
  _Float16 h = (_Float16)f; unsigned short b; std::memcpy(&b, &h, 2); return b;
}
"""

_ENTRY = r"""
extern "C" void run_{kernel}_{suffix}(const void* a, const void* b, void* out, const long long* v,
                                      unsigned int grid, unsigned int block) {{
  typedef {type} T;
  gridDim.x = grid; blockDim.x = block;
  for (unsigned int bi = 0; bi < grid; ++bi)
    for (unsigned int ti = 0; ti < block; ++ti) {{
      blockIdx.x = bi; threadIdx.x = ti;
      involution::{kernel}<T>((const T*)a, (const T*)b, (T*)out, {scalars});
    }}
}}
"""

_SUFFIX = {torch.float32: "f32", torch.float64: "f64", torch.float16: "f16", torch.bfloat16: "bf16"}
_SCALARS = {"forward_kernel": 25, "backward_input_kernel": 25, "backward_weight_kernel": 23}


@pytest.fixture(scope="module")
def emulated_kernels(tmp_path_factory):
    compiler = shutil.which("g++")
    if compiler is None:
        require.missing("cpu", "no g++ to build the host emulation of the CUDA kernels")
    source = _SHIM + cuda.kernel_source()
    for dtype, suffix in _SUFFIX.items():
        for kernel, count in _SCALARS.items():
            scalars = ", ".join(f"v[{i}]" for i in range(count))
            source += _ENTRY.format(kernel=kernel, suffix=suffix, type=cuda.TYPE_NAMES[dtype], scalars=scalars)
    folder = tmp_path_factory.mktemp("cuda_emulation")
    (folder / "emulation.cpp").write_text(source)
    library = folder / "emulation.so"
    result = subprocess.run(
        [compiler, "-O1", "-std=c++17", "-shared", "-fPIC", "-o", str(library), str(folder / "emulation.cpp")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return ctypes.CDLL(str(library))


@pytest.fixture(params=[(1, 1), (3, 7)], ids=["one-thread", "3x7-grid-stride"])
def emulated_cuda(request, emulated_kernels, monkeypatch):
    """The CUDA backend with its launch replaced by a serial run of the same kernels on the CPU."""
    grid, block = request.param

    def launch(name, output, tensors, scalars):
        function = getattr(emulated_kernels, f"run_{name}_{_SUFFIX[output.dtype]}")
        assert len(scalars) == _SCALARS[name]
        values = (ctypes.c_longlong * len(scalars))(*scalars)
        pointers = [ctypes.c_void_p(t.data_ptr()) for t in (*tensors, output)]
        function(*pointers, values, ctypes.c_uint(grid), ctypes.c_uint(block))
        return output

    monkeypatch.setattr(cuda, "_launch", launch)
    return cuda


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_emulated_cuda_kernels_match_reference(emulated_cuda, case, dtype):
    _compare(
        case,
        dtype,
        lambda x, w, s, p, d: emulated_cuda.forward(x, w, *_pairs(s, p, d)),
        lambda go, w, size, s, p, d: emulated_cuda.backward_input(go, w, size, *_pairs(s, p, d)),
        lambda go, x, ks, g, s, p, d: emulated_cuda.backward_weight(go, x, ks, g, *_pairs(s, p, d)),
    )


def test_emulated_cuda_kernels_read_zero_strides(emulated_cuda):
    """The gradient of out.sum() arrives as an expanded tensor with zero strides: no copy is needed."""
    x, weight, _ = _make(*CASES[2])
    grad = torch.ones(1, 1, 1, 1, dtype=torch.float64).expand(1, 16, *weight.shape[-2:])
    expected = involution_reference(x, weight.requires_grad_(True), 3, 3, 1)
    (want,) = torch.autograd.grad(expected.sum(), weight)
    got = emulated_cuda.backward_weight(grad, x, (7, 7), 4, (3, 3), (3, 3), (1, 1))
    torch.testing.assert_close(got, want)


# --------------------------------------------------------------------------- on a GPU

def _gpu_unavailable() -> str | None:
    if not torch.cuda.is_available():
        return "needs a CUDA device"
    return cuda.load_error()


gpu = pytest.mark.skipif(_gpu_unavailable() is not None, reason=str(_gpu_unavailable()))


def _on_gpu(function):
    def run(*args):
        moved = [a.cuda() if isinstance(a, torch.Tensor) else a for a in args]
        return function(*moved)

    return run


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_cuda_backend_matches_reference(case, dtype):
    def forward_and_grads(x, w, s, p, d):
        return involution(x, w, s, p, d, backend="cuda")

    def backward_input(go, w, size, s, p, d):
        return torch.ops.involution_ops.involution_backward_input(go, w, list(size), *map(list, _pairs(s, p, d)), "cuda")

    def backward_weight(go, x, ks, g, s, p, d):
        return torch.ops.involution_ops.involution_backward_weight(
            go, x, list(ks), g, *map(list, _pairs(s, p, d)), "cuda"
        )

    _compare(case, dtype, _on_gpu(forward_and_grads), _on_gpu(backward_input), _on_gpu(backward_weight))


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cuda_autograd_end_to_end(dtype):
    case = CASES[1]
    n, c, g, h, w, k, s, p, d, layout = case
    x, weight, grad = (t.cuda() for t in _make(*case, dtype=dtype))
    x.requires_grad_(True)
    weight.requires_grad_(True)
    out = involution(x, weight, s, p, d)  # default dispatch: the CUDA kernels
    gx, gw = torch.autograd.grad(out, (x, weight), grad)
    x64, w64 = x.detach().double().requires_grad_(True), weight.detach().double().requires_grad_(True)
    want = involution_reference(x64, w64, s, p, d)
    want_gx, want_gw = torch.autograd.grad(want, (x64, w64), grad.double())
    for result, expected in ((out, want), (gx, want_gx), (gw, want_gw)):
        torch.testing.assert_close(result.double(), expected.detach(), **_tolerances(dtype, expected))


@pytest.mark.gpu
@gpu
def test_cuda_compiles_once_per_dtype_and_uses_current_stream():
    for shape in ((1, 16, 9, 11), (2, 32, 20, 7)):
        x = torch.randn(*shape, device="cuda")
        weight = torch.randn(shape[0], shape[1] // 16, 3, 3, *shape[2:], device="cuda")
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            out = involution(x, weight, 1, 1, 1, backend="cuda")
        stream.synchronize()
        torch.testing.assert_close(out, involution_reference(x, weight, 1, 1, 1), rtol=1e-4, atol=1e-4)
    assert sum(1 for (_, dtype) in cuda._modules if dtype == torch.float32) == 1


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_cuda_autocast_runs_natively_in_low_precision(dtype):
    x = torch.randn(2, 32, 14, 14, device="cuda", requires_grad=True)
    weight = torch.randn(2, 2, 7, 7, 14, 14, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=dtype):
        out = involution(x, weight, 1, 3, 1)
    assert out.dtype == dtype
    out.float().sum().backward()
    assert x.grad.dtype == torch.float32 and weight.grad.dtype == torch.float32


@pytest.mark.gpu
@gpu
def test_cuda_torch_compile_fullgraph():
    x = torch.randn(2, 16, 9, 9, device="cuda", requires_grad=True)
    weight = torch.randn(2, 1, 3, 3, 9, 9, device="cuda", requires_grad=True)
    compiled = torch.compile(lambda a, b: involution(a, b, 1, 1, 1).relu(), fullgraph=True, backend="aot_eager")
    out = compiled(x, weight)
    torch.testing.assert_close(out, involution_reference(x, weight, 1, 1, 1).relu(), rtol=1e-4, atol=1e-4)
    out.sum().backward()
    assert x.grad is not None and weight.grad is not None
