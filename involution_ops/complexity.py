"""Parameter and FLOP counts of a model, in the paper's convention and in full.

`paper` convention: the OpenMMLab complexity counter of 2021 that produced the
paper's FLOPs columns. Forward hooks on modules matched by *exact* type count
multiply-accumulates (MACs, not 2x) per call:

    conv            output elements * kh * kw * in_channels / groups (+ output elements with a bias)
    transposed conv input elements * kh * kw * out_channels / groups (+ output elements with a bias)
    linear          input elements * out_features
    batch/group/instance/layer norm   input elements, x2 when affine
    ReLU family     output elements
    pooling         input elements
    nn.Upsample     output elements
    involution      output elements * kh * kw (the aggregation; its kernel-generation
                    convs, norm and activation count as the modules above)

Subclasses (such as OpenMMLab's wrapper `Conv2d`/`ConvTranspose2d` classes),
types the table did not list (`nn.SyncBatchNorm`) and functional calls are not
matched, exactly as in 2021. Counts are per forward: use a batch of one.

`full` convention: every multiply-accumulate of a convolution (any class, plain
or transposed), linear layer or matrix product, and of the involution
aggregation, wherever it is issued, counted by `torch.utils.flop_counter`
(which reports 2 FLOPs per MAC). Elementwise work (norm, activation, pooling,
resizing) is not a multiply-accumulate of that kind and is left out, so on a
plain backbone `full` can sit slightly below `paper`.

Counts depend only on shapes: run them on the ``meta`` device to avoid compute.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .modules import Involution

Hook = Callable[[nn.Module, tuple, object], int]


def _first_tensor(value: object) -> torch.Tensor:
    while isinstance(value, (tuple, list)):
        value = value[0]
    return value  # type: ignore[return-value]


def _conv_macs(module: nn.Module, inputs: tuple, output: object) -> int:
    out = _first_tensor(output)
    per_position = math.prod(module.kernel_size) * module.in_channels // module.groups
    macs = out.numel() * per_position
    if module.bias is not None:
        macs += out.numel()
    return macs


def _deconv_macs(module: nn.Module, inputs: tuple, output: object) -> int:
    x = _first_tensor(inputs)
    per_position = math.prod(module.kernel_size) * module.out_channels // module.groups
    macs = x.numel() * per_position
    if module.bias is not None:
        macs += _first_tensor(output).numel()
    return macs


def _linear_macs(module: nn.Module, inputs: tuple, output: object) -> int:
    return _first_tensor(inputs).numel() * module.out_features


def _norm_macs(module: nn.Module, inputs: tuple, output: object) -> int:
    affine = getattr(module, "affine", False) or getattr(module, "elementwise_affine", False)
    return _first_tensor(inputs).numel() * (2 if affine else 1)


def _input_elements(module: nn.Module, inputs: tuple, output: object) -> int:
    return _first_tensor(inputs).numel()


def _output_elements(module: nn.Module, inputs: tuple, output: object) -> int:
    return _first_tensor(output).numel()


def _involution_macs(module: nn.Module, inputs: tuple, output: object) -> int:
    kernel = module.kernel_size
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    return _first_tensor(output).numel() * kh * kw


PAPER_RULES: dict[type[nn.Module], Hook] = {
    **dict.fromkeys((nn.Conv1d, nn.Conv2d, nn.Conv3d), _conv_macs),
    nn.ConvTranspose2d: _deconv_macs,
    nn.Linear: _linear_macs,
    **dict.fromkeys(
        (
            nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm,
            nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
        ),
        _norm_macs,
    ),
    **dict.fromkeys((nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6), _output_elements),
    **dict.fromkeys(
        (
            nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
            nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
            nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
        ),
        _input_elements,
    ),
    nn.Upsample: _output_elements,
}
"""The 2021 counter's table, less the OpenMMLab wrapper classes it did not list."""


def _paper_rule(module: nn.Module, match_subclasses: bool) -> Hook | None:
    if isinstance(module, Involution):
        return _involution_macs
    rule = PAPER_RULES.get(type(module))
    if rule is None and match_subclasses:
        for cls in type(module).__mro__[1:]:
            if cls in PAPER_RULES:
                return PAPER_RULES[cls]
    return rule


@dataclass(frozen=True)
class Complexity:
    """Counts of one model on one input (MACs per forward, parameters)."""

    params_trainable: int
    params_total: int
    macs_paper: int
    macs_full: int
    macs_paper_by_type: dict[str, int] = field(default_factory=dict)

    @property
    def params_trainable_m(self) -> float:
        return self.params_trainable / 1e6

    @property
    def params_total_m(self) -> float:
        return self.params_total / 1e6

    @property
    def gflops_paper(self) -> float:
        return self.macs_paper / 1e9

    @property
    def gflops_full(self) -> float:
        return self.macs_full / 1e9


def count_params(model: nn.Module) -> tuple[int, int]:
    """(parameters with requires_grad, all parameters), shared tensors counted once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def _as_run(model: nn.Module, inputs: torch.Tensor | Callable[[], object]) -> Callable[[], object]:
    if isinstance(inputs, torch.Tensor):
        return lambda: model(inputs)
    return inputs


def _involution_op_counted(counter: FlopCounterMode) -> bool:
    counts = counter.get_flop_counts().get("Global", {})
    return any("involution" in str(op) and flops > 0 for op, flops in counts.items())


def measure(
    model: nn.Module,
    inputs: torch.Tensor | Callable[[], object],
    *,
    match_subclasses: bool = False,
) -> Complexity:
    """Count `model` in eval mode on one forward.

    `inputs` is either the input tensor of `model(inputs)` or a callable running
    the forward to count (e.g. a detector's dummy forward over several of its
    submodules); only modules inside `model` are hooked. With
    `match_subclasses=True` the paper-convention hooks also match subclasses of
    the listed types (OpenMMLab wrappers included), a diagnostic variant.
    """
    run = _as_run(model, inputs)
    by_type: Counter[str] = Counter()
    aggregation = 0

    def make_hook(rule: Hook) -> Callable[[nn.Module, tuple, object], None]:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            nonlocal aggregation
            macs = rule(module, args, output)
            by_type[type(module).__name__] += macs
            if rule is _involution_macs:
                aggregation += macs

        return hook

    handles = []
    for module in model.modules():
        rule = _paper_rule(module, match_subclasses)
        if rule is not None:
            handles.append(module.register_forward_hook(make_hook(rule)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            run()
        trainable, total = count_params(model)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    macs_full = counter.get_total_flops() // 2
    if not _involution_op_counted(counter):
        macs_full += aggregation
    return Complexity(trainable, total, sum(by_type.values()), macs_full, dict(by_type))
