"""`make flops`: parameters and FLOPs of every model of the manifest that can be counted.

For each row: parameters (trainable, as the paper counted them, and all) and
GFLOPs (multiply-accumulates) in the paper's 2021 OpenMMLab convention and in
full (see involution_ops/complexity.py). Models come from the manifest
(results/paper.yaml: ImageNet architectures, and the `model_config` of every
detector and segmentor) and are counted on the ``meta`` device: only shapes
flow, nothing is computed.

Forward passes counted, as the OpenMMLab tools of 2021 did:
- ImageNet: the classifier on one 3x224x224 image (1000-class head).
- Detectors: backbone, neck and dense head on one 3x800x1280 image; two-stage
  detectors then run the box head on exactly 1000 proposals and the mask head on
  the first 100 (RoIAlign itself is not counted, so its output is a placeholder).
- Segmentors: backbone and decode head on one 3x1024x2048 image (the auxiliary
  head is not run, but its parameters count).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .. import RedNet
from ..complexity import Complexity, measure
from .cells import NO_VALUE
from .output import REPO_ROOT, markdown_table, write_atomic
from .mmconfig import build_model, load_config
from .manifest import PAPER_YAML, Manifest, Model, load_manifest

PROPOSALS = 1000  # box head input in the 2021 dummy forward
MASK_PROPOSALS = 100  # the first 100 of them reach the mask head
DEVICE = "meta"
# Rows whose published figure the notes under the table explain (see diagnostic_notes).
CONV_NECK_DETECTORS = ("retinanet_red50_fpn_1x_coco", "faster_rcnn_red50_fpn_1x_coco", "mask_rcnn_red50_fpn_1x_coco")
WRAPPER_COUNTED_DETECTOR = "mask_rcnn_red50_neck_fpn_head_1x_coco"


def _row(model: Model, config: str, counts: Complexity) -> dict:
    return {
        "name": model.name,
        "suite": model.suite,
        "config": config,
        "input_shape": list(model.input_shape),
        "params_trainable_m": round(counts.params_trainable_m, 4),
        "params_total_m": round(counts.params_total_m, 4),
        "gflops_paper": round(counts.gflops_paper, 4),
        "gflops_full": round(counts.gflops_full, 4),
    }


def blank_image(shape: list[int] | tuple[int, ...]) -> torch.Tensor:
    """A batch of one zero image of `shape` (C, H, W) on the counting device."""
    return torch.zeros(1, *shape, device=DEVICE)


def _build(factory: Callable[[], nn.Module]) -> nn.Module:
    """Build straight on the meta device (no weight init cost); fall back to CPU."""
    try:
        with torch.device(DEVICE):
            model = factory()
    except Exception:  # some constructors need real tensors; shapes are all we count
        model = factory()
    return model.to(DEVICE).eval()


def _relative(path: Path) -> str:
    try:
        return path.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


# --- ImageNet --------------------------------------------------------------

def count_rednet(depth: int, shape: tuple[int, ...] = (3, 224, 224), stem_kernel_size: int = 3,
                 with_fc: bool = True) -> Complexity:
    """The ImageNet RedNet; the variants serve the notes under the table."""
    model = _build(lambda: RedNet(depth, num_classes=1000, stem_kernel_size=stem_kernel_size))
    image = blank_image(shape)

    def pooled_features() -> torch.Tensor:
        return model.avgpool(model.forward_features(image)[-1])

    return measure(model, image if with_fc else pooled_features)


class _LastStage(nn.Module):
    def forward(self, features: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return features[-1]


def count_resnet(depth: int, shape: tuple[int, ...] = (3, 224, 224)) -> Complexity:
    """ResNet classifier: mmdet's ResNet, global average pooling and a 1000-way fc."""
    from mmdet.models.backbones import ResNet

    def factory() -> nn.Module:
        head = (nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000))
        return nn.Sequential(ResNet(depth=depth), _LastStage(), *head)

    return measure(_build(factory), blank_image(shape))


# --- OpenMMLab models -----------------------------------------------------------

def build_from_config(path: Path, scope: str, options: dict | None = None) -> nn.Module:
    """The model of an OpenMMLab config file, built on the counting device (weights not initialised)."""
    cfg = load_config(path, options)  # runs the config's custom_imports
    return _build(lambda: build_model(cfg.model, scope))


