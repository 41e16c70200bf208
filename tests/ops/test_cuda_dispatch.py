"""cuda.choose_kernel: which instantiation a call runs and why it falls back (CPU only: reads
shapes, strides and dtype; meta tensors stand in for data)."""
from __future__ import annotations

import pytest
import torch

from involution_ops.ops import cuda


def _forward_choice(n=8, c=64, h=56, w=56, k=7, s=1, p=3, d=1, groups=None, dtype=torch.float32, kernels="auto",
                    layout=None):
    groups = groups if groups is not None else c // 16
    ho, wo = (h + 2 * p - d * (k - 1) - 1) // s + 1, (w + 2 * p - d * (k - 1) - 1) // s + 1
    x = torch.empty(n, c, h, w, dtype=dtype, device="meta")
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.empty(n, groups, k, k, ho, wo, dtype=dtype, device="meta")
    return cuda.choose_kernel("forward", dtype, [x, weight], (n, c, ho, wo), groups, (k, k), (s, s), (p, p), (d, d),
                              kernels)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("k, s", [(7, 1), (3, 1), (7, 2), (3, 2)])
def test_rednet_shapes_get_the_fast_kernel(dtype, k, s):
    choice = _forward_choice(k=k, s=s, p=(k - 1) // 2, dtype=dtype, layout="channels_last")
    assert choice.fast and choice.reason == "" and choice.index_bits == 32
    assert choice.expression == cuda.fast_expression("forward", dtype, k, s, 32)
    assert choice.expression in cuda.name_expressions(dtype)  # compiled with the dtype's module
    th, tw, p = cuda.fast_tile(k, s, dtype)
    ho = (56 - 1) // s + 1
    assert choice.grid == (-(-ho // tw), -(-ho // th), 8 * 4) and choice.block == th * tw // p


@pytest.mark.parametrize(
    "change, reason",
    [
        (dict(k=5, p=2), "kernel size (5, 5)"),
        (dict(d=2, p=6), "dilation (2, 2)"),
        (dict(s=3), "stride (3, 3)"),
        (dict(p=0), "padding (0, 0)"),
        (dict(groups=8), "64 channels in 8 groups"),
        (dict(n=20000, h=8, w=8), "batch x groups = 80000"),
    ],
)
def test_fallback_names_the_reason(change, reason):
    choice = _forward_choice(**change)
    assert not choice.fast and reason in choice.reason
    assert choice.expression == cuda.generic_expression("forward", torch.float32)
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        _forward_choice(kernels="fast", **change)


def test_generic_on_request():
    choice = _forward_choice(kernels="generic")
    assert not choice.fast and choice.expression == cuda.generic_expression("forward", torch.float32)
    assert choice.block == cuda.THREADS_PER_BLOCK and choice.grid[0] == -(-8 * 64 * 56 * 56 // cuda.THREADS_PER_BLOCK)


def test_grad_input_of_stride_two_tiles_the_input():
    go = torch.empty(2, 32, 14, 14, device="meta")
    weight = torch.empty(2, 2, 7, 7, 14, 14, device="meta")
    choice = cuda.choose_kernel("backward_input", torch.float32, [go, weight], (2, 32, 28, 28), 2, (7, 7), (2, 2),
                                (3, 3), (1, 1))
    th, tw, p = cuda.fast_tile(7, 2, torch.float32, "backward_input")
    assert choice.fast and choice.expression == cuda.fast_expression("backward_input", torch.float32, 7, 2, 32)
    assert choice.grid == (-(-28 // tw), -(-28 // th), 4) and choice.block == th * tw // p
    assert (th // 2) * (tw // 2 // p) % 32 == 0  # each of the 4 parity classes is whole warps


def test_offsets_beyond_32_bits_choose_the_64bit_instantiation():
    n, c, h, w = 2, 32, 20, 20
    x = torch.empty_strided((n, c, h, w), (2**31, h * w, w, 1), device="meta")  # a sliced batch far apart
    weight = torch.empty(n, 2, 7, 7, h, w, device="meta")
    choice = cuda.choose_kernel("forward", torch.float32, [x, weight], (n, c, h, w), 2, (7, 7), (1, 1), (3, 3), (1, 1))
    assert choice.fast and choice.index_bits == 64 and choice.expression.endswith("long long>")


def test_bad_arguments():
    with pytest.raises(ValueError, match="kernels='fastest'"):
        _forward_choice(kernels="fastest")
    with pytest.raises(TypeError, match="unsupported dtype"):
        _forward_choice(dtype=torch.int32)
