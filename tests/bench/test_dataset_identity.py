"""involution_ops/bench/dataset_identity.py on small COCO- and Cityscapes-layout folders.

Hashes and counts are computed here from the files the test writes."""

from __future__ import annotations

import copy
import hashlib
import json
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from involution_ops.bench import records
from involution_ops.bench.dataset_identity import describe, identify, images_evaluated, is_official_full_split
from involution_ops.bench.output import REPO_ROOT


def run_record(suite: str, dataset: str, identity: dict | None) -> records.RunRecord:
    """A run record as the one reader returns it, written by the one writer."""
    with tempfile.TemporaryDirectory() as folder:
        path = records.write_record({"name": "m", "suite": suite, "dataset": dataset, "metrics": {},
                                     "dataset_identity": identity}, folder)
        record = records.read_record(path)
    assert isinstance(record, dict), record
    return record


def coco_folder(root: Path, images: int, split: str = "val2017") -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / split).mkdir()
    data = {"images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": 64, "height": 48} for i in range(images)],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 2, 10, 12], "area": 120,
                             "iscrowd": 0} for i in range(images)],
            "categories": [{"id": 1, "name": "person"}]}
    ann = root / "annotations" / f"instances_{split}.json"
    ann.write_text(json.dumps(data))
    for image in data["images"]:
        (root / split / image["file_name"]).write_bytes(b"")  # only the annotations are read here
    return ann


def coco_cfg(root: Path, split: str = "val2017") -> dict:
    """The shape of mmdet's coco_detection.py test dataloader."""
    return {"test_dataloader": {"dataset": {"type": "CocoDataset", "data_root": f"{root}/",
                                            "ann_file": f"annotations/instances_{split}.json",
                                            "data_prefix": {"img": f"{split}/"}, "test_mode": True}}}


def test_coco_identity_names_the_file_its_hash_and_image_count(tmp_path):
    ann = coco_folder(tmp_path, images=3)
    identity = identify(coco_cfg(tmp_path), "coco", "coco")
    assert identity["split"] == "val2017" and identity["images_listed"] == 3
    assert identity["ann_file"] == str(ann.resolve()) and identity["ann_file_bytes"] == len(ann.read_bytes())
    assert identity["ann_file_sha256"] == hashlib.sha256(ann.read_bytes()).hexdigest()
    assert identity["suite"] == "coco" and identity["image_dir"] == str((tmp_path / "val2017").resolve())
    record = run_record("coco", "coco", {**identity, "images_evaluated": 3})
    assert not is_official_full_split(record)  # three images are not COCO val2017


def test_other_split_names_are_read_from_the_file_name(tmp_path):
    coco_folder(tmp_path, images=2, split="train2017")
    assert identify(coco_cfg(tmp_path, "train2017"), "coco", "coco")["split"] == "train2017"


def test_missing_annotation_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="instances_val2017.json not found"):
        identify(coco_cfg(tmp_path), "coco", "coco")


def test_toy_data_is_labelled(tmp_path):
    identity = identify(coco_cfg(tmp_path), "coco", "toy")
    assert identity["kind"] == "toy" and "toy" in identity["note"]
    assert not is_official_full_split(run_record("coco", "toy", identity))


def test_cityscapes_identity_counts_and_hashes_the_file_list(tmp_path):
    names = ["frankfurt/frankfurt_000000_000294_leftImg8bit.png", "lindau/lindau_000001_000019_leftImg8bit.png",
             "munster/munster_000002_000019_leftImg8bit.png"]
    split = tmp_path / "leftImg8bit" / "val"
    for name in names + ["munster/readme.txt"]:
        (split / name).parent.mkdir(parents=True, exist_ok=True)
        (split / name).write_bytes(b"x")
    cfg = {"test_dataloader": {"dataset": {"type": "CityscapesDataset", "data_root": str(tmp_path),
                                           "data_prefix": {"img_path": "leftImg8bit/val",
                                                           "seg_map_path": "gtFine/val"}}}}
    identity = identify(cfg, "cityscapes", "cityscapes")
    assert identity["split"] == "val" and identity["images_listed"] == 3
    assert identity["file_list_sha256"] == hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()
    elsewhere = tmp_path / "mounted"  # a split folder that is a symlink keeps the config's split name
    (tmp_path / "leftImg8bit").rename(elsewhere)
    (tmp_path / "leftImg8bit").mkdir()
    (tmp_path / "leftImg8bit" / "val").symlink_to(elsewhere / "val")
    moved = identify(cfg, "cityscapes", "cityscapes")
    assert moved["image_dir"] == str((elsewhere / "val").resolve())
    assert {**moved, "image_dir": identity["image_dir"]} == identity
    split = elsewhere / "val"
    (split / "lindau" / "lindau_000001_000019_leftImg8bit.png").unlink()
    assert identify(cfg, "cityscapes", "cityscapes")["file_list_sha256"] != identity["file_list_sha256"]


def full(suite: str, split: str, listed: int, evaluated: int) -> records.RunRecord:
    return run_record(suite, suite, {"suite": suite, "split": split, "images_listed": listed,
                                     "images_evaluated": evaluated})


def test_only_the_complete_official_split_counts(tmp_path):
    assert is_official_full_split(full("coco", "val2017", 5000, 5000))
    assert is_official_full_split(full("cityscapes", "val", 500, 500))
    assert not is_official_full_split(full("coco", "val2017", 4999, 4999))
    assert not is_official_full_split(full("coco", "val2017", 5000, 100))     # evaluation cut short
    assert not is_official_full_split(full("coco", "val2014", 5000, 5000))    # another split of the same size
    assert not is_official_full_split(full("cityscapes", "train", 500, 500))
    assert not is_official_full_split(full("coco", "val2017", 5000, True))
    assert describe(full("coco", "val2017", 5000, 100)) == "val2017, 100 images (5000 listed)"
    # a schema-1 record from before dataset identity, read through the one reader: cannot prove anything
    older = tmp_path / "m__coco__20250101-000000.json"
    older.write_text(json.dumps({"schema": 1, "name": "m", "suite": "coco", "dataset": "coco", "metrics": {}}))
    record = records.read_record(older)
    assert not is_official_full_split(record)
    assert describe(record) == "dataset not identified (record predates dataset identity)"


def test_images_evaluated_by_mmdet_on_the_real_config(tmp_path, openmmlab):
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.runner import Runner

    register_all_modules()
    coco_folder(tmp_path, images=4)
    cfg = Config.fromfile(str(REPO_ROOT / "det_configs" / "retinanet_red50_fpn_1x_coco.py"))
    loader_cfg = copy.deepcopy(cfg.test_dataloader)
    loader_cfg.dataset.data_root = f"{tmp_path}/"
    cfg.test_dataloader = loader_cfg
    identity = identify(cfg, "coco", "coco")
    loader = Runner.build_dataloader(copy.deepcopy(loader_cfg))
    assert images_evaluated(SimpleNamespace(test_dataloader=loader)) == identity["images_listed"] == 4
