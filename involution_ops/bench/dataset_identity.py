"""Which data a run evaluated on: enough for `make tables` to tell the official split from a subset.

A record's `dataset_identity` (from `identify`, plus `images_evaluated` added by the runner
after testing) says where the test annotations or images were, how many images they list and
a hash of them. Only a run that evaluated the full official split (COCO val2017: 5,000 images;
Cityscapes val: 500) is compared with the paper; see `is_official_full_split`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # records imports nothing from here, but keep the import graph one-way at run time
    from .records import RunRecord

from .mmconfig import inner_dataset

# Official evaluation split of each suite: split name and image count.
OFFICIAL_SPLITS: dict[str, tuple[str, int]] = {"coco": ("val2017", 5000), "cityscapes": ("val", 500)}
CITYSCAPES_SUFFIX = "_leftImg8bit.png"
_SPLIT_IN_NAME = re.compile(r"(?:^|[_-])((?:train|val|test|minival)\d*)(?:[_.-]|$)")


def evaluation_dataset_cfg(cfg: Any) -> dict:
    """The test dataset's config, unwrapped from RepeatDataset-style wrappers."""
    dataset = inner_dataset(cfg.get("test_dataloader"))
    if dataset is None:
        raise ValueError("the config has no test_dataloader.dataset: cannot identify the evaluation data")
    return dataset


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def split_from_name(name: str) -> str | None:
    """'instances_val2017.json' -> 'val2017'; None when the name holds no split."""
    match = _SPLIT_IN_NAME.search(Path(name).stem)
    return match.group(1) if match else None


def _coco_identity(dataset: dict) -> dict:
    root = Path(dataset.get("data_root") or "")
    ann_path = root / dataset["ann_file"]
    if not ann_path.is_file():
        raise FileNotFoundError(f"test annotation file {ann_path} not found: cannot identify the evaluation data")
    data = json.loads(ann_path.read_text(encoding="utf-8"))
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise ValueError(f"{ann_path}: no 'images' list, not a COCO annotation file")
    return {"kind": "coco_annotations", "split": split_from_name(ann_path.name),
            "ann_file": str(ann_path.resolve()), "ann_file_bytes": ann_path.stat().st_size,
            "ann_file_sha256": sha256_file(ann_path), "images_listed": len(images),
            "image_dir": str((root / (dataset.get("data_prefix") or {}).get("img", "")).resolve())}


def _cityscapes_identity(dataset: dict) -> dict:
    root = Path(dataset.get("data_root") or "")
    image_dir = root / (dataset.get("data_prefix") or {}).get("img_path", "")
    if not image_dir.is_dir():
        raise FileNotFoundError(f"test image folder {image_dir} not found: cannot identify the evaluation data")
    suffix = dataset.get("img_suffix", CITYSCAPES_SUFFIX)
    files = sorted(path.relative_to(image_dir).as_posix() for path in image_dir.rglob(f"*{suffix}"))
    listing = hashlib.sha256("\n".join(files).encode("utf-8")).hexdigest()
    # the split as the config names it (leftImg8bit/val), not where a symlink leads
    return {"kind": "cityscapes_files", "split": image_dir.name or image_dir.resolve().name, "image_dir": str(image_dir.resolve()),
            "images_listed": len(files), "file_list_sha256": listing}


def identify(cfg: Any, suite: str, dataset: str) -> dict:
    """Identity of the data a config evaluates on (its test dataloader), for the run record.

    COCO: the annotation file's path, size, sha256, image count and split (from its name).
    Cityscapes: the split folder, its number of *_leftImg8bit.png files and a sha256 of
    their sorted relative paths. Toy data: labelled as such, nothing to prove.
    """
    if dataset == "toy":
        return {"kind": "toy", "suite": suite, "note": "built-in generated toy data, not comparable with the paper"}
    if dataset != suite:
        raise ValueError(f"dataset {dataset!r} is neither 'toy' nor the suite {suite!r}")
    test_dataset = evaluation_dataset_cfg(cfg)
    if suite == "coco":
        identity = _coco_identity(test_dataset)
    elif suite == "cityscapes":
        identity = _cityscapes_identity(test_dataset)
    else:
        raise ValueError(f"no dataset identity for suite {suite!r} (known: coco, cityscapes)")
    return {"suite": suite, **identity}


def images_evaluated(runner: Any) -> int:
    """Number of images the runner's test dataloader holds (call after `runner.test()`)."""
    return len(runner.test_dataloader.dataset)


def is_official_full_split(record: RunRecord) -> bool:
    """True only when the record proves an evaluation on the complete official split.

    Needs `dataset_identity` with the official split name and, both listed and evaluated,
    exactly the official image count. A record whose data is not identified cannot prove it.
    """
    identity = record["dataset_identity"]
    official = OFFICIAL_SPLITS.get(record["suite"])
    if identity is None or official is None or record["dataset"] != record["suite"]:
        return False
    split, count = official
    evaluated = identity.get("images_evaluated")
    return (identity.get("suite") == record["suite"] and identity.get("split") == split
            and identity.get("images_listed") == count and evaluated == count
            and not isinstance(evaluated, bool))


def describe(record: RunRecord) -> str:
    """Short text for the tables: split and image count, or why the data is not identified."""
    identity = record["dataset_identity"]
    if identity is None:
        return "dataset not identified (record predates dataset identity)"
    split = identity.get("split") or "unknown split"
    evaluated = identity.get("images_evaluated")
    listed = identity.get("images_listed")
    count = evaluated if isinstance(evaluated, int) else listed
    text = f"{split}, {count if isinstance(count, int) else '?'} images"
    if isinstance(evaluated, int) and isinstance(listed, int) and evaluated != listed:
        text += f" ({listed} listed)"
    return text
