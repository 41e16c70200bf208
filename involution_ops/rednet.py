"""RedNet: ResNet with every bottleneck 3x3 conv replaced by a 7x7 involution.

Paper: "Involution: Inverting the Inherence of Convolution for Visual Recognition"
(Li et al., CVPR 2021). Plain PyTorch; the OpenMMLab wrappers live in
`involution_ops.mmdet` / `involution_ops.mmseg`.

Module and parameter names are those of the official mmcls model, so an official
ImageNet checkpoint loads with ``strict=True`` once its ``backbone.`` prefix is
stripped and ``head.fc.`` is renamed ``fc.`` (`involution_ops.conversion` does it).

    stem.0   3x3 conv stride 2 -> C/2, norm, ReLU        (stem.0.conv / stem.0.bn)
    stem.1   involution on C/2 channels                    (stem_kernel_size)
    stem.2   norm, stem.3 ReLU
    stem.4   3x3 conv -> C, norm, ReLU                      (stem.4.conv / stem.4.bn)
    maxpool  3x3 stride 2
    layer1..layer4: bottlenecks conv1/bn1, conv2 (7x7 involution)/bn2, conv3/bn3,
             downsample.0 (1x1 conv, stride on the first block) / downsample.1 (norm)
    fc       only when num_classes > 0 (after global average pooling)
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.utils.checkpoint as checkpoint
from torch import nn

from .modules import ConvNormAct, Involution

NormLayer = Callable[[int], nn.Module]

STAGE_BLOCKS: dict[int, tuple[int, int, int, int]] = {
    26: (1, 2, 4, 1),
    38: (2, 3, 5, 2),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
EXPANSION = 4
_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


class Bottleneck(nn.Module):
    """1x1 conv -> KxK involution (carries stride and dilation) -> 1x1 conv, plus shortcut."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        dilation: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
        with_cp: bool = False,
        kernel_size: int = 7,
        involution_norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        mid_channels = out_channels // EXPANSION
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.with_cp = with_cp
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 1, bias=False)
        self.bn1 = norm_layer(mid_channels)
        self.conv2 = Involution(mid_channels, kernel_size, stride, norm_layer=involution_norm_layer, dilation=dilation)
        self.bn2 = norm_layer(mid_channels)
        self.conv3 = nn.Conv2d(mid_channels, out_channels, 1, bias=False)
        self.bn3 = norm_layer(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                norm_layer(out_channels),
            )

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and torch.is_grad_enabled() and (x.requires_grad or self.training):
            out = checkpoint.checkpoint(self._residual, x, use_reentrant=False)
        else:
            out = self._residual(x)
        return self.relu(out)


class RedNet(nn.Module):
    """RedNet-26/38/50/101/152 backbone (and ImageNet classifier when num_classes > 0).

    Args:
        depth: 26, 38, 50, 101 or 152.
        num_classes: > 0 adds global average pooling and a linear ``fc``; forward then
            returns logits instead of stage features.
        out_indices: stages (0..3) whose outputs forward returns, as a tuple.
        frozen_stages: -1 freezes nothing; n >= 0 freezes the stem and stages 1..n
            (no gradients, kept in eval mode even under ``train()``).
        norm_layer: callable building a norm from a channel count (e.g. nn.BatchNorm2d,
            nn.SyncBatchNorm, ``partial(nn.GroupNorm, 32)``) for the ResNet norms: stem
            convs, bn1-bn3 of every bottleneck and the shortcut.
        involution_norm_layer: the norm inside each involution's kernel generation and
            after the stem involution. Plain BatchNorm2d in the official code whatever
            the ResNet norm (it normalises as few as 8 channels, too few for GN(32)).
        norm_eval: keep every batch norm in eval mode (frozen statistics) during training.
        with_cp: gradient checkpointing of each bottleneck (less memory, more compute).
        zero_init_residual: start every bottleneck's last norm at zero (identity blocks).
        strides, dilations: per stage; the stride sits on the involution (pytorch style)
            and on the shortcut conv, the dilation on the involutions of the stage.
        stem_kernel_size: kernel of the stem involution. 3 in the official ImageNet
            models (and the PaddleClas weights); the official detection and
            segmentation backbones use 7.
    """

    def __init__(
        self,
        depth: int,
        num_classes: int = 0,
        out_indices: Sequence[int] = (3,),
        frozen_stages: int = -1,
        norm_layer: NormLayer = nn.BatchNorm2d,
        norm_eval: bool = False,
        with_cp: bool = False,
        zero_init_residual: bool = True,
        strides: Sequence[int] = (1, 2, 2, 2),
        dilations: Sequence[int] = (1, 1, 1, 1),
        in_channels: int = 3,
        stem_channels: int = 64,
        base_channels: int = 64,
        stem_kernel_size: int = 3,
        involution_norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if depth not in STAGE_BLOCKS:
            raise ValueError(f"RedNet: depth={depth} is not one of {sorted(STAGE_BLOCKS)}")
        if len(strides) != 4 or len(dilations) != 4:
            raise ValueError(
                f"RedNet: strides {tuple(strides)} and dilations {tuple(dilations)} need one value per stage (4)"
            )
        out_indices = tuple(out_indices)
        if not out_indices or any(not 0 <= i <= 3 for i in out_indices):
            raise ValueError(f"RedNet: out_indices {out_indices} must be a non-empty subset of 0..3")
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"RedNet: frozen_stages={frozen_stages} must be in -1..4")
        self.depth = depth
        self.num_classes = num_classes
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.zero_init_residual = zero_init_residual

        half = stem_channels // 2
        self.stem = nn.Sequential(
            ConvNormAct(in_channels, half, 3, stride=2, padding=1, norm_layer=norm_layer),
            Involution(half, stem_kernel_size, 1, norm_layer=involution_norm_layer),
            involution_norm_layer(half),
            nn.ReLU(inplace=True),
            ConvNormAct(half, stem_channels, 3, padding=1, norm_layer=norm_layer),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self.stage_channels: list[int] = []
        channels_in = stem_channels
        for index, num_blocks in enumerate(STAGE_BLOCKS[depth]):
            channels_out = base_channels * EXPANSION * 2**index
            blocks = [
                Bottleneck(
                    channels_in if b == 0 else channels_out,
                    channels_out,
                    stride=strides[index] if b == 0 else 1,
                    dilation=dilations[index],
                    norm_layer=norm_layer,
                    with_cp=with_cp,
                    involution_norm_layer=involution_norm_layer,
                )
                for b in range(num_blocks)
            ]
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            self.stage_channels.append(channels_out)
            channels_in = channels_out
        self.out_channels = [self.stage_channels[i] for i in out_indices]
        self.num_features = channels_in

        if num_classes > 0:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(channels_in, num_classes)

        self.init_weights()
        self._freeze_stages()

    @property
    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{i}") for i in range(1, 5)]

    def init_weights(self) -> None:
        """The official initialisation: Kaiming-normal convs (fan_out), norms at 1/0,
        classifier N(0, 0.01) with zero bias (mmcls LinearClsHead)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, _NORM_TYPES) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        if self.zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck) and getattr(m.bn3, "weight", None) is not None:
                    nn.init.zeros_(m.bn3.weight)

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.stem, *self.stages[: self.frozen_stages]]

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> "RedNet":
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Outputs of the stages in ``out_indices``."""
        x = self.maxpool(self.stem(x))
        outs = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if self.num_classes <= 0:
            return self.forward_features(x)
        x = self.maxpool(self.stem(x))
        for stage in self.stages:
            x = stage(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))
