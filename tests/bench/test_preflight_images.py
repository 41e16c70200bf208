"""Images that mmcv loads at another size than the annotation file declares (a resized copy, a photo
turned by its EXIF orientation) are refused before training; what the pre-flight reads from files
is kept by file identity, so a second launch reads only what changed."""
from __future__ import annotations

import os

from support import require, runs

require.module("mmdet")
from involution_ops.bench import file_facts, preflight  # noqa: E402
from involution_ops.bench.launch import cli, planning  # noqa: E402
from support.runs import run_config  # noqa: E402

FIT = ["--cfg-options", *runs.FIT_TOY_COCO]



def _preflight(capsys, data):
    code = cli.main(["coco", "retinanet", "--configs", "retinanet_red50_fpn_1x_coco", "--data", str(data),
                     "--work-dir", str(data.parent / "wd"), "--runs-dir", str(data.parent / "runs"), *FIT])
    captured = capsys.readouterr()
    return code, captured.err, captured.out


def _tag_orientation(path, orientation: int) -> None:
    """Rewrite the JPEG at `path` with the same pixels and this EXIF orientation tag."""
    from PIL import Image

    with Image.open(path) as original:
        pixels = original.copy()
    exif = Image.Exif()
    exif[file_facts.EXIF_ORIENTATION] = orientation
    pixels.save(path, quality=92, exif=exif)


def test_an_image_of_another_size_than_declared(capsys, fresh_coco, no_launch):
    from PIL import Image

    image = fresh_coco / "val2017" / "val_000011.jpg"
    with Image.open(image) as original:
        original.resize((128, 96)).save(image, quality=92)
    code, err, _ = _preflight(capsys, fresh_coco)
    assert code == 2 and "1 of the 16 images of" in err and "instances_val2017.json" in err
    assert "val_000011.jpg is 128x96, declared 256x192" in err and "Fix: use the images the annotations" in err


def test_a_photo_turned_by_its_exif_orientation(capsys, fresh_coco, no_launch):
    """mmcv's LoadImageFromFile ('color') applies the EXIF orientation: a tag of 6 turns the 256x192
    stored pixels into a 192x256 image, while the boxes stay in the stored frame."""
    import mmcv

    image = fresh_coco / "train2017" / "train_000030.jpg"
    _tag_orientation(image, 6)
    assert mmcv.imfrombytes(image.read_bytes(), flag="color").shape[:2] == (256, 192)  # what training sees
    code, err, _ = _preflight(capsys, fresh_coco)
    assert code == 2 and "train_000030.jpg is 192x256 (its EXIF orientation 6 turns the stored 256x192)" in err
    assert "declared 256x192" in err and "stored upright" in err


def test_an_upright_turned_photo_declared_as_loaded_is_fine(fresh_coco):
    """A photo whose tag swaps width and height passes when the file declares the size as loaded."""
    path = fresh_coco / "val2017" / "val_000000.jpg"
    _tag_orientation(path, 8)
    facts = file_facts.image_facts(path)
    assert facts["size"] == [256, 192] and facts["orientation"] == 8
    assert file_facts.loaded_size(facts) == (192, 256)


def test_a_second_survey_reads_only_what_changed(fresh_coco, monkeypatch):
    reads = []
    real = file_facts.READERS["image"]
    monkeypatch.setitem(file_facts.READERS, "image", lambda path: reads.append(path) or real(path))
    paths = sorted((fresh_coco / "train2017").glob("*.jpg"))
    first, total = file_facts.survey(paths, "image")
    assert total == len(paths) == len(first) == len(reads) == 48
    reads.clear()
    second, _ = file_facts.survey(paths, "image")
    assert reads == [] and second == first
    changed = paths[5]
    changed.write_bytes(changed.read_bytes() + b"\0")  # new size and mtime: read again
    os.utime(paths[6], ns=(0, 0))  # same bytes, another mtime: read again
    third, _ = file_facts.survey(paths, "image")
    assert sorted(reads) == [changed, paths[6]] and third == first


def test_the_survey_stops_at_its_budget(fresh_coco, monkeypatch):
    reads = []
    real = file_facts.READERS["image"]
    monkeypatch.setitem(file_facts.READERS, "image", lambda path: reads.append(path) or real(path))
    paths = [fresh_coco / "train2017" / f"train_{i % 48:06d}.jpg" for i in range(1920)]  # two chunks of 1024
    facts, total = file_facts.survey(paths, "image", budget_s=0.0)
    assert total == 1920 and len(reads) == 1024 and len(facts) == 48  # the first chunk is read whatever the budget
    reads.clear()
    file_facts.survey(paths[1024:], "image", budget_s=60.0)
    assert reads == []  # what the first launch read is kept


def test_a_second_check_reads_no_image(fresh_coco, monkeypatch):
    """The pre-flight's COCO checks twice on the same data (as two launches do): the second reads no image."""
    reads = []
    real = file_facts.READERS["image"]
    monkeypatch.setitem(file_facts.READERS, "image", lambda path: reads.append(path) or real(path))
    args = cli.parse_args(["coco", "retinanet", "--configs", "retinanet_red50_fpn_1x_coco", "--data",
                           str(fresh_coco), *FIT])
    cfg = run_config(planning.select_jobs(args, toy=False)[0], fresh_coco, args)
    preflight.check_coco(cfg, {})
    assert len(reads) == 48 + 16
    reads.clear()
    preflight.check_coco(cfg, {})  # a fresh in-memory cache: only the on-disk one remembers
    assert reads == []
