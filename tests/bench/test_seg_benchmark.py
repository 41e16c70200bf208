"""`make cityscapes-*` through scripts/benchmark.py: the pre-flight errors for bad Cityscapes data
and weights (each before any training, naming the path and the fix), and end to end on the toy
data (CPU, tiny settings): a run killed after its first checkpoint and resumed, and CKPT
evaluation reproducing the mIoU the run recorded."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support import REPO_ROOT as ROOT, require, runs

require.module("mmseg")
from involution_ops.bench import preflight, toy_data  # noqa: E402
from involution_ops.bench.launch import cli, planning  # noqa: E402
from support.runs import run_config  # noqa: E402

CONFIG = "fpn_red50_neck_512x1024_80k_cityscapes"


@pytest.fixture(scope="module")
def toy_root() -> Path:
    return toy_data.ensure_toy_data(ROOT / "data" / "toy", "cityscapes", verbose=False)


@pytest.fixture
def cityscapes_copy(toy_root, tmp_path) -> Path:
    """A well-formed Cityscapes layout given as DATA (a copy of the toy set, so not 'toy')."""
    root = tmp_path / "cityscapes"
    shutil.copytree(toy_root, root)
    return root


def _preflight(monkeypatch, capsys, data: Path, *extra: str) -> str:
    monkeypatch.chdir(ROOT)
    rc, err = runs.benchmark_in_process(capsys, "cityscapes", "fpn", "--data", str(data),
                                        "--work-dir", str(data.parent / "wd"), "--runs-dir", str(data.parent / "runs"),
                                        *extra)
    assert rc == 2, err
    assert not (data.parent / "wd").exists() and not (data.parent / "runs").exists()  # nothing started
    return err


def test_well_formed_data_passes_the_checks(cityscapes_copy, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = cli.parse_args(["cityscapes", "all", "--data", str(cityscapes_copy), "--baselines"])
    jobs = planning.select_jobs(args, toy=False)
    assert [job.model.name for job in jobs] == [
        "fpn_red50_512x1024_80k_cityscapes", "fpn_red50_neck_512x1024_80k_cityscapes",
        "upernet_red50_512x1024_80k_cityscapes", "fpn_r50_512x1024_80k_cityscapes",
        "upernet_r50_512x1024_80k_cityscapes"]
    for job in jobs:
        cfg = run_config(job, cityscapes_copy, args)
        preflight.check_cityscapes(cfg)  # raises PreflightError on a problem


def test_missing_image_folder(cityscapes_copy, monkeypatch, capsys):
    shutil.rmtree(cityscapes_copy / "leftImg8bit")
    err = _preflight(monkeypatch, capsys, cityscapes_copy)
    assert str(cityscapes_copy / "leftImg8bit" / "train") in err and "leftImg8bit_trainvaltest.zip" in err


def test_missing_label_folder(cityscapes_copy, monkeypatch, capsys):
    shutil.rmtree(cityscapes_copy / "gtFine" / "val")
    err = _preflight(monkeypatch, capsys, cityscapes_copy)
    assert str(cityscapes_copy / "gtFine" / "val") in err and "gtFine_trainvaltest.zip" in err


def test_no_images(cityscapes_copy, monkeypatch, capsys):
    for image in (cityscapes_copy / "leftImg8bit" / "train").rglob("*.png"):
        image.unlink()
    err = _preflight(monkeypatch, capsys, cityscapes_copy)
    assert "no *_leftImg8bit.png images" in err and str(cityscapes_copy / "leftImg8bit" / "train") in err


def test_labels_without_train_ids_point_at_cityscapesscripts(cityscapes_copy, monkeypatch, capsys):
    """A raw gtFine download has *_labelIds.png only; the train-id images must be generated."""
    for label in (cityscapes_copy / "gtFine").rglob("*_gtFine_labelTrainIds.png"):
        label.rename(label.with_name(label.name.replace("labelTrainIds", "labelIds")))
    err = _preflight(monkeypatch, capsys, cityscapes_copy)
    assert "_gtFine_labelTrainIds.png" in err and "createTrainIdLabelImgs" in err


def test_labels_holding_raw_label_ids(cityscapes_copy, monkeypatch, capsys):
    """Full Cityscapes ids (e.g. 26 = car) saved under the train-id name are caught before training."""
    import numpy as np
    from PIL import Image

    label = sorted((cityscapes_copy / "gtFine" / "train").rglob("*_gtFine_labelTrainIds.png"))[0]
    Image.fromarray(np.full((8, 8), 26, dtype=np.uint8)).save(label)
    err = _preflight(monkeypatch, capsys, cityscapes_copy)
    assert str(label) in err and "value 26" in err and "createTrainIdLabelImgs" in err


def test_corrupt_image(cityscapes_copy, monkeypatch, capsys):
    image = sorted((cityscapes_copy / "leftImg8bit" / "val").rglob("*_leftImg8bit.png"))[0]
    image.write_bytes(image.read_bytes()[:40])
    err = _preflight(monkeypatch, capsys, cityscapes_copy)
    assert f"cannot read {image}" in err and "Fix" in err


def test_class_count_mismatch(cityscapes_copy, monkeypatch, capsys):
    err = _preflight(monkeypatch, capsys, cityscapes_copy, "--cfg-options", "model.decode_head.num_classes=5")
    assert "predicts 5 classes" in err and "19" in err and "num_classes" in err


def test_missing_pretrained_weights(cityscapes_copy, monkeypatch, capsys, tmp_path):
    missing = tmp_path / "nowhere" / "rednet50.pth"
    err = _preflight(monkeypatch, capsys, cityscapes_copy, "--pretrained", str(missing))
    assert str(missing) in err and "convert_checkpoint.py" in err


# ---------------------------------------------------------------- end to end (toy data)

# Small crops, a two-image test set, a checkpoint every 2 iterations.
TINY = ["train_dataloader.dataset.pipeline.3.crop_size=(64,64)", "model.data_preprocessor.size=(64,64)",
        "test_dataloader.dataset.indices=2", "default_hooks.logger.interval=1",
        "default_hooks.checkpoint.interval=2", "default_hooks.checkpoint.max_keep_ckpts=10"]
ITERS = 6


def _command(work: Path, *extra: str, options: list[str] | None = None) -> list[str]:
    options = [f"train_cfg.max_iters={ITERS}", f"param_scheduler.0.end={ITERS}", *TINY] if options is None else options
    return runs.benchmark_command("cityscapes", "fpn", CONFIG, work, *extra, options=options)


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory, toy_root):
    """Start a run, SIGKILL it once its first checkpoint exists, then resume it with --resume."""
    work = tmp_path_factory.mktemp("seg_resume")
    pointer = runs.kill_at_first_checkpoint(_command(work), work / "work_dirs" / "cityscapes" / CONFIG, ROOT)
    killed_at = Path(pointer.read_text().strip()).name
    assert not runs.records(work / "runs"), "the run finished before it could be killed"
    output = runs.run_ok(_command(work, "--resume"))
    return work, pointer.parent, killed_at, output


@pytest.mark.slow
def test_resume_continues_from_the_checkpoint(resumed_run):
    work, run_dir, killed_at, output = resumed_run
    iteration = int(killed_at.removeprefix("iter_").removesuffix(".pth"))
    assert 2 <= iteration < ITERS
    assert f"resumed epoch: 0, iter: {iteration}" in output
    assert [p.name for p in run_dir.parent.iterdir()] == [run_dir.name]  # same run folder, no new one
    (record,) = runs.records(work / "runs")
    assert record["iterations"] == ITERS and record["resumed"] is True
    assert record["name"] == CONFIG and record["dataset"] == "toy" and record["suite"] == "cityscapes"
    assert record["config"] == "seg_configs/toy/fpn_red50_neck_toy.py"
    assert Path(record["work_dir"]).name == run_dir.name
    assert [step for step, _ in record["loss_curve"]] == list(range(1, ITERS + 1))
    metrics = record["metrics"]
    assert {"mIoU", "mAcc", "aAcc", "per_class_IoU"} <= set(metrics)
    assert set(metrics["per_class_IoU"]) <= set(toy_data.CITYSCAPES_CLASSES) and "road" in metrics["per_class_IoU"]


@pytest.mark.slow
def test_ckpt_evaluation_reproduces_the_recorded_miou(resumed_run):
    work, run_dir, _, _ = resumed_run
    (trained,) = runs.records(work / "runs")
    checkpoint = ROOT / trained["checkpoint"]
    assert checkpoint.name == f"iter_{ITERS}.pth"
    runs.run_ok(_command(work, "--ckpt", str(checkpoint), options=["test_dataloader.dataset.indices=2"]))
    evaluated = next(r for r in runs.records(work / "runs") if r["evaluated_checkpoint_only"])
    assert evaluated["iterations"] == ITERS and evaluated["name"] == CONFIG
    assert evaluated["metrics"] == trained["metrics"]  # mIoU, mAcc, aAcc and every class IoU
    assert evaluated["metrics"]["mIoU"] > 0


@pytest.mark.slow
def test_two_process_gloo_run_uses_bn_for_syncbn(tmp_path, toy_root):
    """GPUS=2 on a CPU: two gloo processes; the configs' SyncBN (CUDA only) becomes BN, announced."""
    output = runs.run_ok(_command(tmp_path, "--gpus", "2", "--master-port", str(runs.free_port()),
                                  options=["train_cfg.max_iters=2", "param_scheduler.0.end=2", *TINY]))
    assert "SyncBN -> BN" in output
    (record,) = runs.records(tmp_path / "runs")
    assert record["world_size"] == 2 and record["iterations"] == 2 and record["dataset"] == "toy"
    assert {"mIoU", "mAcc", "aAcc", "per_class_IoU"} <= set(record["metrics"])