def _roi_input(extractor: nn.Module, count: int) -> torch.Tensor:
    size = extractor.roi_layers[0].output_size
    height, width = (size, size) if isinstance(size, int) else size
    return torch.zeros(count, extractor.out_channels, height, width, device=DEVICE)


def detector_forward(model: nn.Module, image: torch.Tensor) -> Callable[[], None]:
    """The mmdet 2.x `forward_dummy` on mmdet 3.x pieces (no NMS, no RoIAlign)."""

    def run() -> None:
        features = model.extract_feat(image)
        if hasattr(model, "roi_head"):
            model.rpn_head(features)
            roi_head = model.roi_head
            roi_head.bbox_head(_roi_input(roi_head.bbox_roi_extractor, PROPOSALS))
            if roi_head.with_mask:
                roi_head.mask_head(_roi_input(roi_head.mask_roi_extractor, MASK_PROPOSALS))
        else:
            model.bbox_head(features)

    return run


def count_detector(model: Model, match_subclasses: bool = False, options: dict | None = None) -> Complexity:
    """`options`: config overrides (``{"model.backbone.stem_kernel_size": 3}``), for diagnostics."""
    detector = build_from_config(model.model_config, "mmdet", options)
    forward = detector_forward(detector, blank_image(model.input_shape))
    return measure(detector, forward, match_subclasses=match_subclasses)


def count_segmentor(model: Model) -> Complexity:
    segmentor = build_from_config(model.model_config, "mmseg")
    image = blank_image(model.input_shape)
    # mmseg 0.x `forward_dummy`: backbone and decode head (the final resize is not a module)
    return measure(segmentor, lambda: segmentor.decode_head(segmentor.extract_feat(image)))


def row(model: Model) -> dict:
    """The `make flops` row of one manifest model."""
    if model.arch == "rednet":
        config = f"involution_ops.RedNet({model.depth}, num_classes=1000)"
        return _row(model, config, count_rednet(model.depth, model.input_shape))
    if model.arch == "resnet":
        config = (f"mmdet.models.backbones.ResNet(depth={model.depth}) + nn.AdaptiveAvgPool2d(1) "
                  "+ nn.Linear(2048, 1000)")
        return _row(model, config, count_resnet(model.depth, model.input_shape))
    if model.model_config is None or model.scope not in ("mmdet", "mmseg"):
        raise ValueError(f"{model.name}: nothing to count (no known arch, no model_config of an mmdet/mmseg suite)")
    counts = count_detector(model) if model.scope == "mmdet" else count_segmentor(model)
    return _row(model, _relative(model.model_config), counts)


# --- paper values, notes and the table --------------------------------------------

def published(manifest: Manifest) -> dict[str, dict]:
    """name -> {params_m, gflops, derived} of every published (or derived baseline) row."""
    return {model.name: {"params_m": model.paper.get("params_m"), "gflops": model.paper.get("gflops"),
                         "derived": bool(model.paper.get("derived", False))} for model in manifest.models}


def _gflops_text(value: float) -> str:
    return f"{value:.1f}" if value >= 100 else f"{value:.3f}" if value < 10 else f"{value:.2f}"


