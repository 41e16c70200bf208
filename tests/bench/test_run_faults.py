"""Faults inside the training process (involution_ops.bench.run_process and its guards): a loss that
turns non-finite stops the run at that iteration; a test that evaluates nothing fails the run;
records are strict JSON; a full disk leaves no checkpoint that looks whole; RESUME=1 passes over
an unreadable newest checkpoint; a record that cannot go to results/runs is kept in the run folder.

The mmengine-level cases run a tiny regression model through mmengine's own Runner (seconds);
the end-to-end cases drive scripts/benchmark.py and scripts/train.py on the toy COCO data."""
from __future__ import annotations

import builtins
import errno
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from support import REPO_ROOT as ROOT, require, runs

require.module("mmengine")

from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.model import BaseModel  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import involution_ops.openmmlab.checkpoint_loading  # noqa: E402,F401  (resume on torch >= 2.6)
from involution_ops.bench import checkpoint_files, records, training_guards  # noqa: E402
from involution_ops.bench import run_process  # noqa: E402
from involution_ops.bench.runconfig import RUN_KEY  # noqa: E402



def strict_loads(text: str):
    """json.loads that refuses NaN/Infinity tokens, as every JSON parser but Python's does."""
    def refuse(token):
        raise ValueError(f"not JSON: {token}")
    return json.loads(text, parse_constant=refuse)


class _Regressor(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, inputs, targets=None, mode="tensor"):
        prediction = self.linear(inputs)
        if mode == "loss":
            return {"loss_mse": F.mse_loss(prediction, targets)}
        return prediction


class _Points(torch.utils.data.Dataset):
    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.inputs = 10 * torch.randn(32, 4, generator=generator)
        self.targets = self.inputs @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        return {"inputs": self.inputs[index], "targets": self.targets[index]}


class _LossRecorder(Hook):
    """The reference: every iteration's loss, as mmengine computed it."""

    def __init__(self):
        self.losses = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses.append(float(outputs["loss"]))


def _runner(work_dir, lr=0.001, max_iters=6, **kwargs):
    return Runner(
        model=_Regressor(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=_Points(), sampler=dict(type="DefaultSampler", shuffle=True), batch_size=4,
                              num_workers=0, collate_fn=dict(type="default_collate")),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=lr)),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=2, by_epoch=False),
                           logger=dict(type="LoggerHook", interval=1)),
        randomness=dict(seed=0), default_scope="mmengine", **kwargs)


# --------------------------------------------------------------------------- 1. non-finite loss

def test_a_diverging_loss_stops_training_at_its_first_non_finite_iteration(tmp_path):
    reference = _LossRecorder()
    unguarded = _runner(tmp_path / "reference", lr=1e3, max_iters=12, custom_hooks=[reference])
    unguarded.train()  # mmengine itself trains on through inf and NaN
    first_bad = next(i for i, loss in enumerate(reference.losses, 1) if not math.isfinite(loss))
    assert 2 < first_bad < 12

    runner = _runner(tmp_path / "guarded", lr=1e3, max_iters=12)
    training_guards.attach(runner)
    with pytest.raises(training_guards.NonFiniteLoss) as caught:
        runner.train()
    message = str(caught.value)
    assert caught.value.iteration == first_bad
    assert f"non-finite at iteration {first_bad} (loss" in message
    assert "a lower learning rate (optim_wrapper.optimizer.lr; it was 1000 at this iteration)" in message
    assert "warm-up" in message and "AMP" in message and "clip_grad" in message
    # no checkpoint of the diverged iteration (or later) was written
    saved = sorted(int(p.stem.split("_")[1]) for p in (tmp_path / "guarded").glob("iter_*.pth"))
    assert saved and max(saved) < first_bad


def test_finite_losses_pass_the_guard():
    assert training_guards.non_finite_message({"loss": torch.tensor(2.5), "acc": float("nan")}, 3) is None
    message = training_guards.non_finite_message({"loss": torch.tensor(float("inf")),
                                                  "loss_cls": torch.tensor(1.0)}, 7)
    assert "iteration 7 (loss=inf)" in message


