"""Pre-flight checks: everything about data and weights that would stop a run, found before the
first run starts, on the very config that run will train with (involution_ops.bench.runconfig).

Every problem is one `PreflightError` whose message names the file and the fix.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from . import data_checks, weight_checks
from .io import REPO_ROOT as REPO
from .mmconfig import REMOTE_PREFIXES, config_dicts, scope_of, split_datasets
from .toy_data import CITYSCAPES_CLASSES

CONVERT_HINT = ("download PaddleClas' RedNet-50 ImageNet weights "
                "(https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/RedNet50_pretrained.pdparams) and "
                "convert them once with `python scripts/convert_checkpoint.py paddleclas "
                "RedNet50_pretrained.pdparams {path}`, or point PRETRAINED=/path/to/rednet50.pth at weights you have")


class PreflightError(RuntimeError):
    """A problem found before any training starts; the message names the path and the fix."""


def _load_json(path: Path, cache: dict) -> dict:
    if path not in cache:
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
        cache[path] = data
    return cache[path]


def model_num_classes(model_cfg: Any) -> set[int]:
    """Every num_classes of the model's heads (the RPN's single objectness class excluded)."""
    return {node["num_classes"] for path, node in config_dicts(model_cfg)
            if not path.endswith(".rpn_head") and isinstance(node.get("num_classes"), int)}


def check_coco(cfg: Any, cache: dict) -> None:
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
        if key not in cache:
            present = set(os.listdir(image_dir))
            missing = [im["file_name"] for im in data["images"] if im["file_name"] not in present]
            if missing:
                raise PreflightError(f"{len(missing)} of {len(data['images'])} images listed in {ann_path} are "
                                     f"missing from {image_dir} (e.g. {missing[0]}). Fix: extract the complete "
                                     f"image archive there")
            facts = _check_images([image_dir / im["file_name"] for im in data["images"]], ann_path, split,
                                  f"extract the image archive again (COCO 2017: {image_dir.name}.zip), or remove "
                                  f"those images and their annotations from {ann_path.name}")
            _check_image_sizes(data, image_dir, facts, ann_path)
            cache[key] = True
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
        width, height = data_checks.loaded_size(found)
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
                           cache: dict) -> None:
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
    if dropped and ("dropped", ann_path) not in cache:
        cache[("dropped", ann_path)] = True
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


def _check_coco_annotations(data: dict, ann_path: Path, cache: dict, split: str = "", kept: set | None = None,
                            with_mask: bool = False) -> None:
    key = ("annotations", ann_path, split, frozenset(kept) if kept is not None else None, with_mask)
    if key in cache:
        return
    errors, warnings = data_checks.coco_annotation_problems(data, ann_path, split, kept, with_mask)
    if errors:
        raise PreflightError("\n       ".join(errors))
    for warning in warnings:
        if ("warned", warning) not in cache:
            cache[("warned", warning)] = True
            print(f"  warning: {warning}", flush=True)
    cache[key] = True


# Seconds the pre-flight spends reading image bytes per file list; on slow storage the rest of a
# training list is left to the load-time guard (involution_ops.bench.image_guard), which skips and counts.
IMAGE_CHECK_BUDGET_S = {"train": 60.0, "val": 120.0, "test": 120.0}


def _check_images(paths: list[Path], listed_in: Path, split: str, fix: str) -> dict[Path, dict]:
    """Reads (or recalls) the facts of the files within the split's budget; stops on an unreadable one."""
    start = time.monotonic()
    if len(paths) > 5000:
        print(f"  reading the first and last bytes of {len(paths)} files of {listed_in} ...", flush=True)
    facts, total = data_checks.survey(paths, "image", budget_s=IMAGE_CHECK_BUDGET_S.get(split, 60.0))
    checked = len(facts)
    bad = [(path, found["problem"]) for path, found in facts.items() if found.get("problem")]
    if bad:
        shown = "; ".join(f"{path} {reason}" for path, reason in bad[:5])
        more = f" ... ({len(bad) - 5} more)" if len(bad) > 5 else ""
        raise PreflightError(f"{len(bad)} of the {checked} images of {listed_in} read so far are unreadable: "
                             f"{shown}{more}. Fix: {fix}")
    if checked < total:
        guard = ("the rest are checked as they load: an unreadable one is skipped with a warning and counted in "
                 "the run record" if split == "train" else "an unreadable one among the rest stops the evaluation")
        print(f"  note: read {checked} of {total} images of {listed_in} in {time.monotonic() - start:.0f} s; "
              f"{guard}; the next launch goes on from there", flush=True)
    return facts