def diagnostic_notes(rows: list[dict], manifest: Manifest, progress: Callable[[str], None]) -> dict[str, str]:
    """Notes under rows whose published figure our paper-convention count does not
    reproduce, each with the variant counts we measured while looking for why."""
    paper = published(manifest)
    by_name = {row["name"]: row for row in rows}
    notes: dict[str, str] = {}

    rednets = [m for m in manifest.models if m.arch == "rednet" and m.name in by_name]
    if rednets:
        progress("diagnostics: ImageNet RedNet with a 7x7 stem involution, counted without the fc")
        variants = {m.name: count_rednet(m.depth, m.input_shape, stem_kernel_size=7, with_fc=False)
                    for m in rednets}
        rounded = all(
            paper[name]["gflops"] == round(v.gflops_paper, 2) and paper[name]["params_m"] == round(v.params_total_m, 2)
            for name, v in variants.items()
        )
        params_off = [name for name in variants if paper[name]["params_m"] is not None
                      and round(by_name[name]["params_total_m"], 2) != paper[name]["params_m"]]
        listing = " / ".join(f"{v.gflops_paper:.4f}" for v in variants.values())
        params_listing = " / ".join(f"{v.params_total_m:.4f}" for v in variants.values())
        gaps = [paper[name]["gflops"] - by_name[name]["gflops_paper"] for name in variants if paper[name]["gflops"]]
        gap = f"{min(gaps):.3f} to {max(gaps):.3f} G" if gaps else "slightly"
        text = (
            f"the released ImageNet models (3x3 stem involution, 1000-class fc) count {gap} under the "
            "published figures. With a 7x7 stem involution, as the paper describes the stem, "
            f"RedNet-{'/'.join(str(m.depth) for m in rednets)} have {params_listing} M parameters (fc included) "
            "and, counted without running the fc (mmcls's get_flops of 2021 counted `extract_feat`: "
            f"backbone and pooling neck), {listing} G"
            + (", every published FLOP and parameter figure to its 2 decimals: likely how they were counted"
               if rounded else "")
            + "".join(f"; the released {name} has {by_name[name]['params_total_m']:.4f} M" for name in params_off)
            + ". The rows keep the released models."
        )
        for name in variants:
            notes[name] = text

    def versus(value: float, name: str) -> str:
        figure = paper.get(name, {}).get("gflops")
        return f"{_gflops_text(value)} G" + (f" (published {figure})" if figure is not None else "")

    conv_neck = [name for name in CONV_NECK_DETECTORS if name in by_name]
    if conv_neck:
        progress("diagnostics: convolution-neck detectors with the ImageNet models' 3x3 stem involution")
        small_stem = {"model.backbone.stem_kernel_size": 3}
        counts = {name: count_detector(manifest.get(name), options=small_stem).gflops_paper for name in conv_neck}
        stem_cost = max(by_name[name]["gflops_paper"] - v for name, v in counts.items())
        text = (
            "the released detection RedNet-50 (and ours, which loads its checkpoints) has a 7x7 stem involution, "
            f"{stem_cost:.3f} G more than a 3x3 one "
            "at this input. With the 3x3 stem of the ImageNet models these detectors count "
            + ", ".join(f"{name} {versus(v, name)}" for name, v in counts.items())
            + ": the paper's convolution-neck figures match that backbone, "
            "its involution-neck figures the released one."
        )
        for name in counts:
            notes[name] = text

    name = WRAPPER_COUNTED_DETECTOR
    if name in by_name:
        progress(f"diagnostics: {name} with OpenMMLab wrapper classes counted too")
        with_wrappers = count_detector(manifest.get(name), match_subclasses=True).gflops_paper
        notes[name] = (
            "with the 2021 convention this detector counts far under its published figure; counting the "
            "OpenMMLab wrapper classes too (the mask head's 1x1 conv_logits and deconv, which later mmcv "
            f"counters listed) gives {versus(with_wrappers, name)}. The other detectors' published figures "
            "match the exact-type convention, so this row keeps it."
        )

    for name in by_name:
        if paper.get(name, {}).get("derived") and name not in notes:
            notes[name] = "baselines: the paper's figures are derived from its published reductions, rounded."
    return notes


def _delta(ours: float, figure: float | None, digits: int) -> str:
    if figure is None:
        return NO_VALUE
    diff = round(ours - figure, digits)
    if diff == 0:
        return f"{0:.{digits}f} (0.0%)"
    pct = round(100 * diff / figure, 1) if figure else 0.0
    return f"{diff:+.{digits}f} ({pct:+.1f}%)".replace("+0.0%", "0.0%").replace("-0.0%", "0.0%")


HEADERS = ["model", "suite", "input", "params paper (M)", "params trainable, ours (M)", "Δ trainable",
           "params all, ours (M)", "Δ all", "GFLOPs paper", "GFLOPs ours, paper convention", "Δ paper convention",
           "GFLOPs ours, full count", "Δ full"]
INTRO = (
    "Generated by `make flops` (scripts/get_flops.py); do not edit. GFLOPs are G multiply-accumulates "
    "per image. **Paper convention**: the OpenMMLab counter of 2021 the paper used (modules matched by "
    "exact type, involution aggregation counted, OpenMMLab wrapper classes and SyncBN not; two-stage "
    "detectors: box head on 1000 proposals, mask head on 100). **Full count**: every multiply-accumulate "
    "of convolutions, linear layers and the involution aggregation, whatever class issues it "
    "(elementwise norm, activation and pooling work left out). **Params trainable**: requires_grad "
    "only, as the paper counted (detectors freeze the stem and stage 1); **params all**: every "
    "parameter. Paper values of baselines are derived from the published reductions (rounded). Δ = ours − paper."
)


