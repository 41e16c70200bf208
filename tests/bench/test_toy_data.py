"""The built-in toy datasets: deterministic, loadable, masks consistent with boxes, small."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from support import require

require.module("PIL")
from involution_ops.bench import toy_data as toy  # noqa: E402

SMALL = {"train": 4, "val": 2}


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", ["coco", "cityscapes"])
def test_deterministic_and_small(tmp_path, kind):
    a = toy.ensure_toy_data(tmp_path / "a", kind, SMALL, verbose=False)
    b = toy.ensure_toy_data(tmp_path / "b", kind, SMALL, verbose=False)
    assert _digest(a) == _digest(b)
    assert len(_digest(a)) > 6
    full = toy.ensure_toy_data(tmp_path / "full", kind, verbose=False)
    size = sum(p.stat().st_size for p in full.rglob("*") if p.is_file())
    assert size < 5e6, f"toy {kind} dataset is {size / 1e6:.1f} MB"


def test_idempotent_and_regenerates_on_stamp_change(tmp_path):
    folder = toy.ensure_toy_data(tmp_path, "coco", SMALL, verbose=False)
    ann = folder / "annotations" / "instances_train2017.json"
    first = ann.stat().st_mtime_ns
    toy.ensure_toy_data(tmp_path, "coco", SMALL, verbose=False)
    assert ann.stat().st_mtime_ns == first
    toy.ensure_toy_data(tmp_path, "coco", {"train": 3, "val": 2}, verbose=False)
    assert len(json.loads(ann.read_text())["images"]) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".coco-")]  # staging cleaned up


def test_refuses_to_overwrite_foreign_folder(tmp_path):
    foreign = tmp_path / "coco"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        toy.ensure_toy_data(tmp_path, "coco", SMALL, verbose=False)
    assert (foreign / "mine.txt").read_text() == "user data"


def test_coco_loads_and_masks_agree_with_boxes(tmp_path):
    coco_mod = require.module("pycocotools.coco")
    from PIL import Image

    folder = toy.ensure_toy_data(tmp_path, "coco", {"train": 6, "val": 2}, verbose=False)
    coco = coco_mod.COCO(str(folder / "annotations" / "instances_train2017.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(toy.SHAPE_CLASSES)
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) >= 6
    for ann in anns:
        info = coco.loadImgs(ann["image_id"])[0]
        assert Image.open(folder / "train2017" / info["file_name"]).size == (info["width"], info["height"])
        # pycocotools decodes the polygon itself; it may differ from ours by a pixel at sharp tips
        mask = coco.annToMask(ann)
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann["bbox"]
        assert ann["iscrowd"] == 0
        assert abs(xs.min() - x) <= 1.5 and abs(ys.min() - y) <= 1.5
        assert abs(xs.max() + 1 - (x + w)) <= 1.5 and abs(ys.max() + 1 - (y + h)) <= 1.5
        assert abs(mask.sum() - ann["area"]) <= 0.1 * ann["area"] + 4


def test_cityscapes_layout_and_labels(tmp_path):
    from PIL import Image

    folder = toy.ensure_toy_data(tmp_path, "cityscapes", SMALL, verbose=False)
    for split, count in SMALL.items():
        images = sorted((folder / "leftImg8bit" / split / toy.CITY).glob("*_leftImg8bit.png"))
        assert len(images) == count
        for image_path in images:
            label_path = (folder / "gtFine" / split / toy.CITY /
                          image_path.name.replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png"))
            labels = np.array(Image.open(label_path))
            assert labels.dtype == np.uint8 and labels.ndim == 2
            assert labels.shape == Image.open(image_path).size[::-1]
            ids = set(np.unique(labels).tolist())
            assert ids <= set(range(19)) | {255}
            assert 255 in ids and len(ids - {255}) >= 3
