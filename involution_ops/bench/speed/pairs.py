"""Which models `make bench` measures: each paper model with the ResNet baseline it is compared
with (`ModelPair`), from the model manifest, and the input shapes per suite."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..output import REPO_ROOT

SUITES = ("imagenet", "coco", "cityscapes")

Shapes = tuple[tuple[int, ...], tuple[int, ...]]
"""(inference input shape, training input shape), batch first."""

# Inference at batch 1 as mmdet's benchmark.py (ImageNet: 8); training at the papers' images per
# GPU (2 for the detectors and segmentors; UPerNet's 1x1 pyramid pooling cannot train BN on one
# image). --quick shrinks them.
SHAPES: dict[str, Shapes] = {
    "imagenet": ((8, 3, 224, 224), (8, 3, 224, 224)),
    "coco": ((1, 3, 800, 1333), (2, 3, 800, 1333)),
    "cityscapes": ((1, 3, 1024, 2048), (2, 3, 512, 1024)),  # whole image / training crop
}
QUICK_SHAPES: dict[str, Shapes] = {
    "imagenet": ((2, 3, 32, 32), (2, 3, 32, 32)),
    "coco": ((1, 3, 128, 160), (2, 3, 128, 160)),
    "cityscapes": ((1, 3, 128, 256), (2, 3, 64, 128)),
}


@dataclass(frozen=True)
class ModelPair:
    """A model of the paper (a manifest `Model` by name) and the ResNet baseline it is measured against."""

    model: str
    config: str  # "rednet:<depth>" for ImageNet, else a config path relative to the repository
    baseline: str
    baseline_config: str  # "resnet:<depth>" for ImageNet
    suite: str
    shapes: Shapes


def paper_pairs(manifest=None) -> list[ModelPair]:
    """Every paper model next to the ResNet it is measured against, from the model manifest
    (involution_ops.bench.manifest): ImageNet RedNets against the same-depth ResNet (ResNet-50 for
    RedNet-26/38, which mmdet's ResNet does not build), detectors and segmentors against the
    baseline their manifest row names."""
    if manifest is None:
        from ..manifest import load_manifest

        manifest = load_manifest()

    def relative(path: Path) -> str:
        return path.relative_to(REPO_ROOT).as_posix()

    pairs = []
    for model in manifest.models:
        if model.is_baseline:
            continue
        if model.suite == "imagenet":
            depth = int(model.depth)
            base_depth = depth if depth in (50, 101, 152) else 50
            pairs.append(ModelPair(model.name, f"rednet:{depth}", f"ResNet-{base_depth}", f"resnet:{base_depth}",
                                   "imagenet", SHAPES["imagenet"]))
        else:
            baseline = manifest.get(model.baseline)
            pairs.append(ModelPair(model.name, relative(model.config), baseline.name, relative(baseline.config),
                                   model.suite, SHAPES[model.suite]))
    return pairs


def select(pairs: Sequence[ModelPair], names: Sequence[str] | None = None,
           suites: Sequence[str] | None = None) -> list[ModelPair]:
    """The pairs whose model is named (exact name, or a substring matching exactly one model) and/or of the suites."""
    chosen = list(pairs)
    if suites:
        unknown = sorted(set(suites) - set(SUITES))
        if unknown:
            raise ValueError(f"--suite {', '.join(unknown)}: not a suite; choose from {', '.join(SUITES)}")
        chosen = [p for p in chosen if p.suite in suites]
    if names:
        picked = []
        for name in names:
            exact = [p for p in chosen if p.model == name]
            partial = exact or [p for p in chosen if name.lower() in p.model.lower()]
            if not partial:
                raise ValueError(f"--models {name}: no such model{' in the suites chosen' if suites else ''}; "
                                 f"known: {', '.join(p.model for p in chosen)}")
            picked += [p for p in partial if p not in picked]
        chosen = picked
    return chosen


def shape_label(shape: Sequence[int]) -> str:
    """`8x3x224x224`."""
    return "x".join(str(s) for s in shape)
