"""The CUDA kernels: NVRTC compilation to PTX (no GPU needed), a threaded host
emulation that runs the very kernel source on the CPU through the CUDA backend's
own dispatch and argument marshalling (no GPU needed), and runtime checks against
the reference in every dtype (skipped without a GPU and CuPy)."""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from support import require
from involution_ops import involution
from involution_ops.ops import cuda, nvrtc
from involution_ops.ops.reference import involution_reference
from test_op import CASES, case_id, make_inputs

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
    x, weight, grad = make_inputs(*case, dtype=dtype)
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

@pytest.mark.parametrize("arch", [pytest.param("compute_80", marks=pytest.mark.slow), "compute_90"])  # ~8 s each
def test_cuda_source_compiles_to_ptx(nvrtc_library, arch):
    """PTX with every kernel's entry (every dtype and architecture to CUBIN: test_cuda_static.py)."""
    dtype = torch.float32
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
# One host thread per CUDA thread: __syncthreads is a C++20 std::barrier across the block's threads,
# blockIdx / threadIdx are thread_local, and shared memory is one block-wide buffer filled with NaN
# bytes before every block, so a kernel that reads shared memory it did not write, or reads before
# the barrier, produces NaN. Launches go through the CUDA backend's own dispatch and argument
# marshalling (cuda.launch, the one function every launch goes through, is replaced); only the kernel
# execution is emulated.

EMULATION_SHIM = r"""
#include <algorithm>
#include <barrier>
#include <cstring>
#include <thread>
#include <vector>
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
struct involution_dim3 { unsigned int x, y, z; };
static thread_local involution_dim3 blockIdx, threadIdx;
static involution_dim3 blockDim, gridDim;
static std::barrier<>* involution_block_barrier;
static unsigned char* involution_block_shared;
static const std::size_t involution_shared_bytes = 48 * 1024;
static inline void __syncthreads() { involution_block_barrier->arrive_and_wait(); }
#define INVOLUTION_SHARED(type, name, count) \
  static_assert(sizeof(type) * (count) <= involution_shared_bytes, "over 48 KB"); \
  type* name = reinterpret_cast<type*>(involution_block_shared)
using std::min;
static inline float __uint_as_float(unsigned int u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline unsigned int __float_as_uint(float f) { unsigned int u; std::memcpy(&u, &f, 4); return u; }
static inline float involution_host_half_to_float(unsigned short b) { _Float16 h; std::memcpy(&h, &b, 2); return (float)h; }
static inline unsigned short involution_host_float_to_half(float f) {
  _Float16 h = (_Float16)f; unsigned short b; std::memcpy(&b, &h, 2); return b;
}

// Runs the grid block after block; each block's threads run concurrently and meet at the barrier.
template <typename Kernel>
static void involution_run(unsigned gx, unsigned gy, unsigned gz, unsigned block, Kernel kernel) {
  gridDim = {gx, gy, gz};
  blockDim = {block, 1, 1};
  std::vector<unsigned char> shared(involution_shared_bytes);
  std::barrier<> barrier((std::ptrdiff_t)block);
  involution_block_barrier = &barrier;
  involution_block_shared = shared.data();
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < block; ++t)
    threads.emplace_back([&, t] {
      threadIdx = {t, 0, 0};
      for (unsigned z = 0; z < gz; ++z)
        for (unsigned y = 0; y < gy; ++y)
          for (unsigned x = 0; x < gx; ++x) {
            barrier.arrive_and_wait();  // the previous block is done with shared memory
            if (t == 0) std::memset(shared.data(), 0xff, shared.size());  // NaN in float and double
            barrier.arrive_and_wait();
            blockIdx = {x, y, z};
            kernel();
          }
    });
  for (auto& thread : threads) thread.join();
}
"""

_ENTRY = r"""
extern "C" void {symbol}(const void* a, const void* b, void* out, const long long* v,
                         unsigned gx, unsigned gy, unsigned gz, unsigned block) {{
  typedef {type} T;
  involution_run(gx, gy, gz, block, [&] {{ {expression}((const T*)a, (const T*)b, (T*)out, {scalars}); }});
}}
"""

_SCALARS = {"forward": 25, "backward_input": 25, "backward_weight": 23}  # generic kernels
_FAST_SCALARS = {"forward": 15, "backward_input": 15, "backward_weight": 13}
GENERIC_GRID, GENERIC_BLOCK = (3, 1, 1), 7  # several blocks, and grid-stride loops that wrap


def _symbol(expression: str) -> str:
    return "run_" + re.sub(r"\W+", "_", expression)


def _scalar_count(expression: str) -> int:
    role = re.search(r"(forward|backward_input|backward_weight)_kernel", expression).group(1)
    return (_FAST_SCALARS if "fast_" in expression else _SCALARS)[role]


EMULATION_FLAGS = ("-O1", "-std=c++20", "-pthread", "-Wno-unknown-pragmas", "-shared", "-fPIC")