def check_cityscapes(cfg: Any) -> None:
    heads = model_num_classes(cfg.model)
    for split, dataset in split_datasets(cfg):
        root = Path(dataset.get("data_root", ""))
        prefix = dataset.get("data_prefix", {})
        image_dir = root / prefix.get("img_path", "")
        label_dir = root / prefix.get("seg_map_path", "")
        img_suffix = dataset.get("img_suffix", "_leftImg8bit.png")
        seg_suffix = dataset.get("seg_map_suffix", "_gtFine_labelTrainIds.png")
        for folder, what in ((image_dir, "leftImg8bit images"), (label_dir, "gtFine labels")):
            if not folder.is_dir():
                raise PreflightError(f"{what} folder {folder} for {split} not found. Fix: extract "
                                     f"leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip under DATA "
                                     f"or set DATA to the Cityscapes root")
        images = sorted(image_dir.rglob("*" + img_suffix))
        if not images:
            raise PreflightError(f"no *{img_suffix} images in {image_dir}. Fix: extract the Cityscapes images there")
        missing = [p for p in images
                   if not (label_dir / p.relative_to(image_dir)).with_name(p.name[:-len(img_suffix)] + seg_suffix).is_file()]
        if missing:
            hint = ("Fix: generate them with `python -m cityscapesscripts.preparation.createTrainIdLabelImgs` "
                    "(CITYSCAPES_DATASET=DATA) or mmseg's tools/dataset_converters/cityscapes.py"
                    if not any(label_dir.rglob("*" + seg_suffix)) else
                    "Fix: extract the complete gtFine archive and regenerate the train-id labels")
            raise PreflightError(f"{len(missing)} of {len(images)} images in {image_dir} have no *{seg_suffix} "
                                 f"label in {label_dir} (e.g. for {missing[0].name}). {hint}")
        labels = [(label_dir / p.relative_to(image_dir)).with_name(p.name[:-len(img_suffix)] + seg_suffix)
                  for p in images]
        _check_cityscapes_samples(images[:1])
        facts = _check_images(images, image_dir, split,
                              "extract leftImg8bit_trainvaltest.zip / gtFine_trainvaltest.zip again (and regenerate "
                              "the train-id labels)")
        _check_cityscapes_labels(dict(zip(labels, images)), facts, label_dir, split,
                                 num_classes=len(_cityscapes_classes(cfg)))
    classes = _cityscapes_classes(cfg)
    expected = len(classes)
    bad = sorted(n for n in heads if n != expected)
    if bad:
        raise PreflightError(f"the model predicts {bad[0]} classes but Cityscapes has {expected} train classes. "
                             f"Fix: set decode_head.num_classes (and auxiliary_head) to {expected}")


def _cityscapes_classes(cfg: Any) -> tuple:
    """The dataset's classes: metainfo.classes of the config, else Cityscapes' 19 train classes."""
    classes = None
    for _, dataset in split_datasets(cfg):
        classes = (dataset.get("metainfo") or {}).get("classes") or classes
    return tuple(classes) if classes else CITYSCAPES_CLASSES


def _check_cityscapes_samples(images: list[Path]) -> None:
    """Cityscapes: the first image of a split opens (a quick answer before the full reads)."""
    from PIL import Image

    for path in images:
        try:
            with Image.open(path) as image:
                image.load()
        except Exception as error:  # PIL raises several types for a truncated or foreign file
            raise PreflightError(f"cannot read {path} ({error}). Fix: extract that archive again") from None


