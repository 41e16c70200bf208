"""The run record (involution_ops.bench.records): one type, one writer, one reader.

A record built by the training process's record builder (run_process.run_record) and written by it
(run_process.write_run_record) is read by the tables and by resume planning through the one reader; records
of schema 1 (the committed table fixtures, anyone's results/runs) are upgraded there; a record
whose status is not "ok" reaches neither the tables nor resume planning."""
from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from support import require

require.module("mmengine")

from mmengine.config import Config  # noqa: E402

from involution_ops.bench import records, run_process  # noqa: E402
from involution_ops.bench import tables as bench_tables  # noqa: E402
from involution_ops.bench.paper_batch import BatchPlan, plan_batch  # noqa: E402
from involution_ops.bench.output import REPO_ROOT  # noqa: E402
from involution_ops.bench.runconfig import RUN_KEY  # noqa: E402

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "tables"
PAPER = REPO_ROOT / "results" / "paper.yaml"
NAME = "retinanet_red50_fpn_1x_coco"


def coco_val2017(root: Path) -> None:
    """A COCO-layout test split that lists as many images as the official val2017 (5,000)."""
    (root / "annotations").mkdir(parents=True)
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 8, "height": 8} for i in range(5000)]
    (root / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": images, "annotations": [], "categories": [{"id": 1, "name": "thing"}]}))


def run_cfg(tmp_path: Path) -> Config:
    """A run's config as the launcher writes it: one process at batch 2 without accumulation (BATCH=none)."""
    coco_val2017(tmp_path / "coco")
    cfg = Config({"work_dir": str(tmp_path / "work_dirs" / "coco" / NAME / "20260101_000000"),
                  "train_dataloader": {"batch_size": 2}, "auto_scale_lr": {"base_batch_size": 16},
                  "optim_wrapper": {"type": "OptimWrapper", "optimizer": {"type": "SGD", "lr": 0.01}},
                  "test_dataloader": {"dataset": {"data_root": str(tmp_path / "coco"),
                                                  "ann_file": "annotations/instances_val2017.json",
                                                  "data_prefix": {"img": "val2017/"}}}})
    plan = plan_batch(cfg, world_size=1, mode="none", dataset="coco")
    cfg[RUN_KEY] = {"name": NAME, "suite": "coco", "dataset": "coco", "source_config": f"det_configs/{NAME}.py",
                    "runs_dir": str(tmp_path / "runs"), "batch": plan.as_record()}
    Path(cfg.work_dir).mkdir(parents=True)
    return cfg


def fake_runner() -> SimpleNamespace:
    """What the record builder reads of mmengine's Runner after training and testing."""
    return SimpleNamespace(model=nn.Linear(3, 2), seed=7, iter=12,
                           test_dataloader=SimpleNamespace(dataset=[None] * 5000))


def trained_record(cfg: Config) -> records.RunRecord:
    """The record run_process.train builds once the test has run."""
    return run_process.run_record(cfg, fake_runner(), started_at="2026-01-01T00:00:00+00:00", seconds=3.0,
                                  iterations=12, checkpoint="iter_12.pth", loss_curve=[[1, 2.0], [12, 1.5]],
                                  evaluated_checkpoint_only=False, raw_metrics={"coco/bbox_mAP": 0.4321},
                                  resumed=False)


def test_a_training_record_is_read_by_the_tables_and_by_resume_planning(tmp_path, capsys):
    cfg = run_cfg(tmp_path)
    record = trained_record(cfg)
    assert records.record_problem(record) is None and record["metrics"] == {"bbox_AP": 43.21}
    assert record["params_total_m"] == round(sum(p.numel() for p in nn.Linear(3, 2).parameters()) / 1e6, 3)
    assert run_process.write_run_record(cfg, record) == 0
    (path,) = (tmp_path / "runs").glob("*.json")
    read = records.read_record(path)
    assert read == json.loads(json.dumps(record))  # what the builder made, whole
    # resume planning: the run folder has finished
    assert records.finished_run_dirs(tmp_path / "runs") == {Path(cfg.work_dir).resolve()}
    # the tables: the paper's COCO table, with the ‡ line that BatchPlan itself gives
    warnings = bench_tables.make_tables(tmp_path / "runs", FIXTURES / "complexity.json", PAPER,
                                       tmp_path / "README.md", None)
    assert not [warning for warning in warnings if "runs" in warning]
    text = (tmp_path / "README.md").read_text()
    coco = text[text.index("## COCO"):text.index("## ", text.index("## COCO") + 3)]
    (row,) = [line for line in coco.splitlines() if line.startswith(f"| {NAME} ")]
    assert "| 43.2 |" in row and "‡" in row
    departure = BatchPlan.from_record(cfg[RUN_KEY]["batch"]).departure()
    assert departure == "trained at total batch 2 (paper 16), accumulation none, lr 0.01 (mode none)"
    assert f"- ‡ {NAME} [{path.stem.split('__')[-1]}]: {departure}" in coco


def test_a_record_kept_in_its_run_folder_counts_as_finished(tmp_path, capsys):
    """results/runs could not be written (exit 3): resume planning still finds the record in the run folder."""
    cfg = run_cfg(tmp_path)
    (tmp_path / "runs").write_text("a file where the runs folder should be")
    assert run_process.write_run_record(cfg, trained_record(cfg)) == 3
    run_dir = Path(cfg.work_dir)
    assert records.finished_run_dirs(tmp_path / "runs") == set()
    assert records.finished_run_dirs(tmp_path / "runs", [run_dir]) == {run_dir.resolve()}


def test_failed_and_evaluation_records_are_not_finished_runs_and_not_in_the_tables(tmp_path, capsys):
    cfg = run_cfg(tmp_path)
    runs = tmp_path / "runs"
    failed = records.write_failed_record({**trained_record(cfg), "failure": {"stage": "test"}}, cfg.work_dir)
    assert records.read_record(failed)["status"] == "failed"
    assert records.finished_run_dirs(runs, [Path(cfg.work_dir)]) == set()
    # a failed record copied where the tables read: skipped with a warning that names its status
    runs.mkdir()
    copied = runs / f"{NAME}__coco__20260101-000000.json"
    copied.write_text(failed.read_text())
    warnings = bench_tables.make_tables(runs, FIXTURES / "complexity.json", PAPER, tmp_path / "README.md", None)
    assert any(f"{copied}: skipped, its status is 'failed', not 'ok'" in warning for warning in warnings)
    assert "| 43.2 |" not in (tmp_path / "README.md").read_text()
    evaluation = {**trained_record(cfg), "evaluated_checkpoint_only": True}
    records.write_record(evaluation, runs)
    assert records.finished_run_dirs(runs) == set()  # evaluating a checkpoint does not finish its training


def test_schema_1_fixtures_are_upgraded_in_the_reader():
    read = dict(records.read_records(FIXTURES / "runs"))
    old = read[FIXTURES / "runs" / "fpn_red50_neck_512x1024_80k_cityscapes__cityscapes__20260108-100000.json"]
    raw = json.loads((FIXTURES / "runs" / "fpn_red50_neck_512x1024_80k_cityscapes__cityscapes__20260108-100000.json")
                     .read_text())
    assert raw["schema"] == 1 and "status" not in raw and "batch" not in raw and "dataset_identity" not in raw
    assert old["schema"] == records.SCHEMA == 2 and old["status"] == "ok"
    assert old["batch"] is None and old["dataset_identity"] is None and old["evaluated_checkpoint_only"] is False
    assert old["metrics"] == raw["metrics"]
    usable = [record for record in read.values() if isinstance(record, dict)]
    assert len(usable) == 12 and {record["schema"] for record in usable} == {2}
    assert "not readable JSON" in read[FIXTURES / "runs" / "broken__coco__20260102-100000.json"]


@pytest.mark.parametrize("change, problem", [
    ({"schema": 3}, "schema is 3, expected 1 or 2"),
    ({"status": None}, "status is not a string"),
    ({"suite": "kitti"}, "suite 'kitti' is none of"),
    ({"batch": {"mode": "none"}}, "batch: missing processes"),
    ({"batch": {**plan_batch(Config({"train_dataloader": {"batch_size": 2}, "auto_scale_lr": {"base_batch_size": 2},
                                     "optim_wrapper": {"optimizer": {"lr": 0.1}}}), 1, "none", "coco").as_record(),
                "lr": "0.1"}}, "batch: lr of the wrong type"),
])
def test_a_record_the_reader_cannot_use_says_why(tmp_path, change, problem):
    path = tmp_path / "m__coco__20260101-000000.json"
    record = {"schema": 2, "status": "ok", "name": "m", "suite": "coco", "dataset": "coco", "metrics": {},
              "batch": None, "dataset_identity": None, "work_dir": None, "evaluated_checkpoint_only": False}
    path.write_text(json.dumps({**record, **change}))
    said = records.read_record(path)
    assert isinstance(said, str) and said.startswith("not a run record of schema 1 or 2: ") and problem in said
    path.write_text(json.dumps(record))
    assert records.read_record(path) == record


def test_the_writer_refuses_what_the_reader_would_skip(tmp_path):
    with pytest.raises(ValueError, match="suite 'kitti' is none of"):
        records.write_record({"name": "m", "suite": "kitti", "dataset": "toy", "metrics": {}}, tmp_path)
    assert not list(tmp_path.glob("*.json"))


def test_environment_facts_come_from_the_environment_module(tmp_path):
    record = trained_record(run_cfg(tmp_path))
    assert record["hardware"]["num_gpus"] == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert record["versions"]["torch"] == metadata.version("torch")
    assert not hasattr(records, "git_commit") and not hasattr(records, "hardware")