# --------------------------------------------------------------------------- 2. a test that evaluates nothing

def _cfg(tmp_path, runs_dir):
    return Config({"work_dir": str(tmp_path / "run"), RUN_KEY: {"runs_dir": str(runs_dir)},
                   "test_dataloader": {"dataset": {"data_root": "data/coco/", "ann_file": "annotations/val.json"}}})


@pytest.mark.parametrize("raw, metrics, identity, expected", [
    ({}, {}, {"images_evaluated": 4}, "the test evaluated nothing: the evaluator gave nothing"),
    ({"coco/bbox_mAP": -1.0}, {}, {"images_evaluated": 4}, "gave coco/bbox_mAP=-1.0"),
    ({"coco/bbox_mAP": 0.1}, {"bbox_AP": 10.0}, {"images_evaluated": 0}, "the test set is empty"),
])
def test_a_test_that_evaluates_nothing_is_a_failure(tmp_path, raw, metrics, identity, expected):
    problem = run_process.evaluation_problem(raw, metrics, _cfg(tmp_path, tmp_path), identity)
    assert expected in problem and "data/coco/annotations/val.json" in problem


def test_a_test_with_metrics_is_not_a_failure(tmp_path):
    assert run_process.evaluation_problem({"coco/bbox_mAP": 0.0}, {"bbox_AP": 0.0}, _cfg(tmp_path, tmp_path),
                                      {"images_evaluated": 4}) is None


# --------------------------------------------------------------------------- 3. strict JSON

def test_records_are_strict_json(tmp_path):
    record = {"name": "m", "suite": "coco", "dataset": "toy", "metrics": {"bbox_AP": float("nan")},
              "loss_curve": [[1, 1.869], [2, float("nan")], [3, float("inf")]], "peak_memory_mb": float("-inf")}
    path = records.write_record(record, tmp_path)
    written = strict_loads(path.read_text())
    assert written["loss_curve"] == [[1, 1.869], [2, None], [3, None]]
    assert written["metrics"] == {"bbox_AP": None} and written["peak_memory_mb"] is None


def test_the_loss_curve_turns_non_finite_losses_into_null(tmp_path):
    log = tmp_path / "20260101_000000" / "vis_data" / "scalars.json"
    log.parent.mkdir(parents=True)
    log.write_text('{"loss": 1.5, "iter": 1}\n{"loss": NaN, "iter": 2}\n')  # as mmengine writes them
    assert records.loss_curve(tmp_path) == [[1, 1.5], [2, None]]


# --------------------------------------------------------------------------- 5. full disk