def complexity_table(rows: list[dict], paper: dict[str, dict], notes: dict[str, str]) -> str:
    """results/complexity.md: each row beside its published figures, notes numbered under the table."""
    shown = [notes[row["name"]] for row in rows if row["name"] in notes]
    footnote = {text: number for number, text in enumerate(dict.fromkeys(shown), 1)}
    cells = []
    for row in rows:
        figures = paper.get(row["name"], {})
        p_params, p_flops = figures.get("params_m"), figures.get("gflops")
        cells.append([
            row["name"] + (f" [{footnote[notes[row['name']]]}]" if row["name"] in notes else ""),
            row["suite"],
            "x".join(str(v) for v in row["input_shape"]),
            NO_VALUE if p_params is None else f"{p_params}",
            f"{row['params_trainable_m']:.2f}",
            _delta(row["params_trainable_m"], p_params, 2),
            f"{row['params_total_m']:.2f}",
            _delta(row["params_total_m"], p_params, 2),
            NO_VALUE if p_flops is None else f"{p_flops}",
            _gflops_text(row["gflops_paper"]),
            _delta(row["gflops_paper"], p_flops, 3 if row["gflops_paper"] < 10 else 1),
            _gflops_text(row["gflops_full"]),
            _delta(row["gflops_full"], p_flops, 3 if row["gflops_full"] < 10 else 1),
        ])
    lines = ["# Parameters and FLOPs of the paper's models", "", INTRO, "", markdown_table(HEADERS, cells, left=3)]
    if footnote:
        lines += ["", "Notes:", ""]
        for text, number in footnote.items():
            names = ", ".join(row["name"] for row in rows if notes.get(row["name"]) == text)
            lines.append(f"{number}. {names}: {text}")
    return "\n".join(lines) + "\n"


def make_flops(manifest: Manifest, out: Path, table: Path, only: list[str] | None = None, notes: bool = True,
               progress: Callable[[str], None] = print) -> str:
    """Count the manifest's models (or `only` these names), write the rows as JSON to `out`
    and the table to `table`; return the table. Unknown names are a ValueError."""
    models = manifest.counted()
    if only:
        unknown = sorted(set(only) - {m.name for m in models})
        if unknown:
            raise ValueError(f"unknown row(s) {unknown}; choose from {[m.name for m in models]}")
        models = [m for m in models if m.name in only]
    rows = []
    for index, model in enumerate(models, 1):
        progress(f"({index}/{len(models)}) {model.name}")
        rows.append(row(model))
    text = complexity_table(rows, published(manifest), diagnostic_notes(rows, manifest, progress) if notes else {})
    write_atomic(out, "[\n" + ",\n".join("  " + json.dumps(r) for r in rows) + "\n]\n")
    write_atomic(table, text)
    return text


def main(argv: list[str] | None = None) -> int:
    """`make flops`, `scripts/get_flops.py`, `involution-flops`: count, print the table, write both files."""
    parser = argparse.ArgumentParser(description="`make flops`: parameters and FLOPs of every model of the paper "
                                                 "and its baselines.")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results/complexity.json", help="rows as JSON")
    parser.add_argument("--table", type=Path, default=REPO_ROOT / "results/complexity.md", help="markdown table")
    parser.add_argument("--paper", type=Path, default=PAPER_YAML, help="the manifest with the published values")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="count only these rows (names as in the table)")
    parser.add_argument("--no-notes", action="store_true", help="skip the diagnostic counts behind the notes")
    args = parser.parse_args(argv)
    # deprecation chatter of the OpenMMLab builders, irrelevant to the counts
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mm(cv|det|engine|seg)\b")
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    if not args.paper.is_file():
        parser.error(f"--paper {args.paper}: no such file (the model manifest, results/paper.yaml)")
    start = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    try:
        table = make_flops(load_manifest(args.paper), args.out, args.table, args.only, not args.no_notes, progress)
    except ValueError as error:
        parser.error(str(error))
    print(table)
    progress(f"wrote {args.out} and {args.table}")
    return 0
