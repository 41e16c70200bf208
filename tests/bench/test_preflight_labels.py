"""Every Cityscapes label map is read in full before training (not the first three): raw label ids,
colour maps and maps of another size than their image are refused with the files, the values and
the fix, in any split and at any position in it."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from support import REPO_ROOT as ROOT, require

require.module("mmseg")
from involution_ops.bench import file_facts, preflight, toy_data  # noqa: E402
from involution_ops.bench.launch import cli, planning  # noqa: E402
from support.runs import run_config  # noqa: E402

# Cityscapes' train id -> label id (cityscapesscripts' labels.py), for the classes the toy streets use.
RAW_ID = {0: 7, 1: 8, 2: 11, 5: 17, 7: 20, 8: 21, 10: 23, 11: 24, 13: 26, 255: 0}



@pytest.fixture
def cityscapes(tmp_path) -> Path:
    source = toy_data.ensure_toy_data(ROOT / "data" / "toy", "cityscapes", verbose=False)
    root = tmp_path / "cityscapes"
    shutil.copytree(source, root)
    return root


def _labels(root: Path, split: str) -> list[Path]:
    return sorted((root / "gtFine" / split).rglob("*_gtFine_labelTrainIds.png"))


def _rewrite(label: Path, change) -> None:
    from PIL import Image

    with Image.open(label) as image:
        array = np.asarray(image)
    Image.fromarray(change(array)).save(label)


def _to_raw_ids(train_ids: np.ndarray) -> np.ndarray:
    lookup = np.zeros(256, dtype=np.uint8)
    for train_id, label_id in RAW_ID.items():
        lookup[train_id] = label_id
    return lookup[train_ids]


def _preflight(monkeypatch, capsys, data: Path) -> tuple[int, str]:
    monkeypatch.chdir(ROOT)
    code = cli.main(["cityscapes", "fpn", "--configs", "fpn_red50_512x1024_80k_cityscapes", "--data", str(data),
                     "--work-dir", str(data.parent / "wd"), "--runs-dir", str(data.parent / "runs")])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("split", ["train", "val"])
def test_raw_label_ids_in_the_last_label_of_a_split(cityscapes, monkeypatch, capsys, no_launch, split):
    """Val: today's sample of three files lets it through and the recorded mIoU is wrong (raw ids
    above 18 fall out of the IoU count); train: IndexError 'Target 23 is out of bounds' mid-training."""
    label = _labels(cityscapes, split)[-1]
    _rewrite(label, _to_raw_ids)
    code, err = _preflight(monkeypatch, capsys, cityscapes)
    assert code == 2 and "1 of the" in err and "do not hold train ids (0-18, 255 = ignore)" in err
    assert f"{label} (values 20, 21, 23" in err or f"{label} (values 21, 23" in err
    assert "createTrainIdLabelImgs" in err


def test_a_colour_label(cityscapes, monkeypatch, capsys, no_launch):
    """A *_color.png-like map under the train-id name: today a test-time IndexError after training."""
    label = _labels(cityscapes, "val")[-1]
    _rewrite(label, lambda ids: np.stack([ids, ids, ids], axis=-1))
    code, err = _preflight(monkeypatch, capsys, cityscapes)
    assert code == 2 and f"{label} is a colour image (3 channels)" in err and "createTrainIdLabelImgs" in err


def test_a_label_of_another_size_than_its_image(cityscapes, monkeypatch, capsys, no_launch):
    label = _labels(cityscapes, "val")[5]
    _rewrite(label, lambda ids: ids[::2, ::2].copy())
    code, err = _preflight(monkeypatch, capsys, cityscapes)
    assert code == 2 and f"{label} is 128x64, its image 256x128" in err and "are not the size of their image" in err


def test_labels_are_read_once_per_file_identity(cityscapes, monkeypatch):
    """The second check of the same data decodes no label; an edited label is decoded again and refused."""
    reads = []
    real = file_facts.READERS["label"]
    monkeypatch.setitem(file_facts.READERS, "label", lambda path: reads.append(path) or real(path))
    monkeypatch.chdir(ROOT)
    args = cli.parse_args(["cityscapes", "fpn", "--configs", "fpn_red50_512x1024_80k_cityscapes", "--data",
                           str(cityscapes)])
    cfg = run_config(planning.select_jobs(args, toy=False)[0], cityscapes, args)
    preflight.check_cityscapes(cfg)
    assert len(reads) == 24 + 8
    reads.clear()
    preflight.check_cityscapes(cfg)
    assert reads == []
    label = _labels(cityscapes, "val")[-1]
    _rewrite(label, _to_raw_ids)
    with pytest.raises(preflight.PreflightError, match="do not hold train ids"):
        preflight.check_cityscapes(cfg)
    assert reads == [label]


def test_the_values_read_are_what_pillow_decodes(cityscapes):
    label = _labels(cityscapes, "train")[0]
    from PIL import Image

    with Image.open(label) as image:
        array = np.asarray(image)
    facts = file_facts.label_facts(label)
    assert facts["values"] == sorted(np.unique(array).tolist()) and facts["size"] == [256, 128]
    assert facts["channels"] == 1 and 255 in facts["values"]
    assert preflight.TRAIN_ID_FIX.startswith("Fix: regenerate")
