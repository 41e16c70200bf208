"""Registers the paper's models into mmdet 3.x's MODELS; configs load it with

    custom_imports = dict(imports=['involution_ops.mmdet'], allow_failed_imports=False)

Types: ``RedNet`` (backbone), ``InvolutionFPN`` (FPN whose output convs are 7x7
involutions), ``InvolutionRPNHead`` (RPN head whose 3x3 conv is a 7x7 involution)
and ``InvolutionFCNMaskHead`` (mask head whose convs are 7x7 involutions + ReLU).
Parameter names are the official ones (``FPN_involution``, ``RPNHead_involution``,
``FCNMaskHead_involution``), so official checkpoints load. Nothing is written
into mmdet's installation.
"""
from __future__ import annotations

from typing import Any

from mmdet.models.dense_heads import RPNHead
from mmdet.models.necks import FPN
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.registry import MODELS
from torch import nn

from . import checkpoint_loading  # noqa: F401  (mmengine checkpoint loading on torch >= 2.6)
from .models import INVOLUTION_KERNEL_SIZE, InvolutionFPNMixin, RedNet, kaiming_init_convs
from ..modules import Involution

__all__ = ["RedNet", "InvolutionFPN", "InvolutionRPNHead", "InvolutionFCNMaskHead"]

MODELS.register_module("RedNet", module=RedNet)


@MODELS.register_module()
class InvolutionFPN(InvolutionFPNMixin, FPN):
    """mmdet's FPN with 7x7 involutions as the output convs of the backbone levels."""


# The official head left its involution with mmcv ConvModule's Kaiming init and
# drew only the two 1x1 predictors from N(0, 0.01).
_RPN_INIT = [
    dict(type="Kaiming", layer="Conv2d"),
    dict(type="Normal", std=0.01, override=[dict(name="rpn_cls"), dict(name="rpn_reg")]),
]


@MODELS.register_module()
class InvolutionRPNHead(RPNHead):
    """RPN head whose shared 3x3 conv is a 7x7 involution (then ReLU, as mmdet's RPNHead).

    An involution keeps the channel count, so ``feat_channels`` must equal ``in_channels``.
    """

    def __init__(
        self,
        in_channels: int,
        involution_kernel_size: int = INVOLUTION_KERNEL_SIZE,
        num_convs: int = 1,
        init_cfg: Any = _RPN_INIT,
        **kwargs: Any,
    ) -> None:
        if num_convs != 1:
            raise ValueError(f"InvolutionRPNHead: num_convs={num_convs} is not supported; use num_convs=1")
        self.involution_kernel_size = involution_kernel_size  # read by _init_layers
        super().__init__(in_channels, num_convs=num_convs, init_cfg=init_cfg, **kwargs)

    def _init_layers(self) -> None:
        if self.feat_channels != self.in_channels:
            raise ValueError(
                f"InvolutionRPNHead: feat_channels={self.feat_channels} must equal in_channels="
                f"{self.in_channels} (an involution keeps the channel count); set them equal"
            )
        super()._init_layers()
        self.rpn_conv = Involution(self.in_channels, self.involution_kernel_size, 1)


@MODELS.register_module()
class InvolutionFCNMaskHead(FCNMaskHead):
    """FCN mask head whose convs are 7x7 involutions, each followed by ReLU.

    Keys ``convs.<i>.0.conv1.conv.weight``... as the official head. An involution
    keeps the channel count, so ``conv_out_channels`` must equal ``in_channels``;
    ``conv_kernel_size``, ``conv_cfg`` and ``norm_cfg`` do not apply to the involutions.
    """

    def __init__(self, *args: Any, involution_kernel_size: int = INVOLUTION_KERNEL_SIZE, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.num_convs > 0 and self.conv_out_channels != self.in_channels:
            raise ValueError(
                f"InvolutionFCNMaskHead: conv_out_channels={self.conv_out_channels} must equal "
                f"in_channels={self.in_channels} (an involution keeps the channel count); set them equal"
            )
        self.involution_kernel_size = involution_kernel_size
        self.convs = nn.ModuleList(
            nn.Sequential(Involution(self.in_channels, involution_kernel_size, 1), nn.ReLU())
            for _ in range(self.num_convs)
        )

    def init_weights(self) -> None:
        super().init_weights()
        kaiming_init_convs(self.convs)
