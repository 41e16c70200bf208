"""Pre-flight of Cityscapes data: each split's images and train-id label maps, read as mmseg will
load them."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .. import file_facts
from ..mmconfig import split_datasets
from ..toy_data import CITYSCAPES_CLASSES
from .coco import model_num_classes
from .errors import PreflightError
from .images import IMAGE_CHECK_BUDGET_S, check_images, first


def check_cityscapes(cfg: Any) -> None:
    """Each split's images and train-id label maps, and the classes against the model."""
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
        facts = check_images(images, image_dir, split,
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
    facts, total = file_facts.survey(list(labels), "label", budget_s=IMAGE_CHECK_BUDGET_S.get(split, 60.0))
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
        if image and image.get("size") and tuple(found["size"]) != file_facts.loaded_size(image):
            width, height = file_facts.loaded_size(image)
            sized.append(f"{label} is {found['size'][0]}x{found['size'][1]}, its image {width}x{height}")
    read = f"of the {len(facts)} label files in {label_dir} read so far"
    errors = []
    if unreadable:
        errors.append(f"{len(unreadable)} {read} cannot be decoded: {first(unreadable)}. Fix: extract "
                      f"gtFine_trainvaltest.zip again and regenerate the train-id labels")
    if raw:
        errors.append(f"{len(raw)} {read} do not hold train ids (0-{num_classes - 1}, 255 = ignore); they hold "
                      f"raw label ids: {first(raw)}. {TRAIN_ID_FIX}")
    if colour:
        errors.append(f"{len(colour)} {read} are not single-channel train-id maps (found a colour image): "
                      f"{first(colour)}. {TRAIN_ID_FIX} (the *_color.png files are for viewing)")
    if sized:
        errors.append(f"{len(sized)} {read} are not the size of their image: {first(sized)}; mmseg would stop in "
                      f"the test after the whole training. Fix: use the gtFine labels of these very images "
                      f"(unresized), or resize images and labels together (labels with nearest neighbour)")
    if errors:
        raise PreflightError("\n       ".join(errors))
    if len(facts) < total:
        print(f"  note: read {len(facts)} of {total} label files in {label_dir} in {time.monotonic() - start:.0f} s; "
              f"the next launch goes on from there (what was read is kept by file size and mtime)", flush=True)
