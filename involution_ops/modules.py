"""`Involution`: the paper's layer (kernel generation + the involution operator).

Submodule names follow the official implementation (an mmcv `ConvModule` is a
`conv`, a `bn` and an activation), so official checkpoints load unchanged:
``conv1.conv.weight``, ``conv1.bn.*``, ``conv2.conv.weight``, ``conv2.conv.bias``.
"""
from __future__ import annotations

from typing import Callable

import torch
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
        self.padding = dilation * (kernel_size - 1) // 2

        # ceil_mode keeps the partial edge window so the map is ceil(H / s) tall,
        # exactly the operator's output size for odd kernels with this padding.
        self.avgpool = nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()
        self.conv1 = ConvNormAct(channels, channels // reduction_ratio, norm_layer=norm_layer, act_layer=act_layer)
        self.conv2 = ConvNormAct(
            channels // reduction_ratio, kernel_size * kernel_size * self.groups, norm_layer=None, act_layer=None
        )

    def kernel(self, x: torch.Tensor) -> torch.Tensor:
        """The generated kernels, shape (N, G, K, K, Ho, Wo)."""
        weight = self.conv2(self.conv1(self.avgpool(x)))
        n, _, h, w = weight.shape
        return weight.view(n, self.groups, self.kernel_size, self.kernel_size, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"Involution expects input (N, {self.channels}, H, W), got {tuple(x.shape)}"
            )
        return involution(x, self.kernel(x), self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"dilation={self.dilation}, groups={self.groups}, reduction_ratio={self.reduction_ratio}"
        )