def compile_emulation(folder: Path, code: str) -> ctypes.CDLL:
    """`code` compiled with g++ into a library in `folder`, named by a hash of the code, the flags and the
    compiler's version: in a folder kept between runs (the `emulation_folder` fixture) each version of
    the kernels is compiled once."""
    compiler = shutil.which("g++")
    if compiler is None:
        require.missing("cpu", "no g++ to build the host emulation of the CUDA kernels")
    version = subprocess.run([compiler, "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
    digest = hashlib.sha256("\0".join((compiler, version, *EMULATION_FLAGS, code)).encode()).hexdigest()[:20]
    library = folder / f"emulation_{digest}.so"
    if not library.exists():
        # another process (a pytest-xdist worker, another run) may build the same library at the same time
        source, built = folder / f"emulation_{digest}-{os.getpid()}.cpp", folder / f"emulation_{digest}-{os.getpid()}.so"
        source.write_text(code)
        result = subprocess.run([compiler, *EMULATION_FLAGS, "-o", str(built), str(source)], capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stderr[-4000:]
        source.unlink()
        os.replace(built, library)
    return ctypes.CDLL(str(library))


def build_emulation(folder: Path, source: str, expressions_by_dtype: dict[torch.dtype, list[str]]) -> ctypes.CDLL:
    """`source` (the kernels) with one run_* entry per expression, compiled by `compile_emulation`."""
    code = EMULATION_SHIM + source
    for dtype, expressions in expressions_by_dtype.items():
        for expression in expressions:
            scalars = ", ".join(f"v[{i}]" for i in range(_scalar_count(expression)))
            code += _ENTRY.format(symbol=_symbol(expression), type=cuda.TYPE_NAMES[dtype], expression=expression,
                                  scalars=scalars)
    return compile_emulation(folder, code)


@pytest.fixture(scope="session")
def emulated_kernels(emulation_folder):
    """Every kernel of every dtype (generic and fast), compiled once per version of the source."""
    return build_emulation(
        emulation_folder, cuda.kernel_source(), {d: cuda.name_expressions(d) for d in DTYPES}
    )


def emulated_launch(library, launched: list | None = None):
    """A replacement for cuda.launch that runs the chosen kernel in `library` on the CPU."""

    def launch(choice, output, tensors, scalars):
        if output.numel() == 0:
            return output
        function = getattr(library, _symbol(choice.expression))
        assert len(scalars) == _scalar_count(choice.expression)
        args = cuda.scalar_args(choice, scalars)  # the GPU's marshalling: int32 where the kernel takes int
        values = (ctypes.c_longlong * len(args))(*(int(a) for a in args))
        grid, block = (choice.grid, choice.block) if choice.fast else (GENERIC_GRID, GENERIC_BLOCK)
        pointers = [ctypes.c_void_p(t.data_ptr()) for t in (*tensors, output)]
        function(*pointers, values, *(ctypes.c_uint(g) for g in grid), ctypes.c_uint(block))
        if launched is not None:
            launched.append(choice)
        return output

    return launch


@pytest.fixture
def launched(emulated_kernels, monkeypatch) -> list:
    """Replaces the CUDA backend's launch by the threaded host emulation of the same kernels;
    the list receives the KernelChoice of every launch."""
    choices: list = []
    monkeypatch.setattr(cuda, "launch", emulated_launch(emulated_kernels, choices))
    return choices


def _emulated_compare(case, dtype, kernels):
    _compare(
        case,
        dtype,
        lambda x, w, s, p, d: cuda.forward(x, w, *_pairs(s, p, d), kernels=kernels),
        lambda go, w, size, s, p, d: cuda.backward_input(go, w, size, *_pairs(s, p, d), kernels=kernels),
        lambda go, x, ks, g, s, p, d: cuda.backward_weight(go, x, ks, g, *_pairs(s, p, d), kernels=kernels),
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_emulated_generic_kernels_match_reference(launched, case, dtype):
    """No case here has 16 channels per group with K 3/7 and padding (K-1)/2: the dispatch falls back."""
    _emulated_compare(case, dtype, "auto")
    assert [c.fast for c in launched] == [False] * 3 and all(c.reason for c in launched)


# RedNet's shapes (16 channels per group, padding (K-1)/2), each with several blocks in the grid:
# odd sizes, borders, images smaller than the kernel, strides, layouts.
FAST_CASES = [
    (1, 16, 1, 19, 35, 3, 1, 1, 1, "contiguous"),
    (2, 32, 2, 17, 19, 7, 1, 3, 1, "channels_last"),
    (1, 16, 1, 19, 21, 7, 2, 3, 1, "noncontiguous"),
    (1, 32, 2, 17, 18, 3, 2, 1, 1, "channels_last"),
    (1, 16, 1, 3, 2, 7, 1, 3, 1, "noncontiguous"),
    (2, 16, 1, 5, 4, 3, 2, 1, 1, "contiguous"),
    (1, 16, 1, 9, 37, 7, 2, 3, 1, "channels_last"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", FAST_CASES, ids=case_id)
def test_emulated_fast_kernels_match_reference(launched, case, dtype):
    """The fast kernels (the dispatch picks them for these shapes), in every dtype."""
    _emulated_compare(case, dtype, "auto")
    assert [c.fast for c in launched] == [True, True, True]
    assert all(c.index_bits == 32 for c in launched if c.fast)


@pytest.mark.parametrize("case", FAST_CASES, ids=case_id)
def test_emulated_generic_kernels_on_rednet_shapes(launched, case):
    _emulated_compare(case, torch.float32, "generic")
    assert [c.fast for c in launched] == [False] * 3


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", [FAST_CASES[1], FAST_CASES[3]], ids=case_id)
def test_emulated_fast_kernels_64bit_index(launched, case, dtype, monkeypatch):
    """The 64-bit instantiations, chosen here by lowering the 32-bit limit below the tensors' sizes."""
    monkeypatch.setattr(cuda, "INT32_MAX", 100)
    _emulated_compare(case, dtype, "fast")
    assert {c.index_bits for c in launched if c.fast} == {64}


def test_emulated_fast_kernels_read_zero_strides(launched):
    """The gradient of out.sum() arrives expanded (zero strides) and the fast kernels stage it as it is."""
    x, weight, _ = make_inputs(*FAST_CASES[1])
    grad = torch.ones(1, 1, 1, 1, dtype=torch.float64).expand(2, 32, *weight.shape[-2:])
    x64, w64 = x.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    want_gx, want_gw = torch.autograd.grad(involution_reference(x64, w64, 1, 3, 1).sum(), (x64, w64))
    got_gw = cuda.backward_weight(grad, x, (7, 7), 2, (1, 1), (3, 3), (1, 1), kernels="fast")
    got_gx = cuda.backward_input(grad, weight, tuple(x.shape[-2:]), (1, 1), (3, 3), (1, 1), kernels="fast")
    torch.testing.assert_close(got_gw, want_gw)
    torch.testing.assert_close(got_gx, want_gx)


def test_emulated_generic_kernels_read_zero_strides(launched):
    """The gradient of out.sum() arrives as an expanded tensor with zero strides: no copy is needed."""
    x, weight, _ = make_inputs(*CASES[2])
    grad = torch.ones(1, 1, 1, 1, dtype=torch.float64).expand(1, 16, *weight.shape[-2:])
    expected = involution_reference(x, weight.requires_grad_(True), 3, 3, 1)
    (want,) = torch.autograd.grad(expected.sum(), weight)
    got = cuda.backward_weight(grad, x, (7, 7), 4, (3, 3), (3, 3), (1, 1))
    torch.testing.assert_close(got, want)


FLIPPED_TAP = ("xv[p * S + v];  // tap (u, v) of pixel p", "xv[p * S + (v == 0 ? K - 1 : v)];  // mutated")


def test_emulation_catches_a_flipped_tap(tmp_path, monkeypatch):
    """The emulation is able to fail: the forward kernel with tap v = 0 reading tap K-1's input does not match."""
    source = cuda.kernel_source()
    assert source.count(FLIPPED_TAP[0]) == 1
    expression = cuda.fast_expression("forward", torch.float32, 7, 1, 32)
    library = build_emulation(tmp_path, source.replace(*FLIPPED_TAP), {torch.float32: [expression]})
    monkeypatch.setattr(cuda, "launch", emulated_launch(library))
    x, weight, _ = make_inputs(*FAST_CASES[1], dtype=torch.float32)
    got = cuda.forward(x, weight, (1, 1), (3, 3), (1, 1), kernels="fast")
    want = involution_reference(x.double(), weight.double(), 1, 3, 1)
    with pytest.raises(AssertionError, match="Mismatched elements"):
        torch.testing.assert_close(got.double(), want, **_tolerances(torch.float32, want))


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
@pytest.mark.parametrize("case", CASES, ids=case_id)
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
@pytest.mark.parametrize("kernels", ["fast", "generic"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", FAST_CASES, ids=case_id)
def test_cuda_fast_and_generic_kernels_on_rednet_shapes(case, dtype, kernels):
    _compare(
        case,
        dtype,
        _on_gpu(lambda x, w, s, p, d: cuda.forward(x, w, *_pairs(s, p, d), kernels=kernels)),
        _on_gpu(lambda go, w, size, s, p, d: cuda.backward_input(go, w, size, *_pairs(s, p, d), kernels=kernels)),
        _on_gpu(lambda go, x, ks, g, s, p, d: cuda.backward_weight(go, x, ks, g, *_pairs(s, p, d), kernels=kernels)),
    )


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cuda_autograd_end_to_end(dtype):
    case = CASES[1]
    n, c, g, h, w, k, s, p, d, layout = case
    x, weight, grad = (t.cuda() for t in make_inputs(*case, dtype=dtype))
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
    assert sum(1 for (_, dtype) in cuda.compiled_modules() if dtype == torch.float32) == 1


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
