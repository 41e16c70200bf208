"""Involution module: official key layout, kernel generation and aggregation against
an unfold-based re-derivation of the paper's formula, odd sizes, dilation, errors."""
from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from involution_ops import Involution


def unfold_involution(module: Involution, x: torch.Tensor, pool=None) -> torch.Tensor:
    """The paper's layer written out with F.unfold (as the official naive version does),
    using the module's parameters but none of its code. ``pool`` overrides the kernel
    generator's input (the average-pooled x)."""
    s, k, d = module.stride, module.kernel_size, module.dilation
    pooled = pool if pool is not None else (F.avg_pool2d(x, s, s) if s > 1 else x)
    bn = module.conv1.bn
    h = F.conv2d(pooled, module.conv1.conv.weight)
    h = F.batch_norm(h, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    kernel = F.conv2d(F.relu(h), module.conv2.conv.weight, module.conv2.conv.bias)
    n, _, ho, wo = kernel.shape
    g, c = module.groups, module.channels
    patches = F.unfold(x, k, dilation=d, padding=d * (k - 1) // 2, stride=s)
    patches = patches.view(n, g, c // g, k * k, ho, wo)
    return (kernel.view(n, g, 1, k * k, ho, wo) * patches).sum(dim=3).view(n, c, ho, wo)


def randomised(module: Involution) -> Involution:
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)
        module.conv1.bn.running_mean.normal_(0, 0.2)
        module.conv1.bn.running_var.uniform_(0.5, 1.5)
    return module.eval()


def test_state_dict_keys_and_shapes_match_the_official_layer():
    module = Involution(64, kernel_size=7, stride=2)
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert shapes == {
        "conv1.conv.weight": (16, 64, 1, 1),
        "conv1.bn.weight": (16,),
        "conv1.bn.bias": (16,),
        "conv1.bn.running_mean": (16,),
        "conv1.bn.running_var": (16,),
        "conv1.bn.num_batches_tracked": (),
        "conv2.conv.weight": (7 * 7 * 4, 16, 1, 1),
        "conv2.conv.bias": (7 * 7 * 4,),
    }
    assert (module.channels, module.kernel_size, module.stride, module.groups) == (64, 7, 2, 4)


@pytest.mark.parametrize("stride,size", [(1, (9, 11)), (2, (12, 10)), (1, (5, 5))])
def test_matches_unfold_formula(stride, size):
    torch.manual_seed(0)
    module = randomised(Involution(32, kernel_size=7, stride=stride))
    x = torch.randn(2, 32, *size)
    expected = unfold_involution(module, x)
    out = module(x)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_dilation_and_custom_kernel():
    torch.manual_seed(1)
    module = randomised(Involution(16, kernel_size=3, stride=1, dilation=2))
    x = torch.randn(1, 16, 10, 13)
    torch.testing.assert_close(module(x), unfold_involution(module, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(7, 7), (9, 12), (1, 3), (13, 5)])
def test_odd_sizes_with_stride_two_keep_kernel_map_and_output_aligned(size):
    # The official layer failed here: its kernel map was floor(H/2), the output ceil(H/2).
    torch.manual_seed(2)
    module = randomised(Involution(16, kernel_size=7, stride=2))
    x = torch.randn(1, 16, *size)
    out = module(x)
    ho, wo = math.ceil(size[0] / 2), math.ceil(size[1] / 2)
    assert out.shape == (1, 16, ho, wo)
    # The edge kernels come from the mean of the pixels that exist in the 2x2 window.
    padded = F.pad(x, (0, 2 * wo - size[1], 0, 2 * ho - size[0]))
    counts = F.pad(torch.ones(1, 1, *size), (0, 2 * wo - size[1], 0, 2 * ho - size[0]))
    pooled = F.avg_pool2d(padded, 2, 2) / F.avg_pool2d(counts, 2, 2)
    torch.testing.assert_close(out, unfold_involution(module, x, pool=pooled), rtol=1e-5, atol=1e-5)


def test_gradients_match_finite_differences():
    torch.manual_seed(3)
    module = randomised(Involution(16, kernel_size=3, stride=2)).double()
    x = torch.randn(1, 16, 3, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_group_norm_keeps_key_names():
    module = Involution(32, norm_layer=functools.partial(nn.GroupNorm, 4), act_layer=nn.SiLU)
    assert isinstance(module.conv1.bn, nn.GroupNorm) and isinstance(module.conv1.activate, nn.SiLU)
    assert set(module.state_dict()) == {
        "conv1.conv.weight", "conv1.bn.weight", "conv1.bn.bias", "conv2.conv.weight", "conv2.conv.bias"
    }
    assert module(torch.randn(2, 32, 6, 6)).shape == (2, 32, 6, 6)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(channels=24), "multiple of group_channels"),
        (dict(channels=16, kernel_size=4), "odd"),
        (dict(channels=16, reduction_ratio=32), "reduction_ratio"),
        (dict(channels=16, stride=0), "stride"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Involution(**kwargs)


def test_wrong_input_channels_are_named():
    with pytest.raises(ValueError, match=r"\(N, 32, H, W\)"):
        Involution(32)(torch.randn(1, 16, 8, 8))


@pytest.mark.parametrize("norm_training", [True, False], ids=["norm-updates-stats", "norm-eval"])
def test_recomputed_kernel_map_gives_identical_training_step(norm_training):
    """Regenerating the kernel map in backward (the default) changes memory, nothing else:
    same outputs, same gradients, batch-norm statistics updated once (or not at all when
    the norm is in eval mode, as under norm_eval, where the whole generation is redone)."""
    torch.manual_seed(0)
    kept = Involution(32, kernel_size=7, stride=2, recompute_kernel=False).train()
    kept.conv1.bn.train(norm_training)
    recomputed = copy.deepcopy(kept)
    recomputed.recompute_kernel = True
    x = torch.randn(2, 32, 11, 9)
    outputs, grads = [], []
    for module in (kept, recomputed):
        inp = x.clone().requires_grad_(True)
        out = module(inp)
        out.square().sum().backward()
        outputs.append(out)
        grads.append([inp.grad] + [p.grad for p in module.parameters()])
    torch.testing.assert_close(outputs[0], outputs[1])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    for key, value in kept.state_dict().items():
        torch.testing.assert_close(recomputed.state_dict()[key], value)
    assert recomputed.conv1.bn.num_batches_tracked.item() == int(norm_training)


def test_module_traces_to_one_involution_op_with_fx_and_jit():
    module = Involution(16, kernel_size=3, stride=2).eval()
    x = torch.randn(2, 16, 9, 8)
    graph_module = torch.fx.symbolic_trace(module)
    calls = [n for n in graph_module.graph.nodes if n.op == "call_function" and "involution" in str(n.target)]
    assert len(calls) == 1
    torch.testing.assert_close(graph_module(x), module(x))
    traced = torch.jit.trace(module, x)
    torch.testing.assert_close(traced(x), module(x))
