"""`Involution` stacks under torch.compile's default backend (Inductor), against eager
with the CPU kernel and eager with the reference backend: outputs, every gradient
(input, kernel generation, norm) and the batch-norm statistics.

The input is odd-sized so that the stride-2 layer's kernel-generation pool has
overhanging edge windows: Inductor's backward of AvgPool2d(ceil_mode=True) with the
default count_include_pad=True divides those by the full window (pytorch/pytorch#198119),
which once gave input gradients off by a third while the forward matched.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from involution_ops import Involution

pytestmark = pytest.mark.slow

MODES = {
    "train": dict(module_train=True, norm_train=True),  # conv1 runs once, conv2 regenerated in backward
    "norm_eval": dict(module_train=True, norm_train=False),  # whole kernel generation regenerated
    "eval": dict(module_train=False, norm_train=False),
}


def _stack(mode: str) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        Involution(16, kernel_size=7, stride=1, group_channels=8),
        nn.ReLU(),
        Involution(16, kernel_size=3, stride=2, group_channels=8),
    ).double()
    for module in model.modules():  # statistics that are not the identity, so eval-mode BN matters
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    flags = MODES[mode]
    model.train(flags["module_train"])
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.train(flags["norm_train"])
    return model


def _run(model: nn.Module, x: torch.Tensor, grad_out: torch.Tensor):
    x = x.clone().requires_grad_()
    out = model(x)
    out.backward(grad_out)
    model = getattr(model, "_orig_mod", model)  # the module a compiled wrapper runs
    grads = {"input": x.grad, **{name: p.grad for name, p in model.named_parameters()}}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    return out.detach(), grads, buffers


@pytest.mark.parametrize("mode", list(MODES))
def test_compiled_involution_stack_matches_eager_and_reference(mode, monkeypatch):
    torch.manual_seed(1)
    x = torch.randn(2, 16, 15, 13, dtype=torch.float64)
    grad_out = torch.randn(2, 16, 8, 7, dtype=torch.float64)

    eager = _run(_stack(mode), x, grad_out)
    torch._dynamo.reset()
    compiled_model = torch.compile(_stack(mode), fullgraph=True)  # default backend: Inductor
    compiled = _run(compiled_model, x, grad_out)
    monkeypatch.setenv("INVOLUTION_BACKEND", "reference")
    reference = _run(_stack(mode), x, grad_out)

    assert set(compiled[1]) == set(eager[1]) and len(eager[1]) == 11  # input + 10 parameters
    for name, other in (("eager", eager), ("reference backend", reference)):
        torch.testing.assert_close(compiled[0], other[0], rtol=1e-9, atol=1e-11, msg=f"output vs {name}")
        for key, grad in other[1].items():
            assert grad is not None and compiled[1][key] is not None, key
            torch.testing.assert_close(
                compiled[1][key], grad, rtol=1e-9, atol=1e-11, msg=lambda m: f"grad of {key} vs {name}: {m}"
            )
        for key, buffer in other[2].items():
            torch.testing.assert_close(compiled[2][key], buffer, rtol=1e-9, atol=1e-11, msg=f"{key} vs {name}")