TRAIN_ID_FIX = ("Fix: regenerate the *_labelTrainIds.png files with `python -m "
                "cityscapesscripts.preparation.createTrainIdLabelImgs` (CITYSCAPES_DATASET=DATA)")


def _check_cityscapes_labels(labels: dict[Path, Path], image_facts: dict[Path, dict], label_dir: Path, split: str,
                             num_classes: int) -> None:
    """Every label map decoded in full (time-boxed, cached by file identity): one channel, the size of
    its image as mmseg loads it, and train ids only (0..num_classes-1, 255 = ignore). A raw label id
    stops training with 'Target 23 is out of bounds' and is silently left out of the evaluation's IoU;
    a colour or mis-sized map stops the test after training."""
    start = time.monotonic()
    facts, total = data_checks.survey(list(labels), "label", budget_s=IMAGE_CHECK_BUDGET_S.get(split, 60.0))
    allowed = set(range(num_classes)) | {255}
    unreadable, colour, raw, sized = [], [], [], []
    for label, found in facts.items():
        if found.get("problem"):
            unreadable.append(f"{label} {found['problem']}")
            continue
        if found["channels"] != 1:
            colour.append(f"{label} is a colour image ({found['channels']} channels)")
        outside = [v for v in found["values"] if v not in allowed]
        if outside:
            raw.append(f"{label} (value{'s' if len(outside) > 1 else ''} {', '.join(map(str, outside[:8]))})")
        image = image_facts.get(labels[label])
        if image and image.get("size") and tuple(found["size"]) != data_checks.loaded_size(image):
            width, height = data_checks.loaded_size(image)
            sized.append(f"{label} is {found['size'][0]}x{found['size'][1]}, its image {width}x{height}")
    read = f"of the {len(facts)} label files in {label_dir} read so far"
    errors = []
    if unreadable:
        errors.append(f"{len(unreadable)} {read} cannot be decoded: {_first(unreadable)}. Fix: extract "
                      f"gtFine_trainvaltest.zip again and regenerate the train-id labels")
    if raw:
        errors.append(f"{len(raw)} {read} do not hold train ids (0-{num_classes - 1}, 255 = ignore); they hold "
                      f"raw label ids: {_first(raw)}. {TRAIN_ID_FIX}")
    if colour:
        errors.append(f"{len(colour)} {read} are not single-channel train-id maps (found a colour image): "
                      f"{_first(colour)}. {TRAIN_ID_FIX} (the *_color.png files are for viewing)")
    if sized:
        errors.append(f"{len(sized)} {read} are not the size of their image: {_first(sized)}; mmseg would stop in "
                      f"the test after the whole training. Fix: use the gtFine labels of these very images "
                      f"(unresized), or resize images and labels together (labels with nearest neighbour)")
    if errors:
        raise PreflightError("\n       ".join(errors))
    if len(facts) < total:
        print(f"  note: read {len(facts)} of {total} label files in {label_dir} in {time.monotonic() - start:.0f} s; "
              f"the next launch goes on from there (what was read is kept by file size and mtime)", flush=True)


def _first(found: list[str], shown: int = 5) -> str:
    return "; ".join(found[:shown]) + (f" ... ({len(found) - shown} more)" if len(found) > shown else "")


