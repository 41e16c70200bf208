"""The naive constant-shape baseline (cuda_baseline), run by the threaded host emulation of
test_op_cuda through its own Python entry points, against the float64 reference: the GPU
benchmark compares the fast kernels with it, so it must compute the operator."""
from __future__ import annotations

import ctypes

import pytest
import torch

from involution_ops.ops import cuda_baseline
from involution_ops.ops.reference import involution_reference
from test_op import make_inputs
from test_op_cuda import EMULATION_SHIM, compile_emulation

_ENTRY = r"""
extern "C" void run_{role}(const void* a, const void* b, void* out, unsigned grid, unsigned block) {{
  involution_run(grid, 1, 1, block, [&] {{
    involution_baseline_{role}((const scalar_t*)a, (const scalar_t*)b, (scalar_t*)out); }});
}}
"""


def _emulated_launch(folder):
    libraries = {}

    def build(dtype, geometry):
        code = EMULATION_SHIM + cuda_baseline.module_source(dtype, geometry)
        return compile_emulation(folder, code + "".join(_ENTRY.format(role=r) for r in cuda_baseline.KERNELS))

    def launch(role, geometry, output, inputs):
        key = (output.dtype, geometry)
        if key not in libraries:  # one compile per shape, as on the GPU
            libraries[key] = build(*key)
        library = libraries[key]
        pointers = [ctypes.c_void_p(t.data_ptr()) for t in (*inputs, output)]
        getattr(library, f"run_{role}")(*pointers, ctypes.c_uint(3), ctypes.c_uint(32))  # grid-stride wraps
        return output

    return launch


@pytest.mark.parametrize(
    "case",
    [(2, 32, 2, 9, 11, 7, 1, 3, 1, "contiguous"), (1, 16, 1, 9, 8, 3, 2, 1, 1, "contiguous"),
     (1, 8, 2, 7, 9, 5, 2, 2, 2, "contiguous")],
    ids=["k7s1", "k3s2", "k5s2d2"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_emulated_baseline_matches_reference(case, dtype, emulation_folder, monkeypatch):
    monkeypatch.setattr(cuda_baseline, "launch", _emulated_launch(emulation_folder))
    n, c, g, h, w, k, s, p, d, _ = case
    x, weight, grad = make_inputs(*case, dtype=dtype)
    x64, w64 = x.double().requires_grad_(True), weight.double().requires_grad_(True)
    want = involution_reference(x64, w64, s, p, d)
    want_gx, want_gw = torch.autograd.grad(want, (x64, w64), grad.double())
    pair = (s, s), (p, p), (d, d)
    got = cuda_baseline.forward(x, weight, *pair)
    got_gx = cuda_baseline.backward_input(grad, weight, (h, w), *pair)
    got_gw = cuda_baseline.backward_weight(grad, x, (k, k), g, *pair)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for result, expected in ((got, want), (got_gx, want_gx), (got_gw, want_gw)):
        torch.testing.assert_close(result.double(), expected.detach(), **tol)


def test_rednet50_geometries_are_the_stage_shapes():
    shapes = {name: (g.c, g.h, g.groups, g.kh) for name, g in cuda_baseline.rednet50_geometries().items()}
    assert shapes == {"stage1": (64, 56, 4, 7), "stage2": (128, 28, 8, 7), "stage3": (256, 14, 16, 7),
                      "stage4": (512, 7, 32, 7)}
