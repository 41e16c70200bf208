"""The model pieces shared by the mmdet and mmseg registrations (`mmdet.py`, `mmseg.py` here).

- `RedNet`: `involution_ops.RedNet` taking mmdet/mmseg-style arguments
  (``norm_cfg``, ``init_cfg``, ``pretrained``, ``style``...). It *is* the torch
  model (a subclass, not a wrapper), so its state-dict keys are exactly the
  official ones under ``backbone.``.
- `InvolutionFPNMixin`: turns mmdet's or mmseg's FPN into the paper's involution
  FPN. Only the output convs of the backbone levels become KxK involutions; the
  1x1 lateral convs and the stride-2 extra convs (RetinaNet's P6/P7) stay
  convolutions, as in the official ``FPN_involution``.
- `kaiming_init_convs`: the initialisation the official heads gave their
  involutions (mmcv ``ConvModule``'s: Kaiming-normal, fan_out, zero bias).

Imports mmengine and mmcv; reached only through the registrations.
"""
from __future__ import annotations

import copy
import warnings
from typing import Any, Callable, Sequence

from mmcv.cnn import build_norm_layer
from mmengine.dist import get_world_size
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import nn

from . import checkpoint_loading  # noqa: F401  (mmengine checkpoint loading on torch >= 2.6)
from ..modules import Involution
from ..rednet import RedNet as TorchRedNet

INVOLUTION_KERNEL_SIZE = 7


def norm_layer_from_cfg(norm_cfg: dict) -> Callable[[int], nn.Module]:
    """A ``channels -> norm module`` factory from an mmcv ``norm_cfg`` (BN, SyncBN, GN...)."""
    if not isinstance(norm_cfg, dict) or "type" not in norm_cfg:
        raise ValueError(
            f"norm_cfg must be a dict with a 'type', e.g. dict(type='BN', requires_grad=True); got {norm_cfg!r}"
        )
    norm_cfg = dict(norm_cfg)
    if norm_cfg["type"] == "SyncBN" and get_world_size() == 1:
        print_log(
            "RedNet: SyncBN in a single-process run computes plain batch-norm statistics "
            "(and mmengine's Runner reverts SyncBN to BN when it is not distributed).",
            logger="current",
        )

    def build(num_features: int) -> nn.Module:
        return build_norm_layer(norm_cfg, num_features)[1]

    return build


class RedNet(TorchRedNet, BaseModule):
    """RedNet backbone for mmdet 3.x / mmseg 1.x configs (``type='RedNet'``).

    Arguments follow mmdet's ResNet. Only what RedNet has is accepted: 4 stages,
    ``style='pytorch'`` (the stride sits on the involution) and plain convs
    (``conv_cfg=None``). ``norm_cfg`` (BN, SyncBN, GN...) sets the ResNet norms;
    the norms inside the involutions stay plain BatchNorm2d, as in the official
    code. ``stem_kernel_size`` defaults to 7, the stem involution of the official
    detection and segmentation backbones and their checkpoints (the ImageNet
    model has 3; loading an ImageNet checkpoint then skips that one tensor, which
    mmengine's loader reports). ``init_cfg=dict(type='Pretrained', checkpoint=...)``
    loads weights through mmengine; ``pretrained=<path>`` is the deprecated spelling.
    """

    def __init__(
        self,
        depth: int,
        in_channels: int = 3,
        stem_channels: int = 64,
        base_channels: int = 64,
        num_stages: int = 4,
        strides: Sequence[int] = (1, 2, 2, 2),
        dilations: Sequence[int] = (1, 1, 1, 1),
        out_indices: Sequence[int] = (0, 1, 2, 3),
        style: str = "pytorch",
        frozen_stages: int = -1,
        conv_cfg: dict | None = None,
        norm_cfg: dict = dict(type="BN", requires_grad=True),
        norm_eval: bool = False,
        with_cp: bool = False,
        zero_init_residual: bool = True,
        stem_kernel_size: int = INVOLUTION_KERNEL_SIZE,
        pretrained: str | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        if num_stages != 4:
            raise ValueError(f"RedNet: num_stages={num_stages} is not supported; RedNet has 4 stages (num_stages=4)")
        if style != "pytorch":
            raise ValueError(
                f"RedNet: style={style!r} is not supported; use style='pytorch' "
                "(the stride sits on the 7x7 involution, as in every official RedNet)"
            )
        if conv_cfg is not None:
            raise ValueError(f"RedNet: conv_cfg={conv_cfg!r} is not supported; leave conv_cfg=None (plain convs)")
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError("RedNet: give either init_cfg or the deprecated pretrained, not both")
            if not isinstance(pretrained, str):
                raise ValueError(f"RedNet: pretrained must be a checkpoint path or URL, got {pretrained!r}")
            warnings.warn(
                "RedNet: pretrained=... is deprecated, use init_cfg=dict(type='Pretrained', checkpoint=...)",
                DeprecationWarning,
                stacklevel=2,
            )
            init_cfg = dict(type="Pretrained", checkpoint=pretrained)
        super().__init__(
            depth,
            num_classes=0,
            out_indices=out_indices,
            frozen_stages=frozen_stages,
            norm_layer=norm_layer_from_cfg(norm_cfg),  # involution internals stay plain BN, as official
            norm_eval=norm_eval,
            with_cp=with_cp,
            zero_init_residual=zero_init_residual,
            strides=strides,
            dilations=dilations,
            in_channels=in_channels,
            stem_channels=stem_channels,
            base_channels=base_channels,
            stem_kernel_size=stem_kernel_size,
        )
        # The torch constructor ran BaseModule.__init__ with no init_cfg (cooperative
        # super()); the configured one is set now.
        self.init_cfg = copy.deepcopy(init_cfg)
        self.norm_cfg = norm_cfg

    def init_weights(self) -> None:
        """The official initialisation, or mmengine's (e.g. Pretrained) when init_cfg is set.

        The torch constructor also calls this, before init_cfg is set, so building
        the model never loads anything.
        """
        if getattr(self, "init_cfg", None):
            BaseModule.init_weights(self)
        else:
            TorchRedNet.init_weights(self)


class InvolutionFPNMixin:
    """Mix into an FPN class (mmdet's or mmseg's) to get the paper's involution FPN.

    The output conv of every backbone level (``fpn_convs[i]``, i < number of
    lateral convs) becomes ``Involution(out_channels, involution_kernel_size)``
    with no norm or activation after it; state-dict keys are the official
    ``fpn_convs.<i>.conv1.conv.weight``, ``...conv1.bn.*``, ``...conv2.conv.{weight,bias}``.
    """

    def __init__(self, *args: Any, involution_kernel_size: int = INVOLUTION_KERNEL_SIZE, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.involution_kernel_size = involution_kernel_size
        for level in range(len(self.lateral_convs)):
            self.fpn_convs[level] = Involution(self.out_channels, involution_kernel_size, 1)


def kaiming_init_convs(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) weights and zero biases for every Conv2d in module."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