def _local_path(path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else REPO / path


def read_weights(path: str, what: str, cache: dict) -> weight_checks.Checkpoint:
    """A weights file loaded weights-only, once; any problem is a PreflightError naming it."""
    key = ("weights", str(_local_path(path)))
    if key not in cache:
        try:
            cache[key] = weight_checks.read_checkpoint(str(_local_path(path)), what)
        except weight_checks.WeightsError as error:
            raise PreflightError(str(error)) from None
    return cache[key]


def check_pretrained(cfg: Any, pretrained: str | None, dataset: str, job_name: str = "", cache: dict | None = None
                     ) -> None:
    """Every local Pretrained file the run will load, read and checked against its module."""
    cache = {} if cache is None else cache
    if not pretrained and dataset == "toy":
        return  # toy variants train from scratch unless PRETRAINED is given
    targets = weight_checks.pretrained_targets(cfg.model, pretrained)
    paths = [pretrained] if pretrained else []
    paths += [t.checkpoint for t in targets if t.checkpoint not in paths]
    for path in paths:
        if path.startswith(REMOTE_PREFIXES):
            continue
        full = _local_path(path)
        if not full.is_file() or full.stat().st_size == 0:
            raise PreflightError(f"pretrained backbone weights {path} not found. Fix: "
                                 + CONVERT_HINT.format(path=path))
    for target in targets:
        if target.checkpoint.startswith(REMOTE_PREFIXES):
            continue
        checkpoint = read_weights(target.checkpoint, f"pretrained weights {target.checkpoint}", cache)
        shapes_key = ("shapes", job_name, target.where)
        if shapes_key not in cache:
            cache[shapes_key] = weight_checks.build_shapes(target.module_cfg, scope_of(cfg))
        error, note = weight_checks.pretrained_problem(checkpoint, target, cache[shapes_key], job_name)
        if error:
            raise PreflightError(error)
        if note:
            print(f"  note: {note}", flush=True)


def check_amp(amp: bool, slurm_partition: str | None = None) -> None:
    if amp:
        import torch

        if not torch.cuda.is_available() and not slurm_partition:
            raise PreflightError("AMP=1 needs a CUDA GPU (mixed precision through AmpOptimWrapper); "
                                 "this machine has none. Fix: drop AMP=1 on a CPU")


def _named_jobs(jobs: list[Any], path: Path, meta: dict) -> list[Any]:
    """The configs a checkpoint's folder names, else its recorded experiment name."""
    parts = set(path.resolve().parts)
    hits = [job for job in jobs if job.name in parts or job.config.stem in parts]
    if not hits:
        experiment = str(meta.get("experiment_name", ""))
        hits = [job for job in jobs if experiment.startswith((job.name + "_", job.config.stem + "_"))]
    return hits


def match_checkpoint(jobs: list[Any], ckpt: str, configs: dict[str, Any], cache: dict | None = None) -> list[Any]:
    """The one config of the target whose model every tensor of the checkpoint fits.

    The checkpoint's folder (or recorded experiment) must name that config when it names one, and
    --configs may pick it; otherwise the content decides. ``configs``: job name -> loaded config."""
    cache = {} if cache is None else cache
    path = Path(ckpt)
    if not path.is_file():
        raise PreflightError(f"CKPT={ckpt}: no such checkpoint file. Fix: give the path of a .pth file "
                             f"(e.g. work_dirs/<suite>/<config>/<timestamp>/iter_N.pth)")
    checkpoint = read_weights(ckpt, f"CKPT={ckpt}", cache)
    diffs = {}
    for job in jobs:
        cfg = configs[job.name]
        shapes = weight_checks.build_shapes(cfg.model, scope_of(cfg))
        diffs[job.name] = weight_checks.fit_diff(checkpoint, shapes)
    fits = [job for job in jobs if not diffs[job.name]]
    named = jobs if len(jobs) == 1 else _named_jobs(jobs, path, checkpoint.meta)
    if len(named) == 1 and named[0] in fits:
        return named
    where = ("it fits no config of this target. Fix: evaluate it with the target of the model it was "
             "trained as (see its meta above), or with the options it was trained with (CFG_OPTIONS)")
    if fits:
        where = (f"its tensors fit {', '.join(j.name for j in fits)} of this target. Fix: keep it under "
                 f"work_dirs/<suite>/<config name>/ of that config, or pick it with --configs")
    if len(named) == 1:
        raise PreflightError(weight_checks.fit_message(checkpoint, named[0].name, diffs[named[0].name]) + " " + where)
    if len(fits) == 1:
        return fits
    closest = min(jobs, key=lambda job: diffs[job.name].count)
    raise PreflightError(f"CKPT={ckpt} cannot be matched to exactly one config of this target "
                         f"({', '.join(j.name for j in jobs)}): "
                         + weight_checks.fit_message(checkpoint, closest.name, diffs[closest.name]) + " " + where)
