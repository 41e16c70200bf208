"""`Involution`: the paper's layer (kernel generation + the involution operator).

Submodule names follow the official implementation (an mmcv `ConvModule` is a
`conv`, a `bn` and an activation), so official checkpoints load unchanged:
``conv1.conv.weight``, ``conv1.bn.*``, ``conv2.conv.weight``, ``conv2.conv.bias``.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.utils.checkpoint
from torch import nn

from .ops import involution

NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[[], nn.Module]


class ConvNormAct(nn.Module):
    """Conv, optional norm, optional activation; attribute names as mmcv's ConvModule.

    The norm is always stored as ``bn`` (whatever its type) so that checkpoint keys
    do not depend on the norm chosen. The conv has a bias only when there is no norm.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        norm_layer: NormLayer | None = nn.BatchNorm2d,
        act_layer: ActLayer | None = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, bias=norm_layer is None
        )
        self.bn = norm_layer(out_channels) if norm_layer is not None else nn.Identity()
        self.activate = act_layer() if act_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


def _tracing() -> bool:
    fx = torch.fx._symbolic_trace
    symbolic = fx.is_fx_symbolic_tracing() if hasattr(fx, "is_fx_symbolic_tracing") else fx.is_fx_tracing()
    return torch.jit.is_tracing() or symbolic


class Involution(nn.Module):
    """Involution layer (Li et al., CVPR 2021).

    A KxK kernel per output pixel and per group of ``group_channels`` channels is
    generated from the input itself (average-pooled by the stride, then 1x1 conv
    C -> C/r + norm + act, then 1x1 conv C/r -> K*K*G with bias) and applied to
    the KxK neighbourhood of that pixel, shared by the channels of the group.

    Unlike the official code, the kernel map always has the output's size: for an
    odd input and stride 2 the official average pool dropped the last row/column
    and the operator failed; here the pool keeps the partial edge window (its mean
    over the pixels that exist), so even sizes give exactly the official result.

    In training, ``recompute_kernel`` (default) regenerates the K*K*G-channel kernel
    map in the backward pass instead of keeping it (the largest tensor of the block):
    the same result with less memory. Kernel generation with an eval-mode norm (as
    under ``norm_eval``) is regenerated whole from the input.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 7,
        stride: int = 1,
        reduction_ratio: int = 4,
        group_channels: int = 16,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
        dilation: int = 1,
        recompute_kernel: bool = True,
    ) -> None:
        super().__init__()
        if channels <= 0 or channels % group_channels != 0:
            raise ValueError(
                f"Involution: channels={channels} must be a positive multiple of "
                f"group_channels={group_channels}; change one of them"
            )
        if channels // reduction_ratio < 1:
            raise ValueError(
                f"Involution: reduction_ratio={reduction_ratio} leaves no channel out of "
                f"{channels}; use reduction_ratio <= {channels}"
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"Involution: kernel_size={kernel_size} must be odd and positive")
        if stride < 1 or dilation < 1:
            raise ValueError(f"Involution: stride={stride} and dilation={dilation} must be >= 1")
        self.channels = channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.dilation = dilation
        self.reduction_ratio = reduction_ratio
        self.group_channels = group_channels
        self.groups = channels // group_channels
        self.recompute_kernel = recompute_kernel
        self.padding = dilation * (kernel_size - 1) // 2

        # ceil_mode keeps the partial edge window so the map is ceil(H / s) tall,
        # exactly the operator's output size for odd kernels with this padding. With no
        # padding, count_include_pad=False gives the same mean over the pixels that exist;
        # it is set because Inductor's backward of the default divides an overhanging edge
        # window by the full s*s (pytorch/pytorch#198119): wrong gradients under torch.compile.
        self.avgpool = (
            nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
        )
        self.conv1 = ConvNormAct(channels, channels // reduction_ratio, norm_layer=norm_layer, act_layer=act_layer)
        self.conv2 = ConvNormAct(
            channels // reduction_ratio, kernel_size * kernel_size * self.groups, norm_layer=None, act_layer=None
        )

    def kernel(self, x: torch.Tensor) -> torch.Tensor:
        """The generated kernels, shape (N, G, K, K, Ho, Wo)."""
        return self._expand(self.conv1(self.avgpool(x)))

    def _expand(self, reduced: torch.Tensor) -> torch.Tensor:
        weight = self.conv2(reduced)
        n, _, h, w = weight.shape
        return weight.view(n, self.groups, self.kernel_size, self.kernel_size, h, w)

    def _aggregate(self, x: torch.Tensor, reduced: torch.Tensor) -> torch.Tensor:
        return involution(x, self._expand(reduced), self.stride, self.padding, self.dilation)

    def _aggregate_from_input(self, x: torch.Tensor) -> torch.Tensor:
        return involution(x, self.kernel(x), self.stride, self.padding, self.dilation)

    def _reduction_updates_state(self) -> bool:
        """Whether running conv1 again would change something (batch-norm statistics, or
        the collectives of a training SyncBatchNorm)."""
        return any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
            for m in self.conv1.modules()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._scripted_forward(x)
        return self._eager_forward(x)

    def _scripted_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The TorchScript path: the registered op directly (no kernel-map recomputation in
        training); the backend is chosen when it runs (INVOLUTION_BACKEND, else the device)."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"Involution expects input (N, {self.channels}, H, W), got {x.shape}")
        s, p, d = self.stride, self.padding, self.dilation
        return torch.ops.involution_ops.involution(x, self.kernel(x), [s, s], [p, p], [d, d], "auto")

    @torch.jit.unused
    def _eager_forward(self, x: torch.Tensor) -> torch.Tensor:
        tracing = _tracing()
        if not tracing and (x.dim() != 4 or x.shape[1] != self.channels):
            raise ValueError(
                f"Involution expects input (N, {self.channels}, H, W), got {tuple(x.shape)}"
            )
        if not (self.recompute_kernel and self.training and torch.is_grad_enabled() and not tracing):
            return self._aggregate_from_input(x)
        # The kernel map has K*K*G = ~3x the block's channels per pixel, the largest tensor
        # training would keep: regenerate it in backward. When conv1's norm updates nothing
        # (eval-mode BN, as with norm_eval), the whole kernel generation is regenerated from x;
        # otherwise conv1 runs once and only conv2 (no norm) is regenerated.
        if not self._reduction_updates_state():
            return torch.utils.checkpoint.checkpoint(self._aggregate_from_input, x, use_reentrant=False)
        reduced = self.conv1(self.avgpool(x))
        return torch.utils.checkpoint.checkpoint(self._aggregate, x, reduced, use_reentrant=False)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"dilation={self.dilation}, groups={self.groups}, reduction_ratio={self.reduction_ratio}"
        )
