#!/usr/bin/env python
"""`make flops`: parameters and FLOPs of every model of the paper and its baselines.

For each row: parameters (trainable, as the paper counted them, and all) and
GFLOPs (multiply-accumulates) in the paper's 2021 OpenMMLab convention and in
full (see involution_ops/complexity.py). Models come from our configs
(det_configs/_base_/models, seg_configs/_base_/models) and are counted on the
``meta`` device: only shapes flow, nothing is computed.

Forward passes counted, as the OpenMMLab tools of 2021 did:
- ImageNet: the classifier on one 3x224x224 image (1000-class head).
- Detectors: backbone, neck and dense head on one 3x800x1280 image; two-stage
  detectors then run the box head on exactly 1000 proposals and the mask head on
  the first 100 (RoIAlign itself is not counted, so its output is a placeholder).
- Segmentors: backbone and decode head on one 3x1024x2048 image (the auxiliary
  head is not run, but its parameters count).

    python scripts/get_flops.py --out results/complexity.json --table results/complexity.md
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from involution_ops import RedNet  # noqa: E402
from involution_ops.complexity import Complexity, measure  # noqa: E402

INPUT_SHAPES = {"imagenet": [3, 224, 224], "coco": [3, 800, 1280], "cityscapes": [3, 1024, 2048]}
IMAGENET_DEPTHS = (26, 38, 50, 101, 152)
DETECTORS = (
    "faster_rcnn_red50_fpn",
    "faster_rcnn_red50_neck_fpn",
    "faster_rcnn_red50_neck_fpn_head",
    "mask_rcnn_red50_fpn",
    "mask_rcnn_red50_neck_fpn",
    "mask_rcnn_red50_neck_fpn_head",
    "retinanet_red50_fpn",
    "retinanet_red50_neck_fpn",
    "faster_rcnn_r50_fpn",
    "mask_rcnn_r50_fpn",
    "retinanet_r50_fpn",
)
SEGMENTORS = ("fpn_red50", "fpn_red50_neck", "upernet_red50", "fpn_r50", "upernet_r50")
PROPOSALS = 1000  # box head input in the 2021 dummy forward
MASK_PROPOSALS = 100  # the first 100 of them reach the mask head
DEVICE = "meta"


def det_name(model: str) -> str:
    return f"{model}_1x_coco"


def seg_name(model: str) -> str:
    return f"{model}_512x1024_80k_cityscapes"


def _row(name: str, task: str, config: str, shape: list[int], counts: Complexity) -> dict:
    return {
        "name": name,
        "task": task,
        "config": config,
        "input_shape": list(shape),
        "params_trainable_m": round(counts.params_trainable_m, 4),
        "params_total_m": round(counts.params_total_m, 4),
        "gflops_paper": round(counts.gflops_paper, 4),
        "gflops_full": round(counts.gflops_full, 4),
    }


def _image(shape: list[int]) -> torch.Tensor:
    return torch.zeros(1, *shape, device=DEVICE)


def _build(factory: Callable[[], nn.Module]) -> nn.Module:
    """Build straight on the meta device (no weight init cost); fall back to CPU."""
    try:
        with torch.device(DEVICE):
            model = factory()
    except Exception:  # some constructors need real tensors; shapes are all we count
        model = factory()
    return model.to(DEVICE).eval()


# --- ImageNet --------------------------------------------------------------

def count_rednet(depth: int, stem_kernel_size: int = 3, with_fc: bool = True) -> Complexity:
    """The ImageNet RedNet; the variants serve the notes under the table."""
    model = _build(lambda: RedNet(depth, num_classes=1000, stem_kernel_size=stem_kernel_size))
    image = _image(INPUT_SHAPES["imagenet"])

    def pooled_features() -> torch.Tensor:
        return model.avgpool(model.forward_features(image)[-1])

    return measure(model, image if with_fc else pooled_features)


def imagenet_row(depth: int) -> dict:
    config = f"involution_ops.RedNet({depth}, num_classes=1000)"
    return _row(f"RedNet-{depth}", "imagenet", config, INPUT_SHAPES["imagenet"], count_rednet(depth))


def resnet50_imagenet_row() -> dict:
    """ResNet-50 classifier: mmdet's ResNet, global average pooling and a 1000-way fc."""
    from mmdet.models.backbones import ResNet

    def factory() -> nn.Module:
        head = (nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000))
        return nn.Sequential(ResNet(depth=50), _LastStage(), *head)

    model = _build(factory)
    config = "mmdet.models.backbones.ResNet(depth=50) + nn.AdaptiveAvgPool2d(1) + nn.Linear(2048, 1000)"
    shape = INPUT_SHAPES["imagenet"]
    return _row("ResNet-50", "imagenet", config, shape, measure(model, _image(shape)))


