"""End-to-end runs through scripts/benchmark.py on the built-in toy data (CPU, tiny settings):
two gloo processes, a run killed after its first checkpoint and resumed, and CKPT evaluation
reproducing the metrics the run recorded; an unreadable training image skipped and counted."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from support import REPO_ROOT as ROOT, require, runs

require.module("mmdet")
pytestmark = pytest.mark.slow

CONFIG = runs.TOY_RETINANET


def _command(work: Path, *extra: str, iters: int = 6, predictions: str = "") -> list[str]:
    options = [f"test_evaluator.outfile_prefix={work / predictions}"] if predictions else []
    return runs.toy_retinanet_command(work, *extra, iters=iters, options=options)


def test_two_process_gloo_run(tmp_path):
    runs.run_ok(_command(tmp_path, "--gpus", "2", "--master-port", str(runs.free_port()), iters=2))
    (record,) = runs.records(tmp_path / "runs")
    assert record["world_size"] == 2 and record["iterations"] == 2
    assert record["dataset"] == "toy" and record["name"] == CONFIG
    assert "bbox_AP" in record["metrics"]
    assert record["batch"]["mode"] == "none" and record["batch"]["processes"] == 2  # toy: no compensation
    assert record["dataset_identity"]["kind"] == "toy" and record["dataset_identity"]["images_evaluated"] == 4


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """Start a 6-iteration run, SIGKILL it once its first checkpoint exists, resume it."""
    work = tmp_path_factory.mktemp("resume")
    pointer = runs.kill_at_first_checkpoint(_command(work), work / "work_dirs" / "coco" / CONFIG, ROOT)
    killed_at = Path(pointer.read_text().strip()).name
    assert not runs.records(work / "runs"), "the run finished before it could be killed"
    output = runs.run_ok(_command(work, "--resume", predictions="trained"))
    return work, pointer.parent, killed_at, output


def test_resume_continues_from_the_checkpoint(resumed_run):
    work, run_dir, killed_at, output = resumed_run
    iteration = int(killed_at.removeprefix("iter_").removesuffix(".pth"))
    assert 2 <= iteration < 6
    assert f"resumed epoch: 0, iter: {iteration}" in output
    (record,) = runs.records(work / "runs")
    assert record["iterations"] == 6 and record["resumed"] is True
    assert Path(ROOT / record["work_dir"]).resolve() == run_dir.resolve()
    assert (run_dir / "iter_6.pth").is_file()
    # the resumed session trained with its own config.resume-*.py beside the untouched config.py;
    # both hold the command's CFG_OPTIONS
    (resumed_config,) = run_dir.glob("config.resume-*.py")
    assert record["run_config"] == str(resumed_config.resolve())  # outside the checkout: absolute
    assert "max_iters=6" in resumed_config.read_text() and "max_iters=6" in (run_dir / "config.py").read_text()
    steps = [step for step, _ in record["loss_curve"]]
    assert steps == sorted(set(steps)) and steps[-1] == 6 and steps[0] == 1


def test_ckpt_evaluation_reproduces_the_recorded_metrics(resumed_run):
    work, run_dir, _, _ = resumed_run
    (trained,) = runs.records(work / "runs")
    runs.run_ok(_command(work, "--ckpt", str(run_dir / "iter_6.pth"), predictions="evaluated"))
    evaluated = [r for r in runs.records(work / "runs") if r["evaluated_checkpoint_only"]]
    assert len(evaluated) == 1
    assert evaluated[0]["iterations"] == 6
    assert evaluated[0]["metrics"] == trained["metrics"] and "bbox_AP" in trained["metrics"]
    # A 6-iteration model scores ~0 AP, so equal metrics alone would prove little: the evaluated
    # checkpoint must also reproduce every box and score the trained model predicted (a model
    # that failed to load the checkpoint would predict from its seeded initial weights instead).
    before = json.loads((work / "trained.bbox.json").read_text())
    after = json.loads((work / "evaluated.bbox.json").read_text())
    assert len(before) >= 4 * 50
    assert after == before


def test_training_skips_an_unreadable_image_and_records_it(tmp_path):
    """An image that goes bad after the pre-flight (the run's config.py written, then scripts/train.py
    started straight on it here) is skipped with a warning during training, and the run record counts
    it; the run finishes."""
    import shutil

    from involution_ops.bench import runconfig, toy_data
    from involution_ops.bench.launch import cli, planning
    from support.runs import run_config

    data = tmp_path / "coco"
    shutil.copytree(toy_data.ensure_toy_data(ROOT / "data" / "toy", "coco", verbose=False), data)
    images = json.loads((data / "annotations" / "instances_train2017.json").read_text())["images"]
    bad = data / "train2017" / images[0]["file_name"]  # dataset index 0 of the two kept below
    bad.write_bytes(bad.read_bytes()[:700])
    args = cli.parse_args(["coco", "retinanet", "--runs-dir", str(tmp_path / "runs"), "--cfg-options",
                           "train_cfg.max_iters=3", "train_dataloader.dataset.indices=2", *runs.TINY_RETINANET[:2],
                           "test_dataloader.dataset.indices=1", "default_hooks.logger.interval=1"])
    job = planning.select_jobs(args, toy=True)[0]
    cfg = run_config(job, data, args, dataset="toy")
    config = runconfig.place_in_run_dir(cfg, planning.new_run_dir(tmp_path / "work"))
    # the process trains with the file, not with what the launcher built: an edit of the file shows
    text = config.read_text()
    assert text.count("max_iters=3") == 1
    config.write_text(text.replace("max_iters=3", "max_iters=2"))
    output = runs.run_ok([sys.executable, str(ROOT / "scripts" / "train.py"), str(config)])
    assert f"skipping unreadable training image {bad}" in output
    (record,) = runs.records(tmp_path / "runs")
    assert record["iterations"] == 2 and record["skipped_images"] >= 1
    assert record["skipped_image_files"] == [str(bad)]
    assert record["run_config"] == str(config.resolve()) and record["work_dir"] == str(config.parent.resolve())
