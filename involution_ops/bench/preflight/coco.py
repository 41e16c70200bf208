"""Pre-flight of COCO-style data: each split's annotation file, images and classes, read as mmdet's
CocoDataset and LoadAnnotations will read them (the checks themselves: involution_ops.bench.data_checks)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .. import data_checks, file_facts
from ..mmconfig import config_dicts, split_datasets
from .cache import PreflightCache
from .errors import PreflightError
from .images import check_images


def _load_json(path: Path, cache: PreflightCache) -> dict:
    if path not in cache.json_files:
        if not path.is_file():
            raise PreflightError(f"annotation file {path} not found. Fix: put the dataset's annotations there "
                                 f"(COCO 2017: annotations_trainval2017.zip) or set DATA to the right root")
        try:
            data = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as error:
            raise PreflightError(f"annotation file {path} is corrupt (not valid JSON: {error}). "
                                 f"Fix: download and extract it again") from None
        missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
        if missing:
            raise PreflightError(f"annotation file {path} is corrupt: no {', '.join(missing)} list. "
                                 f"Fix: download and extract it again")
        cache.json_files[path] = data
    return cache.json_files[path]


def model_num_classes(model_cfg: Any) -> set[int]:
    """Every num_classes of the model's heads (the RPN's single objectness class excluded)."""
    return {node["num_classes"] for path, node in config_dicts(model_cfg)
            if not path.endswith(".rpn_head") and isinstance(node.get("num_classes"), int)}


def check_coco(cfg: Any, cache: PreflightCache | dict | None = None) -> None:
    """Each split's annotation file, images and classes against the model, as mmdet will load them."""
    cache = PreflightCache.of(cache)
    heads = model_num_classes(cfg.model)
    for split, dataset in split_datasets(cfg):
        root = Path(dataset.get("data_root", ""))
        ann_path = root / dataset["ann_file"]
        data = _load_json(ann_path, cache)
        image_dir = root / dataset.get("data_prefix", {}).get("img", "")
        if not image_dir.is_dir():
            raise PreflightError(f"image folder {image_dir} for {split} not found. Fix: extract the "
                                 f"{split} images there (COCO 2017: {image_dir.name}.zip) or set DATA")
        names = [c["name"] for c in data["categories"]]
        wanted = (dataset.get("metainfo") or {}).get("classes")
        if wanted:
            unknown = [c for c in wanted if c not in names]
            if unknown:
                raise PreflightError(f"classes {unknown} of the config are not categories of {ann_path} "
                                     f"({len(names)}: {', '.join(names[:8])}...). Fix: set metainfo.classes "
                                     f"to names from the annotation file")
        else:
            _check_default_classes(dataset, names, ann_path, split, heads, cache)
        classes = wanted or _default_classes(dataset.get("type"))
        kept = {c.get("id") for c in data["categories"] if c.get("name") in classes} if classes else None
        _check_coco_annotations(data, ann_path, cache, split, kept, _loads_masks(dataset))
        key = ("images", image_dir, ann_path)
        if key not in cache.checked:
            present = set(os.listdir(image_dir))
            missing = [im["file_name"] for im in data["images"] if im["file_name"] not in present]
            if missing:
                raise PreflightError(f"{len(missing)} of {len(data['images'])} images listed in {ann_path} are "
                                     f"missing from {image_dir} (e.g. {missing[0]}). Fix: extract the complete "
                                     f"image archive there")
            facts = check_images([image_dir / im["file_name"] for im in data["images"]], ann_path, split,
                                  f"extract the image archive again (COCO 2017: {image_dir.name}.zip), or remove "
                                  f"those images and their annotations from {ann_path.name}")
            _check_image_sizes(data, image_dir, facts, ann_path)
            cache.checked.add(key)
        expected = len(wanted) if wanted else len(names)
        bad = sorted(n for n in heads if n != expected)
        if bad:
            raise PreflightError(f"the model predicts {bad[0]} classes but {ann_path} has {expected} "
                                 f"{'selected ' if wanted else ''}categories. Fix: set the heads' num_classes "
                                 f"to {expected} (e.g. --cfg-options model.bbox_head.num_classes={expected}) "
                                 f"or use the matching dataset")


def _loads_masks(dataset: dict) -> bool:
    """Whether the dataset's pipeline loads instance masks (LoadAnnotations with with_mask)."""
    return any(isinstance(step, dict) and str(step.get("type", "")).endswith("LoadAnnotations")
               and step.get("with_mask") for step in dataset.get("pipeline") or [])


