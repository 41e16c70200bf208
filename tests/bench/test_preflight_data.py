"""Bad COCO data caught before training (annotations, truncated images), and unreadable images met
during training skipped with a warning and counted instead of stopping the run."""
from __future__ import annotations

from pathlib import Path

from support.data import edit_coco_annotations
from support import REPO_ROOT as ROOT, require, runs

require.module("mmdet")
from involution_ops.bench import data_checks, file_facts, run_process, runconfig  # noqa: E402

FIT = ["--cfg-options", *runs.FIT_TOY_COCO]




def _preflight(capsys, data):
    return runs.benchmark_in_process(capsys, *runs.FULL_RETINANET, "--data", str(data),
                                     "--work-dir", str(data.parent / "wd"), *FIT)


def test_boxes_without_size(capsys, fresh_coco, no_launch):
    def shrink(content):
        for ann in content["annotations"][:4]:
            ann["bbox"][2] = 0.0
        content["annotations"][4]["bbox"][3] = -5.0

    path = edit_coco_annotations(fresh_coco, "train", shrink)
    code, err = _preflight(capsys, fresh_coco)
    assert code == 2 and str(path) in err
    assert "5 of" in err and "no box of positive width and height" in err and "annotation ids 1, 2, 3, 4, 5" in err
    assert "Fix:" in err


def test_unknown_category_and_image(capsys, fresh_coco, no_launch):
    def break_ids(content):
        content["annotations"][0]["category_id"] = 91
        content["annotations"][1]["category_id"] = 91
        content["annotations"][2]["image_id"] = 4000

    path = edit_coco_annotations(fresh_coco, "val", break_ids)
    code, err = _preflight(capsys, fresh_coco)
    assert code == 2 and str(path) in err
    assert "2 of" in err and "category ids 91" in err and "not among its 3 categories" in err
    assert "image_id that its 'images' list does not have (image ids 4000" in err


def test_truncated_image(capsys, fresh_coco, no_launch):
    image = fresh_coco / "train2017" / "train_000007.jpg"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    code, err = _preflight(capsys, fresh_coco)
    assert code == 2 and f"{image} is a truncated JPEG" in err and "Fix: extract the image archive again" in err


def test_a_jpeg_with_data_after_its_end_marker_is_fine(fresh_coco):
    image = fresh_coco / "train2017" / "train_000007.jpg"
    image.write_bytes(image.read_bytes() + bytes(4096))  # some cameras append a trailer
    assert file_facts.image_problem(image) is None
    assert file_facts.image_problem(fresh_coco / "annotations" / "instances_val2017.json").startswith("is not an image")


def test_a_few_bad_boxes_in_a_large_file_are_a_warning():
    """COCO 2017's train file has 2 zero-height boxes among 860,001 annotations: not a reason to stop."""
    annotations = [{"id": i, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25.0}
                   for i in range(1, 20001)]
    annotations[917].update(bbox=[296.65, 388.33, 1.03, 0.0], area=0.0)
    content = {"images": [{"id": 1, "width": 640, "height": 480}], "categories": [{"id": 1}],
               "annotations": annotations}
    errors, warnings = data_checks.coco_annotation_problems(content, Path("instances_train2017.json"))
    assert errors == [] and len(warnings) == 1 and "1 of 20000" in warnings[0] and "ids 918" in warnings[0]


# ------------------------------------------------------------------ during training

def test_training_skips_and_counts_an_unreadable_image(fresh_coco, tmp_path, monkeypatch):
    """The guarded pipeline of a real toy config, in mmdet's CocoDataset: the truncated image is skipped
    (mmengine draws another index), logged, and counted the way the training session records it.

    mmengine draws the replacement index at random; it may draw the bad image again, which is a second
    (correctly counted) skip. The draw is pinned to a good image so the expected counts are exact."""
    from involution_ops.bench import image_guard
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet.registry import DATASETS

    cfg = Config.fromfile(str(ROOT / "det_configs" / "toy" / "retinanet_red50_fpn_toy.py"))
    runconfig.set_data_root(cfg, str(fresh_coco))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert image_guard.guard_train_pipeline(cfg, str(run_dir)) == 1
    init_default_scope("mmdet")
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    index = next(i for i in range(len(dataset)) if dataset.get_data_info(i)["img_path"].endswith("train_000007.jpg"))
    image = Path(dataset.get_data_info(index)["img_path"])
    image.write_bytes(image.read_bytes()[:600])
    monkeypatch.setattr(dataset, "_rand_another", lambda: (index + 1) % len(dataset))
    sample = dataset[index]
    assert Path(sample["data_samples"].img_path) != image
    assert image_guard.skipped_images(run_dir) == (1, [str(image)])
    dataset[index]
    assert run_process.skipped_images_record(str(run_dir)) == {"skipped_images": 2, "skipped_image_files": [str(image)]}
