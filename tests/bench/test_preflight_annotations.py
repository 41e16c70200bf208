"""COCO annotation files that would make mmdet train on or evaluate something other than what they
declare, refused (or warned about, where the official data has the same) by the pre-flight, with the
file, the ids and the fix. Each case edits a copy of the built-in toy data and goes through the
user's own command (`cli.main`, full configs with DATA); `no_launch` fails a test whose run
would start."""
from __future__ import annotations

import json

import numpy as np
import pytest

from support.data import edit_coco_annotations
from support import require, runs

require.module("mmdet")
from involution_ops.bench import data_checks, preflight  # noqa: E402
from involution_ops.bench.launch import cli, planning  # noqa: E402
from support.runs import run_config  # noqa: E402

FIT = ["--cfg-options", *runs.FIT_TOY_COCO]
MASK_FIT = ["--cfg-options", "model.roi_head.bbox_head.num_classes=3", "model.roi_head.mask_head.num_classes=3",
            *runs.FIT_TOY_COCO[1:]]




def _preflight(capsys, data, group="retinanet", config="retinanet_red50_fpn_1x_coco", fit=FIT):
    code = cli.main(["coco", group, "--configs", config, "--data", str(data),
                     "--work-dir", str(data.parent / "wd"), "--runs-dir", str(data.parent / "runs"), *fit])
    captured = capsys.readouterr()
    return code, captured.err, captured.out


def _mask_preflight(capsys, data):
    return _preflight(capsys, data, "mask_rcnn", "mask_rcnn_red50_fpn_1x_coco", MASK_FIT)


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_file_without_annotations(capsys, fresh_coco, no_launch, split):
    path = edit_coco_annotations(fresh_coco, split, lambda content: content.update(annotations=[]))
    images = len(json.loads(path.read_text())["images"])
    code, err, _ = _preflight(capsys, fresh_coco)
    assert code == 2 and f"{path} holds no annotations ({images} images, 0 annotations)" in err
    assert ("need at least one array" in err) if split == "train" else ("measure nothing" in err)
    assert "Fix: use the complete annotation file" in err


@pytest.mark.parametrize("split", ["train", "val"])
def test_only_crowd_regions(capsys, fresh_coco, no_launch, split):
    def crowd(content):
        for ann in content["annotations"]:
            ann["iscrowd"] = 1

    path = edit_coco_annotations(fresh_coco, split, crowd)
    total = len(json.loads(path.read_text())["annotations"])
    code, err, _ = _preflight(capsys, fresh_coco)
    assert code == 2 and f"none of the {total} annotations in {path}" in err
    assert f"{total} are crowd regions (iscrowd: 1)" in err and "set iscrowd to 0" in err
    assert ("loss_bbox 0" in err) if split == "train" else ("AP -1" in err)


