"""A model of a pair built for the benchmark (`BuiltModel`): the network on its device with
random weights, its inference and training inputs and the calls that are timed. ImageNet
classifiers are built here (RedNet, or mmdet's ResNet with a classification head); detectors
and segmentors from their OpenMMLab config, with synthetic annotated samples."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..output import REPO_ROOT
from ..mmconfig import build_model as build_config_model
from ..mmconfig import load_config, without_pretrained
from .pairs import Shapes


@dataclass
class BuiltModel:
    """A built model with its inputs and the two calls the benchmark times."""

    name: str
    model: nn.Module
    infer_batch: Any
    train_batch: Any
    forward: Callable[[nn.Module, Any], Any]  # inference output of a model (variant)
    loss: Callable[[nn.Module, Any], torch.Tensor]
    to_channels_last: Callable[[Any], Any]
    images: dict[str, int] = field(default_factory=dict)  # images per call: {"infer": n, "train": n}
    # what an inference option must leave unchanged (default: the forward output)
    check: Callable[[nn.Module, Any], Any] | None = None


class _ClassifierHead(nn.Module):
    """mmdet's ResNet stages -> global average pooling -> 1000-way fc, as scripts/get_flops.py counts it."""

    def __init__(self, depth: int):
        super().__init__()
        from mmdet.models.backbones import ResNet

        self.backbone = ResNet(depth=depth)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.backbone(x)[-1]), 1))


def _images(shape: Sequence[int], device: torch.device, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(device)


def build_classifier(name: str, model: nn.Module, shapes: Shapes, device: torch.device,
                     classes: int = 1000) -> BuiltModel:
    """An image classifier: random images in, logits out; trained with cross-entropy on random labels."""
    infer = _images(shapes[0], device)
    labels = torch.randint(0, classes, (shapes[1][0],), generator=torch.Generator().manual_seed(2))
    train = (_images(shapes[1], device, 1), labels.to(device))
    return BuiltModel(name, model.to(device), infer, train,
                   forward=lambda m, x: m(x),
                   loss=lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]),
                   to_channels_last=lambda x: x.contiguous(memory_format=torch.channels_last),
                   images={"infer": shapes[0][0], "train": shapes[1][0]})


def _build_imagenet(name: str, config: str, shapes, device: torch.device) -> BuiltModel:
    from involution_ops import RedNet

    arch, depth = config.split(":")
    model = RedNet(int(depth), num_classes=1000) if arch == "rednet" else _ClassifierHead(int(depth))
    return build_classifier(name, model, shapes, device)


def build_mm_model(config: str, scope: str, device: torch.device) -> nn.Module:
    """The model of a config of this checkout (path relative to it), random weights, on `device`."""
    from mmengine.model import revert_sync_batchnorm

    cfg = load_config(REPO_ROOT / config)
    # random weights: speed and memory do not depend on them
    model = build_config_model(without_pretrained(cfg.model), scope)
    return revert_sync_batchnorm(model).to(device)


def _det_samples(shape: Sequence[int], device: torch.device) -> list:
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    batch, _, height, width = shape
    boxes = torch.tensor([[0.08, 0.15, 0.30, 0.62], [0.45, 0.25, 0.68, 0.48],
                          [0.04, 0.75, 0.20, 0.97], [0.75, 0.38, 0.94, 0.88]])
    samples = []
    for _ in range(batch):
        pad = (-(-height // 32) * 32, -(-width // 32) * 32)
        sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                             pad_shape=pad, batch_input_shape=pad, scale_factor=(1.0, 1.0)))
        gt = InstanceData()
        gt.bboxes = (boxes * torch.tensor([width, height, width, height])).to(device)
        gt.labels = torch.tensor([0, 17, 2, 56], device=device)
        masks = torch.zeros(len(boxes), height, width, dtype=torch.uint8)  # Mask R-CNN: the boxes filled
        for i, (x1, y1, x2, y2) in enumerate(gt.bboxes.cpu().round().int().tolist()):
            masks[i, y1:y2, x1:x2] = 1
        gt.masks = BitmapMasks(masks.numpy(), height, width)
        sample.gt_instances = gt
        samples.append(sample)
    return samples


def _seg_samples(shape: Sequence[int], device: torch.device) -> list:
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    batch, _, height, width = shape
    samples = []
    for index in range(batch):
        sample = SegDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                             pad_shape=(height, width), batch_input_shape=(height, width)))
        labels = torch.randint(0, 19, (1, height, width), generator=torch.Generator().manual_seed(3 + index))
        sample.gt_sem_seg = PixelData(data=labels.to(device))
        samples.append(sample)
    return samples


def _build_openmmlab(name: str, config: str, suite: str, shapes, device: torch.device) -> BuiltModel:
    scope = "mmdet" if suite == "coco" else "mmseg"
    model = build_mm_model(config, scope, device)
    make_samples = _det_samples if suite == "coco" else _seg_samples

    def padded(shape: Sequence[int]) -> tuple[int, ...]:  # as the data preprocessor pads (size divisor 32)
        return (*shape[:2], *(-(-side // 32) * 32 for side in shape[2:]))

    infer = (_images(padded(shapes[0]), device), make_samples(shapes[0], device))
    train = (_images(padded(shapes[1]), device, 1), make_samples(shapes[1], device))

    def loss(m: nn.Module, b) -> torch.Tensor:
        return m.parse_losses(m(b[0], b[1], mode="loss"))[0]

    return BuiltModel(name, model, infer, train,
                   forward=lambda m, b: m(b[0], b[1], mode="tensor"),
                   loss=loss,
                   to_channels_last=lambda b: (b[0].contiguous(memory_format=torch.channels_last), b[1]),
                   images={"infer": shapes[0][0], "train": shapes[1][0]},
                   # the features: a two-stage detector's proposal selection (top-k of near-equal random
                   # scores) turns rounding differences into different boxes
                   check=lambda m, b: getattr(m, "_orig_mod", m).extract_feat(b[0]))


def build_model(name: str, config: str, suite: str, shapes: Shapes, device: torch.device) -> BuiltModel:
    """The model `config` of `suite` (ImageNet: "rednet:<depth>" / "resnet:<depth>") with its inputs."""
    if suite == "imagenet":
        return _build_imagenet(name, config, shapes, device)
    return _build_openmmlab(name, config, suite, shapes, device)