class _LastStage(nn.Module):
    def forward(self, features: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return features[-1]


# --- OpenMMLab models -----------------------------------------------------------

def _build_from_config(path: Path, scope: str, options: dict | None = None) -> nn.Module:
    import logging

    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.registry import DefaultScope

    MMLogger.get_current_instance().setLevel(logging.WARNING)  # build-time info is noise here
    cfg = Config.fromfile(str(path))  # runs the config's custom_imports
    if options:
        cfg.merge_from_dict(options)
    if scope == "mmdet":
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return _build(lambda: MODELS.build(cfg.model))


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


def count_detector(model_name: str, match_subclasses: bool = False, options: dict | None = None) -> Complexity:
    """`options`: config overrides (``{"model.backbone.stem_kernel_size": 3}``), for diagnostics."""
    model = _build_from_config(ROOT / "det_configs/_base_/models" / f"{model_name}.py", "mmdet", options)
    return measure(model, detector_forward(model, _image(INPUT_SHAPES["coco"])), match_subclasses=match_subclasses)


def det_row(model_name: str) -> dict:
    config = f"det_configs/_base_/models/{model_name}.py"
    return _row(det_name(model_name), "coco", config, INPUT_SHAPES["coco"], count_detector(model_name))


def count_segmentor(model_name: str) -> Complexity:
    model = _build_from_config(ROOT / "seg_configs/_base_/models" / f"{model_name}.py", "mmseg")
    image = _image(INPUT_SHAPES["cityscapes"])
    # mmseg 0.x `forward_dummy`: backbone and decode head (the final resize is not a module)
    return measure(model, lambda: model.decode_head(model.extract_feat(image)))


def seg_row(model_name: str) -> dict:
    config = f"seg_configs/_base_/models/{model_name}.py"
    return _row(seg_name(model_name), "cityscapes", config, INPUT_SHAPES["cityscapes"], count_segmentor(model_name))


# --- paper values, notes and the table --------------------------------------------

def load_paper(path: Path) -> dict[str, dict]:
    """name -> {params_m, gflops, derived} of every published (or derived baseline) row."""
    if not path.exists():
        print(f"warning: {path} not found; the table shows no paper values", file=sys.stderr)
        return {}
    # one reader of paper.yaml for the whole repo (PyYAML when installed, else its subset reader)
    spec = importlib.util.spec_from_file_location("make_tables", ROOT / "scripts" / "make_tables.py")
    make_tables = sys.modules.setdefault("make_tables", importlib.util.module_from_spec(spec))
    if not hasattr(make_tables, "load_paper"):
        spec.loader.exec_module(make_tables)
    data = make_tables.load_paper(path)
    rows = {}
    for section in ("imagenet", "coco", "cityscapes", "baselines"):
        for entry in data.get(section) or []:
            rows[entry["name"]] = {
                "params_m": entry.get("params_m"),
                "gflops": entry.get("gflops"),
                "derived": bool(entry.get("derived", False)),
            }
    return rows


def _g(value: float) -> str:
    return f"{value:.1f}" if value >= 100 else f"{value:.3f}" if value < 10 else f"{value:.2f}"


def diagnostic_notes(rows: list[dict], paper: dict[str, dict], progress: Callable[[str], None]) -> dict[str, str]:
    """Notes under rows whose published figure our paper-convention count does not
    reproduce, each with the variant counts we measured while looking for why."""
    by_name = {row["name"]: row for row in rows}
    notes: dict[str, str] = {}

    imagenet = [f"RedNet-{d}" for d in IMAGENET_DEPTHS if f"RedNet-{d}" in by_name]
    if imagenet:
        progress("diagnostics: ImageNet RedNet with a 7x7 stem involution, counted without the fc")
        variants = {}
        for depth in IMAGENET_DEPTHS:
            if f"RedNet-{depth}" in by_name:
                variants[depth] = count_rednet(depth, stem_kernel_size=7, with_fc=False)
        rounded = all(
            paper.get(f"RedNet-{d}", {}).get("gflops") == round(v.gflops_paper, 2)
            and paper.get(f"RedNet-{d}", {}).get("params_m") == round(v.params_total_m, 2)
            for d, v in variants.items()
        )
        params_off = [d for d in variants if paper.get(f"RedNet-{d}", {}).get("params_m") is not None
                      and round(by_name[f"RedNet-{d}"]["params_total_m"], 2) != paper[f"RedNet-{d}"]["params_m"]]
        listing = " / ".join(f"{v.gflops_paper:.4f}" for v in variants.values())
        params_listing = " / ".join(f"{v.params_total_m:.4f}" for v in variants.values())
        gaps = [paper[f"RedNet-{d}"]["gflops"] - by_name[f"RedNet-{d}"]["gflops_paper"]
                for d in variants if paper.get(f"RedNet-{d}", {}).get("gflops")]
        gap = f"{min(gaps):.3f} to {max(gaps):.3f} G" if gaps else "slightly"
        text = (
            f"the released ImageNet models (3x3 stem involution, 1000-class fc) count {gap} under the "
            "published figures. With a 7x7 stem involution, as the paper describes the stem, "
            f"RedNet-{'/'.join(str(d) for d in variants)} have {params_listing} M parameters (fc included) "
            "and, counted without running the fc (mmcls's get_flops of 2021 counted `extract_feat`: "
            f"backbone and pooling neck), {listing} G"
            + (", every published FLOP and parameter figure to its 2 decimals: likely how they were counted"
               if rounded else "")
            + "".join(
                f"; the released RedNet-{d} has {by_name[f'RedNet-{d}']['params_total_m']:.4f} M"
                for d in params_off
            )
            + ". The rows keep the released models."
        )
        for depth in variants:
            notes[f"RedNet-{depth}"] = text

    def versus(value: float, name: str) -> str:
        published = paper.get(name, {}).get("gflops")
        return f"{_g(value)} G" + (f" (published {published})" if published is not None else "")

    conv_neck = [m for m in ("retinanet_red50_fpn", "faster_rcnn_red50_fpn", "mask_rcnn_red50_fpn")
                 if det_name(m) in by_name]
    if conv_neck:
        progress("diagnostics: convolution-neck detectors with the ImageNet models' 3x3 stem involution")
        small_stem = {"model.backbone.stem_kernel_size": 3}
        counts = {m: count_detector(m, options=small_stem).gflops_paper for m in conv_neck}
        stem_cost = max(by_name[det_name(m)]["gflops_paper"] - v for m, v in counts.items())
        text = (
            "the released detection RedNet-50 (and ours, which loads its checkpoints) has a 7x7 stem involution, "
            f"{stem_cost:.3f} G more than a 3x3 one "
            "at this input. With the 3x3 stem of the ImageNet models these detectors count "
            + ", ".join(f"{det_name(m)} {versus(v, det_name(m))}" for m, v in counts.items())
            + ": the paper's convolution-neck figures match that backbone, "
            "its involution-neck figures the released one."
        )
        for m in counts:
            notes[det_name(m)] = text

    name = det_name("mask_rcnn_red50_neck_fpn_head")
    if name in by_name:
        progress(f"diagnostics: {name} with OpenMMLab wrapper classes counted too")
        with_wrappers = count_detector("mask_rcnn_red50_neck_fpn_head", match_subclasses=True).gflops_paper
        notes[name] = (
            "with the 2021 convention this detector counts far under its published figure; counting the "
            "OpenMMLab wrapper classes too (the mask head's 1x1 conv_logits and deconv, which later mmcv "
            f"counters listed) gives {versus(with_wrappers, name)}. The other detectors' published figures "
            "match the exact-type convention, so this row keeps it."
        )

    for name, row in by_name.items():
        published = paper.get(name, {})
        if published.get("derived") and name not in notes:
            notes[name] = "baselines: the paper's figures are derived from its published reductions, rounded."
    return notes


def _delta(ours: float, published: float | None, digits: int) -> str:
    if published is None:
        return "–"
    diff = round(ours - published, digits)
    if diff == 0:
        return f"{0:.{digits}f} (0.0%)"
    pct = round(100 * diff / published, 1) if published else 0.0
    return f"{diff:+.{digits}f} ({pct:+.1f}%)".replace("+0.0%", "0.0%").replace("-0.0%", "0.0%")


def markdown_table(rows: list[dict], paper: dict[str, dict], notes: dict[str, str]) -> str:
    head = (
        "| model | task | input | params paper (M) | params trainable, ours (M) | Δ trainable "
        "| params all, ours (M) | Δ all | GFLOPs paper | GFLOPs ours, paper convention | Δ paper convention "
        "| GFLOPs ours, full count | Δ full |"
    )
    lines = [
        "# Parameters and FLOPs of the paper's models",
        "",
        "Generated by `make flops` (scripts/get_flops.py); do not edit. GFLOPs are G multiply-accumulates "
        "per image. **Paper convention**: the OpenMMLab counter of 2021 the paper used (modules matched by "
        "exact type, involution aggregation counted, OpenMMLab wrapper classes and SyncBN not; two-stage "
        "detectors: box head on 1000 proposals, mask head on 100). **Full count**: every multiply-accumulate "
        "of convolutions, linear layers and the involution aggregation, whatever class issues it "
        "(elementwise norm, activation and pooling work left out). **Params trainable**: requires_grad "
        "only, as the paper counted (detectors freeze the stem and stage 1); **params all**: every "
        "parameter. Paper values of baselines are derived from the published reductions (rounded). Δ = ours − paper.",
        "",
        head,
        "|" + "---|" * 3 + "---:|" * 10,
    ]
    shown = [notes[row["name"]] for row in rows if row["name"] in notes]
    footnote = {text: number for number, text in enumerate(dict.fromkeys(shown), 1)}
    for row in rows:
        published = paper.get(row["name"], {})
        p_params, p_flops = published.get("params_m"), published.get("gflops")
        shape = "x".join(str(v) for v in row["input_shape"])
        cells = [
            row["name"] + (f" [{footnote[notes[row['name']]]}]" if row["name"] in notes else ""),
            row["task"],
            shape,
            "–" if p_params is None else f"{p_params}",
            f"{row['params_trainable_m']:.2f}",
            _delta(row["params_trainable_m"], p_params, 2),
            f"{row['params_total_m']:.2f}",
            _delta(row["params_total_m"], p_params, 2),
            "–" if p_flops is None else f"{p_flops}",
            _g(row["gflops_paper"]),
            _delta(row["gflops_paper"], p_flops, 3 if row["gflops_paper"] < 10 else 1),
            _g(row["gflops_full"]),
            _delta(row["gflops_full"], p_flops, 3 if row["gflops_full"] < 10 else 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if footnote:
        lines += ["", "Notes:", ""]
        for text, number in footnote.items():
            names = ", ".join(row["name"] for row in rows if notes.get(row["name"]) == text)
            lines.append(f"{number}. {names}: {text}")
    return "\n".join(lines) + "\n"


# --- main ---------------------------------------------------------------------

def row_jobs() -> list[tuple[str, Callable[[], dict]]]:
    jobs: list[tuple[str, Callable[[], dict]]] = [
        (f"RedNet-{d}", lambda d=d: imagenet_row(d)) for d in IMAGENET_DEPTHS
    ]
    jobs.append(("ResNet-50", resnet50_imagenet_row))
    jobs += [(det_name(m), lambda m=m: det_row(m)) for m in DETECTORS]
    jobs += [(seg_name(m), lambda m=m: seg_row(m)) for m in SEGMENTORS]
    return jobs


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results/complexity.json", help="rows as JSON")
    parser.add_argument("--table", type=Path, default=ROOT / "results/complexity.md", help="markdown table")
    parser.add_argument("--paper", type=Path, default=ROOT / "results/paper.yaml", help="published values")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="count only these rows (names as in the table)")
    parser.add_argument("--no-notes", action="store_true", help="skip the diagnostic counts behind the notes")
    args = parser.parse_args(argv)
    # deprecation chatter of the OpenMMLab builders, irrelevant to the counts
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mm(cv|det|engine|seg)\b")
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

    jobs = row_jobs()
    if args.only:
        unknown = sorted(set(args.only) - {name for name, _ in jobs})
        if unknown:
            parser.error(f"unknown row(s) {unknown}; choose from {[name for name, _ in jobs]}")
        jobs = [job for job in jobs if job[0] in args.only]

    start = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    rows = []
    for index, (name, job) in enumerate(jobs, 1):
        progress(f"({index}/{len(jobs)}) {name}")
        rows.append(job())
    paper = load_paper(args.paper)
    notes = {} if args.no_notes else diagnostic_notes(rows, paper, progress)

    table = markdown_table(rows, paper, notes)
    _write(args.out, "[\n" + ",\n".join("  " + json.dumps(row) for row in rows) + "\n]\n")
    _write(args.table, table)
    print(table)
    progress(f"wrote {args.out} and {args.table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