def test_a_few_crowd_regions_are_normal(capsys, fresh_coco):
    """COCO marks about 1% of its annotations as crowd: no message; past half of a file, a warning."""
    content = json.loads((fresh_coco / "annotations" / "instances_train2017.json").read_text())
    content["annotations"][0]["iscrowd"] = 1
    path = fresh_coco / "annotations" / "instances_train2017.json"
    assert data_checks.coco_annotation_problems(content, path, "train") == ([], [])
    for ann in content["annotations"][: len(content["annotations"]) * 2 // 3]:
        ann["iscrowd"] = 1
    errors, warnings = data_checks.coco_annotation_problems(content, path, "train")
    assert errors == [] and len(warnings) == 1 and "are crowd regions" in warnings[0] and "ids 1, 2, 3" in warnings[0]


def test_duplicate_annotation_ids(capsys, fresh_coco, no_launch):
    def duplicate(content):
        content["annotations"][5]["id"] = content["annotations"][2]["id"]
        content["annotations"][9]["id"] = content["annotations"][2]["id"]

    path = edit_coco_annotations(fresh_coco, "train", duplicate)
    code, err, _ = _preflight(capsys, fresh_coco)
    assert code == 2 and f"annotation ids 3 occur more than once in {path}" in err and "not unique" in err
    assert "Fix: give every annotation its own id" in err


def test_duplicate_image_ids(capsys, fresh_coco, no_launch):
    """pycocotools keeps the last image of an id: the other file would never be seen."""
    def twin(content):  # a second entry for image 3, naming another file: one of the two is never loaded
        content["images"].append({**content["images"][2], "file_name": content["images"][3]["file_name"]})

    path = edit_coco_annotations(fresh_coco, "val", twin)
    code, err, _ = _preflight(capsys, fresh_coco)
    assert code == 2 and f"image ids 3 occur more than once in {path}" in err


def test_boxes_in_normalised_coordinates(capsys, fresh_coco, no_launch):
    """Boxes under one pixel are dropped by mmdet's CocoDataset: 0-1 coordinates train on nothing."""
    def normalise(content):
        sizes = {image["id"]: (image["width"], image["height"]) for image in content["images"]}
        for ann in content["annotations"]:
            width, height = sizes[ann["image_id"]]
            x, y, w, h = ann["bbox"]
            ann["bbox"] = [x / width, y / height, w / width, h / height]

    path = edit_coco_annotations(fresh_coco, "train", normalise)
    code, err, _ = _preflight(capsys, fresh_coco)
    assert code == 2 and f"annotations in {path} is an object that training can use" in err
    assert "are narrower or lower than 1 pixel (ids 1, 2, 3" in err and "not normalised to 0-1" in err


def test_boxes_outside_their_image(capsys, fresh_coco, no_launch):
    """A box that does not overlap its image is dropped by mmdet without a word."""
    def move(content):
        for ann in content["annotations"][:6]:
            ann["bbox"][0] += 1000

    path = edit_coco_annotations(fresh_coco, "train", move)
    code, err, _ = _preflight(capsys, fresh_coco)
    assert code == 2 and "6 of" in err and f"annotations in {path} are boxes that mmdet drops" in err
    assert "6 lie outside their image (ids 1, 2, 3, 4, 5 ... (1 more)" in err


def test_one_box_outside_in_a_large_file_is_a_warning():
    annotations = [{"id": i, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0}
                   for i in range(1, 201)]
    annotations[7]["bbox"] = [300, 0, 5, 5]
    content = {"images": [{"id": 1, "width": 100, "height": 100}], "categories": [{"id": 1}],
               "annotations": annotations}
    errors, warnings = data_checks.coco_annotation_problems(content, data_checks.Path("a.json"), "train")
    assert errors == [] and len(warnings) == 1 and "1 lie outside their image (ids 8" in warnings[0]


def test_masks_missing_for_a_mask_model(capsys, fresh_coco, no_launch):
    def strip(content):
        for ann in content["annotations"][:3]:
            del ann["segmentation"]

    path = edit_coco_annotations(fresh_coco, "train", strip)
    code, err, _ = _mask_preflight(capsys, fresh_coco)
    assert code == 2 and f"annotations in {path} that a mask model loads have no segmentation" in err
    assert "(annotation ids 1, 2, 3)" in err and "KeyError: 'mask'" in err


def test_masks_are_not_checked_for_a_box_model(fresh_coco):
    """A box-only config never loads masks: the same file passes its checks."""
    def strip(content):
        for ann in content["annotations"][:3]:
            del ann["segmentation"]

    edit_coco_annotations(fresh_coco, "train", strip)
    args = cli.parse_args(["coco", "retinanet", "--configs", "retinanet_red50_fpn_1x_coco", "--data",
                           str(fresh_coco), *FIT])
    preflight.check_coco(run_config(planning.select_jobs(args, toy=False)[0], fresh_coco, args), {})


def test_malformed_rle_and_polygons(capsys, fresh_coco, no_launch):
    def corrupt(content):
        image = content["images"][0]
        anns = [a for a in content["annotations"] if a["image_id"] == image["id"]]
        anns[0]["segmentation"] = {"size": [image["height"], image["width"] - 1], "counts": "PPYo0"}
        content["annotations"][20]["segmentation"] = [["12.5", 3, 4, 5, 6, 7]]

    path = edit_coco_annotations(fresh_coco, "val", corrupt)
    code, err, _ = _mask_preflight(capsys, fresh_coco)
    assert code == 2 and "2 of the" in err and f"annotations in {path} that a mask model loads have a malformed" in err
    assert "an RLE whose size [192, 255] is not its image's [height, width] [192, 256]" in err


def test_polygons_without_three_points(capsys, fresh_coco, no_launch):
    def flatten(content):
        for ann in content["annotations"]:
            ann["segmentation"] = [ann["segmentation"][0][:4]]

    path = edit_coco_annotations(fresh_coco, "train", flatten)
    code, err, _ = _mask_preflight(capsys, fresh_coco)
    assert code == 2 and f"annotations in {path} that a mask model loads have no polygon of 3 or more points" in err


def test_rle_counts_string_decodes_as_pycocotools_encodes():
    """The run lengths read from a compressed RLE string rebuild the mask pycocotools encoded."""
    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    for height, width in ((7, 5), (48, 64), (1, 300)):
        mask = np.asfortranarray((rng.random((height, width)) < 0.3).astype(np.uint8))
        rle = mask_utils.encode(mask)
        counts = data_checks.rle_string_counts(rle["counts"].decode())
        assert sum(counts) == height * width
        flat = np.concatenate([np.full(n, i % 2, dtype=np.uint8) for i, n in enumerate(counts)])
        assert np.array_equal(flat.reshape((width, height)).T, mask)
    image = {"height": 48, "width": 64}
    good = {"size": [48, 64], "counts": mask_utils.encode(np.asfortranarray(np.ones((48, 64), np.uint8)))["counts"]
            .decode()}
    assert data_checks.rle_problem(good, image) is None
    assert "runs cover 100 pixels, not 48x64" in data_checks.rle_problem({"size": [48, 64], "counts": [100]}, image)