def test_a_full_disk_leaves_no_checkpoint_that_looks_whole(tmp_path, monkeypatch):
    """The write of iter_4.pth fails half-way with ENOSPC: no iter_4.pth (or temporary) is left,
    last_checkpoint still names the whole iter_2.pth, and the error says disk full and where."""
    real_open = builtins.open

    class HalfWriter:
        def __init__(self, stream):
            self.stream = stream

        def write(self, data):
            self.stream.write(data[: len(data) // 2])
            self.stream.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.stream, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.stream.close()

    def full_disk_open(file, mode="r", *args, **kwargs):
        stream = real_open(file, mode, *args, **kwargs)
        return HalfWriter(stream) if "w" in mode and "iter_4.pth" in str(file) else stream

    work = tmp_path / "run"
    checkpoint_files.install()  # what run_process.train does before building the Runner
    runner = _runner(work)
    monkeypatch.setattr(builtins, "open", full_disk_open)
    with pytest.raises(OSError) as caught:
        runner.train()
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC
    assert "disk full" in str(caught.value) and str(work / "iter_4.pth") in str(caught.value)
    assert "free" in str(caught.value)
    left = sorted(p.name for p in work.iterdir() if p.is_file() and not p.name.endswith(".py"))  # + mmengine's config
    assert left == ["iter_2.pth", "last_checkpoint"]
    assert (work / "last_checkpoint").read_text().strip() == str(work / "iter_2.pth")
    assert checkpoint_files.checkpoint_problem(work / "iter_2.pth") is None


def test_whole_file_writes_keep_mmengine_checkpoints_loadable(tmp_path):
    checkpoint_files.install()
    runner = _runner(tmp_path, max_iters=4)
    runner.train()
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
    state = torch.load(tmp_path / "iter_4.pth", map_location="cpu", weights_only=False)
    torch.testing.assert_close(state["state_dict"]["linear.weight"], runner.model.linear.weight)


# --------------------------------------------------------------------------- 4. resume past a broken checkpoint

@pytest.fixture(scope="module")
def six_iterations(tmp_path_factory):
    work = tmp_path_factory.mktemp("six")
    runner = _runner(work)
    runner.train()
    return work, {k: v.clone() for k, v in runner.model.state_dict().items()}


def test_resume_passes_over_a_truncated_newest_checkpoint(six_iterations, tmp_path):
    import shutil

    source, final = six_iterations
    work = tmp_path / "run"
    shutil.copytree(source, work)
    (work / "last_checkpoint").write_text(str(work / "iter_6.pth"))
    newest = work / "iter_6.pth"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    (work / ".iter_6.pth.x1.partial").write_bytes(b"interrupted")

    plan = run_process.choose_resume(work)
    assert plan.checkpoint == work / "iter_4.pth"
    assert [path.name for path, _ in plan.passed_over] == ["iter_6.pth"]
    assert "truncated" in plan.passed_over[0][1]
    assert "resuming from iter_4.pth" in plan.describe() and "iter_6.pth" in plan.describe()
    assert not (work / ".iter_6.pth.x1.partial").exists()

    resumed = _runner(work, load_from=str(plan.checkpoint), resume=True)
    resumed.train()
    assert resumed.iter == 6
    for key, value in resumed.model.state_dict().items():  # continues exactly as the run that was not broken
        torch.testing.assert_close(value, final[key], rtol=1e-5, atol=1e-6)


def test_resume_with_no_whole_checkpoint_names_every_file(tmp_path):
    (tmp_path / "iter_2.pth").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_2.pth"))
    with pytest.raises(checkpoint_files.NothingToResume, match=r"iter_2\.pth: not a whole checkpoint.*without RESUME"):
        checkpoint_files.resume_plan(tmp_path)


# --------------------------------------------------------------------------- 6. record fallback

def test_a_record_that_cannot_go_to_results_runs_is_kept_in_the_run_folder(tmp_path, capsys):
    blocked = tmp_path / "runs"
    blocked.write_text("a file where the runs folder should be")
    cfg = _cfg(tmp_path, blocked)
    (tmp_path / "run").mkdir()
    record = {"name": "m", "suite": "coco", "dataset": "toy", "metrics": {"bbox_AP": 1.5}}
    assert run_process.write_run_record(cfg, record) == 3
    (kept,) = (tmp_path / "run").glob("m__toy__*.json")
    assert strict_loads(kept.read_text())["metrics"] == {"bbox_AP": 1.5}
    assert strict_loads(kept.read_text())["status"] == "ok"
    err = capsys.readouterr().err
    assert f"could not be written to {blocked}" in err and f"mv {kept} {blocked}/" in err


# --------------------------------------------------------------------------- end to end on the toy data

def _e2e(command: list[str], expected_rc: int, timeout: int = 400) -> str:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == expected_rc, output[-4000:]
    return output


@pytest.mark.slow
def test_a_diverging_run_fails_and_leaves_no_result(tmp_path):
    """Huge lr and no clipping: the run stops at the first non-finite loss (the one mmengine's own
    log shows), exit 1, nothing in results/runs, a strict-JSON failed record in the run folder."""
    require.module("mmdet")
    output = _e2e(runs.toy_retinanet_command(tmp_path, iters=8, options=(
        "optim_wrapper.optimizer.lr=1e6", "optim_wrapper.clip_grad=None")), expected_rc=1)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*.json"))
    (failed,) = (tmp_path / "work_dirs").glob("coco/*/*/failed_record.json")
    record = strict_loads(failed.read_text())
    iteration = record["failure"]["iteration"]
    assert record["status"] == "failed" and record["failure"]["stage"] == "training"
    assert f"error: the training loss became non-finite at iteration {iteration} (" in output
    assert "a lower learning rate (optim_wrapper.optimizer.lr; it was " in output
    # the reference: mmengine's scalar log, whose first non-finite loss is at that iteration
    logged = records.loss_curve(failed.parent)
    assert [step for step, loss in logged if loss is None][:1] == [iteration]
    assert record["loss_curve"] == logged
    assert all(int(p.stem.split("_")[1]) < iteration for p in failed.parent.glob("iter_*.pth"))


@pytest.fixture(scope="module")
def four_iterations(tmp_path_factory):
    """A finished 4-iteration toy RetinaNet run (checkpoints iter_2, iter_4; its record in runs/)."""
    require.module("mmdet")
    work = tmp_path_factory.mktemp("four")
    _e2e(runs.toy_retinanet_command(work, iters=4), expected_rc=0)
    (run_dir,) = (work / "work_dirs" / "coco" / runs.TOY_RETINANET).iterdir()
    return work, run_dir


@pytest.mark.slow
def test_resume_passes_over_a_truncated_checkpoint_and_keeps_the_record_when_runs_is_blocked(four_iterations):
    """iter_4.pth truncated, then the training process resumes (RESUME=1's scripts/train.py --resume):
    it continues from iter_2.pth, says so in the log and the record; results/runs cannot be written
    (a file stands there), so the record goes to the run folder, exit 3."""
    work, run_dir = four_iterations
    newest = run_dir / "iter_4.pth"
    newest.write_bytes(newest.read_bytes()[:100_000])
    (work / "runs").rename(work / "runs.first")
    (work / "runs").write_text("not a folder")
    output = _e2e([sys.executable, str(ROOT / "scripts" / "train.py"), str(run_dir / "config.py"), "--resume"],
                  expected_rc=3)
    assert f"[resume] warning: resuming from iter_2.pth, the newest whole checkpoint in {run_dir} " \
           f"(passed over: iter_4.pth: not a whole checkpoint" in output
    assert "resumed epoch: 0, iter: 2" in output
    (kept,) = run_dir.glob(f"{runs.TOY_RETINANET}__toy__*.json")
    assert f"it was written to the run folder instead: {kept}" in output
    record = strict_loads(kept.read_text())
    assert record["status"] == "ok" and record["iterations"] == 4 and "bbox_AP" in record["metrics"]
    assert record["resumed_from"].endswith("iter_2.pth")
    assert record["resume_passed_over"][0]["file"].endswith("iter_4.pth")
    assert checkpoint_files.checkpoint_problem(newest) is None  # trained again and written whole


@pytest.mark.slow
def test_a_test_set_without_annotations_fails_the_evaluation(four_iterations, tmp_path):
    """CKPT evaluation (scripts/test.py) of iter_2.pth on a test annotation file without annotations:
    exit 1, no record in results/runs, the failed record in the evaluation folder."""
    work, run_dir = four_iterations
    cfg = Config.fromfile(str(run_dir / "config.py"))
    dataset = cfg.test_dataloader.dataset
    annotations = json.loads((Path(dataset.data_root) / dataset.ann_file).read_text())
    annotations["annotations"] = []
    empty = tmp_path / "no_annotations.json"
    empty.write_text(json.dumps(annotations))
    cfg.test_dataloader.dataset.ann_file = str(empty)
    cfg.test_evaluator.ann_file = str(empty)
    cfg.load_from = str(run_dir / "iter_2.pth")
    cfg.work_dir = str(tmp_path / "eval")
    cfg[RUN_KEY]["runs_dir"] = str(tmp_path / "runs")
    (tmp_path / "eval").mkdir()
    cfg.dump(str(tmp_path / "eval" / "config.py"))
    output = _e2e([sys.executable, str(ROOT / "scripts" / "test.py"), str(tmp_path / "eval" / "config.py")],
                  expected_rc=1)
    assert "error: the test evaluated nothing: the evaluator gave" in output and str(empty) in output
    assert not (tmp_path / "runs").exists()
    (failed,) = (tmp_path / "eval").glob("failed_record.json")
    assert strict_loads(failed.read_text())["failure"]["stage"] == "test"