def _check_image_sizes(data: dict, image_dir: Path, facts: dict[Path, dict], ann_path: Path) -> None:
    """Each image read, as mmcv will load it (EXIF orientation applied), against the width and height
    the annotation file declares: mmdet takes the boxes in the declared frame, and the evaluation
    rescales predictions to the loaded image, so a mismatch trains and scores on misplaced boxes."""
    wrong, turned = [], []
    for image in data["images"]:
        found = facts.get(image_dir / image["file_name"])
        if not found or found.get("problem") or "size" not in found:
            continue
        width, height = file_facts.loaded_size(found)
        if (width, height) != (image.get("width"), image.get("height")):
            wrong.append((image, found, width, height))
        elif found.get("orientation", 1) != 1:
            turned.append(image)
    if wrong:
        shown = []
        for image, found, width, height in wrong[:5]:
            turn = (f" (its EXIF orientation {found['orientation']} turns the stored {found['size'][0]}x"
                    f"{found['size'][1]})" if found.get("orientation", 1) != 1 else "")
            shown.append(f"{image['file_name']} is {width}x{height}{turn}, declared {image.get('width')}x"
                         f"{image.get('height')}")
        more = f" ... ({len(wrong) - 5} more)" if len(wrong) > 5 else ""
        raise PreflightError(
            f"{len(wrong)} of the {len(facts)} images of {ann_path} read so far, as mmcv loads them, are not the "
            f"size the file declares: {'; '.join(shown)}{more}. mmdet would train on boxes drawn for other pixels and "
            f"the evaluation would compare predictions on the real image with them. Fix: use the images the "
            f"annotations were made on (or re-export the annotations for these images); a photo turned by its EXIF "
            f"tag must be stored upright (e.g. `exiftran -ai`, or PIL's ImageOps.exif_transpose) with the boxes "
            f"drawn on it")
    if turned:
        print(f"  warning: {len(turned)} images of {ann_path} carry an EXIF orientation that mmcv applies when "
              f"loading them (e.g. {turned[0]['file_name']}); their boxes must have been drawn on the turned "
              f"image", flush=True)


def _check_default_classes(dataset: dict, names: list[str], ann_path: Path, split: str, heads: set[int],
                           cache: PreflightCache) -> None:
    """A dataset without metainfo.classes keeps the categories whose names are its class's default
    classes (COCO's 80) and drops the rest; with none kept mmdet stops with a bare numpy error."""
    defaults = _default_classes(dataset.get("type"))
    if not defaults:
        return
    dropped = [n for n in names if n not in defaults]
    if len(dropped) == len(names):
        raise PreflightError(
            f"none of the {len(names)} categories of {ann_path} ({', '.join(names[:6])}"
            f"{'...' if len(names) > 6 else ''}) is a class of {dataset.get('type')} "
            f"({', '.join(defaults[:4])}...; {len(defaults)} in all), so {split} would have no labelled image. "
            f"Fix: use annotations with the dataset's category names, or set the datasets' metainfo.classes "
            f"to the file's names (--cfg-options {split}_dataloader.dataset.metainfo.classes="
            f"\"({','.join(names[:3])}{',...' if len(names) > 3 else ''})\" for each split, as "
            f"det_configs/toy/_base_/toy_coco.py does)"
            + (f", and the heads' num_classes to {len(names)}" if heads - {len(names)} else ""))
    if dropped and ("dropped", ann_path) not in cache.checked:
        cache.checked.add(("dropped", ann_path))
        print(f"  warning: {len(dropped)} of the {len(names)} categories of {ann_path} are not classes of "
              f"{dataset.get('type')} and their annotations are ignored: {', '.join(dropped[:6])}"
              f"{'...' if len(dropped) > 6 else ''}", flush=True)


def _default_classes(dataset_type: Any) -> list[str]:
    """The classes an mmdet dataset class uses when the config sets none (its METAINFO)."""
    if not isinstance(dataset_type, str):
        return []
    try:
        import mmdet.datasets  # noqa: F401  (registers mmdet's dataset classes)
        from mmdet.registry import DATASETS

        dataset_class = DATASETS.get(dataset_type)
    except (ImportError, KeyError):
        return []
    return list(getattr(dataset_class, "METAINFO", {}).get("classes") or [])


def _check_coco_annotations(data: dict, ann_path: Path, cache: PreflightCache, split: str = "",
                            kept: set | None = None, with_mask: bool = False) -> None:
    key = ("annotations", ann_path, split, frozenset(kept) if kept is not None else None, with_mask)
    if key in cache.checked:
        return
    errors, warnings = data_checks.coco_annotation_problems(data, ann_path, split, kept, with_mask)
    if errors:
        raise PreflightError("\n       ".join(errors))
    for warning in warnings:
        cache.warn_once(warning)
    cache.checked.add(key)
