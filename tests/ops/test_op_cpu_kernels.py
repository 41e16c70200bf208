"""The compiled CPU kernel's shape specialisations against the plain-PyTorch reference.

The kernel picks 8 or 16 lanes from the row length, blocks channels by 4 (with a
remainder), blocks kernel columns by 4/2/1 in grad-weight, splits strided rows
into column phases, and splits rows into per-thread blocks; the cases below make
each of those paths run (RedNet-like narrow 7x7 and 14x14 maps included).
"""
from __future__ import annotations

import pytest
import torch

from involution_ops.ops.reference import involution_reference


def _out(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


# (n, c, groups, h, w, k, stride, padding, dilation, channels_last)
CASES = [
    (8, 64, 4, 7, 7, 7, 1, 3, 1, False),  # 7-wide rows: 8 lanes; 16 channels per group: 4 blocks of 4
    (1, 32, 2, 14, 14, 7, 1, 3, 1, True),  # 14-wide rows: 16 lanes; channels_last input
    (2, 12, 2, 14, 14, 3, 1, 1, 1, False),  # 6 channels per group: a block of 4 and 2 single channels
    (1, 16, 1, 16, 56, 7, 1, 3, 1, False),  # 56 columns: 7 blocks of 8, no padding lanes
    (2, 16, 4, 28, 28, 7, 2, 3, 1, False),  # stride 2, even input: two column phases
    (1, 8, 2, 13, 27, 7, 2, 3, 1, True),  # stride 2, odd input
    (8, 32, 2, 9, 11, 5, 2, 2, 1, False),  # stride 2, odd sizes, batch 8, K=5 (taps 4 + 1)
    (1, 3, 1, 10, 17, 3, 3, 1, 1, False),  # stride 3, one channel per block remainder, K=3 (taps 2 + 1)
    (2, 8, 4, 12, 19, 3, 1, 2, 2, False),  # dilation 2
    (1, 16, 2, 11, 23, 7, 2, 6, 2, True),  # dilation 2 with stride 2: odd tap phases
    (1, 4, 4, 9, 40, 1, 1, 0, 1, False),  # K=1, one channel per group
    (3, 16, 1, 5, 5, 7, 1, 3, 1, False),  # taps reaching past both borders of a 5x5 map
    (1, 16, 1, 6, 300, 7, 1, 3, 1, False),  # wide rows: grad-input stages fewer rows per task
]


def _case_id(case):
    n, c, g, h, w, k, s, p, d, cl = case
    return f"n{n}c{c}g{g}-{h}x{w}-k{k}s{s}p{p}d{d}" + ("-cl" if cl else "")


def _inputs(case, dtype, seed=0):
    n, c, g, h, w, k, s, p, d, channels_last = case
    gen = torch.Generator().manual_seed(seed)
    ho, wo = _out(h, k, s, p, d), _out(w, k, s, p, d)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64).to(dtype)
    weight = torch.randn(n, g, k, k, ho, wo, generator=gen, dtype=torch.float64).to(dtype)
    grad = torch.randn(n, c, ho, wo, generator=gen, dtype=torch.float64).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        grad = grad.contiguous(memory_format=torch.channels_last)
    return x, weight, grad


def _expected(x, weight, grad, s, p, d):
    """Reference forward and autograd gradients in float64, from the same (possibly rounded) inputs."""
    x64 = x.detach().double().requires_grad_(True)
    w64 = weight.detach().double().requires_grad_(True)
    out = involution_reference(x64, w64, s, p, d)
    gx, gw = torch.autograd.grad(out, (x64, w64), grad.double())
    return out.detach(), gx, gw


def _run(kernel, x, weight, grad, case):
    _, _, g, h, w, k, s, p, d, _ = case
    st, pad, dil = [s, s], [p, p], [d, d]
    return (
        kernel.forward(x, weight, st, pad, dil),
        kernel.backward_input(grad, weight, h, w, st, pad, dil),
        kernel.backward_weight(grad, x, k, k, g, st, pad, dil),
    )


def _check(got, want, rtol, atol_scale):
    for name, a, b in zip(("forward", "grad input", "grad weight"), got, want):
        assert a.shape == b.shape, name
        atol = atol_scale * max(b.abs().max().item(), 1.0)
        torch.testing.assert_close(a.double(), b, rtol=rtol, atol=atol, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_float64(cpu_kernel, case):
    x, weight, grad = _inputs(case, torch.float64)
    _check(_run(cpu_kernel, x, weight, grad, case), _expected(x, weight, grad, *case[6:9]), 1e-12, 1e-12)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_float32(cpu_kernel, case):
    x, weight, grad = _inputs(case, torch.float32)
    got = _run(cpu_kernel, x, weight, grad, case)
    assert all(t.dtype == torch.float32 for t in got)
    _check(got, _expected(x, weight, grad, *case[6:9]), 1e-4, 1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[5], CASES[9]], ids=_case_id)
def test_low_precision_accumulates_in_float32(cpu_kernel, case, dtype):
    x, weight, grad = _inputs(case, dtype)
    got = _run(cpu_kernel, x, weight, grad, case)
    assert all(t.dtype == dtype for t in got)
    eps = torch.finfo(dtype).eps
    # float32 accumulation: essentially only the final rounding to `dtype` remains
    _check(got, _expected(x, weight, grad, *case[6:9]), eps, eps)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("case", [CASES[0], CASES[4], CASES[12]], ids=_case_id)
def test_thread_count_changes_row_blocks_not_results(cpu_kernel, case, threads):
    """Rows per task follow the thread count; every partition must give the reference result."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x, weight, grad = _inputs(case, torch.float64, seed=1)
        got = _run(cpu_kernel, x, weight, grad, case)
    finally:
        torch.set_num_threads(before)
    _check(got, _expected(x, weight, grad, *case[6:9]), 1e-12, 1e-12)
