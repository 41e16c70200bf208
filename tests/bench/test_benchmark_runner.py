"""The shared run machinery: run records, launch commands, data-root rewriting, pre-flight errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO_ROOT as ROOT, require, runs

from involution_ops.bench import preflight, runconfig  # noqa: E402
from involution_ops.bench.launch import cli, commands, planning  # noqa: E402
from involution_ops.bench.launch.options import Job  # noqa: E402
from involution_ops.bench.manifest import load_manifest  # noqa: E402
from support.runs import run_config  # noqa: E402
from involution_ops.bench import records as run_record  # noqa: E402


# ------------------------------------------------------------------ run records

def test_metrics_from_mmdet_and_mmseg_keys():
    det = {"coco/bbox_mAP": 0.382, "coco/bbox_mAP_50": 0.571, "coco/bbox_mAP_75": 0.41,
           "coco/bbox_mAP_s": 0.2, "coco/bbox_mAP_m": 0.42, "coco/bbox_mAP_l": 0.5,
           "coco/segm_mAP": 0.357, "coco/segm_mAP_l": -1.0, "coco/bbox_mAP_copypaste": "0.382 0.571"}
    metrics = run_record.metrics_from_mm(det)
    assert metrics["bbox_AP"] == 38.2 and metrics["bbox_AP50"] == 57.1 and metrics["bbox_APl"] == 50.0
    assert metrics["segm_AP"] == 35.7 and "segm_APl" not in metrics  # -1: no object of that size
    assert "bbox_AP_copypaste" not in metrics and len(metrics) == 7
    seg = {"aAcc": 95.5, "mIoU": 78.04, "mAcc": 85.1, "IoU.road": 97.12, "IoU.sky": float("nan")}
    metrics = run_record.metrics_from_mm(seg)
    assert metrics == {"aAcc": 95.5, "mIoU": 78.04, "mAcc": 85.1, "per_class_IoU": {"road": 97.12}}


def test_loss_curve_merges_resumed_sessions(tmp_path):
    first = tmp_path / "20260101-000000" / "vis_data"
    second = tmp_path / "20260101-001000" / "vis_data"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    lines = [{"lr": 0.01, "loss": 2.0, "iter": 5}, {"lr": 0.01, "loss": 1.5, "iter": 10},
             {"coco/bbox_mAP": 0.1, "step": 10}]
    (first / "20260101-000000.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (second / "20260101-001000.json").write_text(json.dumps({"loss": 1.4, "iter": 10}) + "\n"
                                                 + json.dumps({"loss": 1.0, "iter": 15}) + "\n")
    (second / "config.json").write_text("{}")
    assert run_record.loss_curve(tmp_path) == [[5, 2.0], [10, 1.4], [15, 1.0]]


def test_write_record_never_overwrites(tmp_path):
    record = {"name": "retinanet_red50_fpn_1x_coco", "suite": "coco", "dataset": "toy", "metrics": {"bbox_AP": 1.0}}
    paths = [run_record.write_record({**record, "metrics": {"bbox_AP": float(i)}}, tmp_path) for i in range(3)]
    assert len(set(paths)) == 3
    for i, path in enumerate(paths):
        assert path.name.startswith("retinanet_red50_fpn_1x_coco__toy__")
        data = json.loads(path.read_text())
        assert data["schema"] == run_record.SCHEMA and data["metrics"]["bbox_AP"] == float(i)
    with pytest.raises(ValueError, match="lacks 'dataset'"):
        run_record.write_record({"name": "x", "suite": "coco", "metrics": {}}, tmp_path)


def test_gflops_lookup(tmp_path):
    table = tmp_path / "complexity.json"
    table.write_text(json.dumps([{"name": "retinanet_red50_fpn_1x_coco", "gflops_paper": 210.1}]))
    assert run_record.gflops_paper("retinanet_red50_fpn_1x_coco", table) == 210.1
    assert run_record.gflops_paper("other", table) is None
    assert run_record.gflops_paper("other", tmp_path / "absent.json") is None


# ------------------------------------------------------------------ launching

def _args(*extra):
    return cli.parse_args(["coco", "retinanet", *extra])


def test_launch_prefixes():
    args = _args()
    assert commands.launcher_kind(args) == "none" and commands.launch_prefix(args, "x") == [sys.executable]
    args = _args("--gpus", "8", "--nnodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.1",
                 "--master-port", "29600")
    prefix = commands.launch_prefix(args, "x")
    assert commands.launcher_kind(args) == "pytorch"
    assert prefix[1:3] == ["-m", "torch.distributed.run"]
    assert {"--nproc_per_node=8", "--nnodes=2", "--node_rank=1", "--master_addr=10.0.0.1",
            "--master_port=29600"} <= set(prefix)
    args = _args("--gpus", "4", "--slurm-partition", "gpu")
    prefix = commands.launch_prefix(args, "job")
    assert commands.launcher_kind(args) == "slurm" and prefix[:3] == ["srun", "-p", "gpu"]
    assert "--ntasks=4" in prefix and "--gres=gpu:4" in prefix


def test_run_config_carries_the_options(tmp_path):
    """The options reach the run through its config.py, the only input of the training process."""
    require.module("mmdet")
    from mmengine.config import Config

    job = Job(load_manifest().get("retinanet_red50_fpn_1x_coco"), ROOT / "det_configs/toy/retinanet_red50_fpn_toy.py",
              resume=True)
    args = _args("--resume", "--amp", "--seed", "7", "--deterministic", "--pretrained", "w.pth",
                 "--runs-dir", str(tmp_path / "runs"), "--cfg-options", "train_cfg.max_iters=3",
                 "model.neck.out_channels=32")
    cfg = run_config(job, Path("/data/toy/coco"), args, dataset="toy", device="cpu")
    (tmp_path / "run").mkdir()
    path = runconfig.place_in_run_dir(cfg, tmp_path / "run")
    assert path == (tmp_path / "run" / "config.py").resolve()
    dumped = Config.fromfile(str(path))
    assert dumped.randomness == {"seed": 7, "deterministic": True}
    assert dumped.optim_wrapper.type == "AmpOptimWrapper" and dumped.launcher == "none"
    assert dumped.model.backbone.init_cfg == {"type": "Pretrained", "checkpoint": "w.pth"}
    assert dumped.train_cfg.max_iters == 3 and dumped.model.neck.out_channels == 32
    assert dumped.train_dataloader.dataset.data_root == "/data/toy/coco/"
    assert dumped.work_dir == str((tmp_path / "run").resolve())
    run = dumped.involution_run
    assert (run.name, run.dataset, run.suite, run.runs_dir) == ("retinanet_red50_fpn_1x_coco", "toy", "coco",
                                                                str(tmp_path / "runs"))
    assert run.source_config == "det_configs/toy/retinanet_red50_fpn_toy.py"
    command = commands.job_command(job, args, path)
    assert command[0] == sys.executable and command[1].endswith("train.py")
    assert command[2:] == [str(path), "--resume"]  # nothing else: the file holds every setting
    command = commands.job_command(job, _args("--ckpt", "x.pth"), path)
    assert command[1].endswith("test.py") and command[2:] == [str(path)]


def test_group_selection_and_bad_arguments():
    names = [j.model.name for j in planning.select_jobs(_args(), toy=False)]
    assert names == ["retinanet_red50_fpn_1x_coco", "retinanet_red50_neck_fpn_1x_coco"]
    jobs = planning.select_jobs(cli.parse_args(["coco", "all", "--baselines"]), toy=True)
    assert len(jobs) == 11 and all(j.config.parent.name == "toy" and j.config.is_file() for j in jobs)
    seg = planning.select_jobs(cli.parse_args(["cityscapes", "fpn"]), toy=False)
    assert [j.model.name for j in seg] == ["fpn_red50_512x1024_80k_cityscapes", "fpn_red50_neck_512x1024_80k_cityscapes"]
    with pytest.raises(SystemExit):
        cli.parse_args(["coco", "yolo"])
    with pytest.raises(SystemExit):
        cli.parse_args(["coco", "retinanet", "--ckpt", "a.pth", "--resume"])


def test_latest_resumable(tmp_path):
    for stamp in ("20260101-000000", "20260102-000000", "20260103-000000-eval"):
        (tmp_path / stamp).mkdir()
    (tmp_path / "20260101-000000" / "last_checkpoint").write_text("x")
    (tmp_path / "20260102-000000" / "last_checkpoint").write_text("y")
    assert planning.latest_resumable(tmp_path).name == "20260102-000000"
    assert planning.latest_resumable(tmp_path / "nothing") is None


def test_record_paths_are_relative_inside_the_checkout_and_absolute_outside(tmp_path):
    """A record stays valid when its WORK_DIR lies outside the checkout (no '../../tmp/...')."""
    assert runconfig.relative(ROOT / "det_configs" / "retinanet_red50_fpn_1x_coco.py") == \
        "det_configs/retinanet_red50_fpn_1x_coco.py"
    outside = tmp_path / "work_dirs" / "run" / "config.py"
    assert runconfig.relative(outside) == str(outside.resolve())


def test_new_run_folders_are_never_reused(tmp_path):
    first = planning.new_run_dir(tmp_path)
    second = planning.new_run_dir(tmp_path)
    assert first != second and Path(first).is_dir() and Path(second).is_dir()
    assert first.parent == second.parent == tmp_path.resolve()


# ------------------------------------------------------------------ config handling (needs mmengine)

def test_set_data_root_rewrites_loaders_and_evaluators():
    config = require.module("mmengine.config")
    cfg = config.Config.fromfile(str(ROOT / "det_configs" / "mask_rcnn_red50_fpn_1x_coco.py"))
    runconfig.set_data_root(cfg, "/datasets/coco")
    for split in ("train", "val", "test"):
        assert cfg[f"{split}_dataloader"]["dataset"]["data_root"] == "/datasets/coco/"
    assert cfg.val_evaluator.ann_file == "/datasets/coco/annotations/instances_val2017.json"
    assert runconfig.backbone_init_checkpoints(cfg.model) == ["checkpoints/rednet50_imagenet.pth"]
    assert preflight.model_num_classes(cfg.model) == {80}


# ------------------------------------------------------------------ pre-flight errors

def _preflight(capsys, *argv):
    require.module("mmdet")
    return runs.benchmark_in_process(capsys, *runs.FULL_RETINANET, *argv)


# The full config has 80 classes; these options make it fit the 3-class toy data.
FIT = ["--cfg-options", *runs.FIT_TOY_COCO]


def test_preflight_missing_data_folder(capsys, tmp_path):
    code, err = _preflight(capsys, "--data", str(tmp_path / "nowhere"))
    assert code == 2 and "nowhere: no such folder" in err and "Fix" in err


def test_preflight_missing_annotation(capsys, fresh_coco):
    data = fresh_coco
    (data / "annotations" / "instances_val2017.json").unlink()
    code, err = _preflight(capsys, "--data", str(data), *FIT)
    assert code == 2 and "instances_val2017.json not found" in err and "Fix" in err


def test_preflight_corrupt_annotation(capsys, fresh_coco):
    data = fresh_coco
    path = data / "annotations" / "instances_train2017.json"
    path.write_text(path.read_text()[:500])
    code, err = _preflight(capsys, "--data", str(data), *FIT)
    assert code == 2 and "instances_train2017.json is corrupt" in err


def test_preflight_missing_images(capsys, fresh_coco):
    data = fresh_coco
    (data / "train2017" / "train_000003.jpg").unlink()
    code, err = _preflight(capsys, "--data", str(data), *FIT)
    assert code == 2 and "1 of 48 images" in err and "train_000003.jpg" in err


def test_preflight_class_count_mismatch(capsys, toy_coco):
    code, err = _preflight(capsys, "--data", str(toy_coco), "--cfg-options", *runs.FIT_TOY_COCO[1:])
    assert code == 2 and "predicts 80 classes" in err and "has 3" in err and "num_classes=3" in err


def test_preflight_category_names_none_of_the_datasets_classes(capsys, toy_coco, no_launch):
    """Without metainfo.classes mmdet keeps only the categories named as COCO's 80 classes; a COCO-layout
    folder with other names would end in numpy's bare "need at least one array to concatenate"."""
    code, err = _preflight(capsys, "--data", str(toy_coco), "--cfg-options", "model.bbox_head.num_classes=3")
    assert code == 2 and err.count("error:") == 1
    assert "instances_train2017.json" in err and "circle, square, triangle" in err and "CocoDataset" in err
    assert "metainfo.classes" in err and "toy_coco.py" in err


def test_categories_outside_the_datasets_classes_are_named_in_a_warning(capsys, fresh_coco):
    """Some names match (one toy category renamed to a COCO class): mmdet keeps that one and ignores
    the others' annotations, which the pre-flight says instead of passing in silence."""
    for split in ("train", "val"):
        path = fresh_coco / "annotations" / f"instances_{split}2017.json"
        content = json.loads(path.read_text())
        content["categories"][0]["name"] = "person"
        path.write_text(json.dumps(content))
    args = cli.parse_args(["coco", "retinanet", "--configs", "retinanet_red50_fpn_1x_coco", "--data",
                           str(fresh_coco), "--cfg-options", "model.bbox_head.num_classes=3"])
    job = planning.select_jobs(args, toy=False)[0]
    preflight.check_coco(run_config(job, fresh_coco, args), {})
    out = capsys.readouterr().out
    assert "2 of the 3 categories of" in out and "instances_train2017.json" in out
    assert "not classes of CocoDataset and their annotations are ignored: square, triangle" in out


def test_preflight_missing_pretrained(capsys, toy_coco, tmp_path):
    missing = tmp_path / "rednet50.pth"
    code, err = _preflight(capsys, "--data", str(toy_coco), *FIT, f"model.backbone.init_cfg.checkpoint={missing}")
    assert code == 2 and str(missing) in err and "convert_checkpoint.py" in err
    code, err = _preflight(capsys, "--data", str(toy_coco), "--pretrained", str(missing), *FIT)
    assert code == 2 and str(missing) in err


def test_preflight_resume_and_ckpt(capsys, tmp_path):
    code, err = _preflight(capsys, "--resume", "--work-dir", str(tmp_path))
    assert code == 2 and "holds no run with a checkpoint" in err
    code, err = _preflight(capsys, "--ckpt", str(tmp_path / "absent.pth"))
    assert code == 2 and "absent.pth: no such checkpoint" in err


def test_record_is_never_left_half_written(tmp_path):
    """A write that stops midway (here at a 4 KiB file-size limit, as on a full disk) leaves no record."""
    runs = tmp_path / "runs"
    code = ("import sys; from involution_ops.bench import records; "
            "records.write_record({'name': 'n', 'suite': 'coco', 'dataset': 'toy', 'metrics': {}, "
            "'loss_curve': [[i, 1.0] for i in range(5000)]}, sys.argv[1])")

    def limit_file_size():
        import resource
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    result = subprocess.run([sys.executable, "-c", code, str(runs)], cwd=ROOT,
                            preexec_fn=limit_file_size, capture_output=True)
    assert result.returncode != 0 and b"File too large" in result.stderr  # stopped mid-write
    assert list(runs.glob("*.json")) == []
    record = {"name": "n", "suite": "coco", "dataset": "toy", "metrics": {"bbox_AP": 1.0}}
    path = run_record.write_record(record, runs)  # the folder still works, and only whole records appear
    assert [p.name for p in runs.glob("*.json")] == [path.name]
    assert json.loads(path.read_text())["metrics"] == {"bbox_AP": 1.0}


# ------------------------------------------------------------------ CFG_OPTIONS keys

def test_cfg_option_typo_is_refused_at_preflight(capsys, tmp_path, no_launch):
    """On the toy data (its iteration-based config): refused before any model is built."""
    code, err = _preflight(capsys, "--work-dir", str(tmp_path), "--cfg-options", "train_cfg.max_iter=1")
    assert code == 2 and err.count("error:") == 1
    assert "train_cfg.max_iter" in err and "IterBasedTrainLoop" in err and "train_cfg.max_iters" in err
    code, err = _preflight(capsys, "--work-dir", str(tmp_path), "--cfg-options", "model.bbox_head.num_clases=3")
    assert code == 2 and "model.bbox_head (RetinaHead) has no option 'num_clases'" in err
    assert "model.bbox_head.num_classes" in err


def test_cfg_option_keys_the_config_lacks():
    config = require.module("mmengine.config")
    from involution_ops.bench import config_checks

    cfg = config.Config.fromfile(str(ROOT / "det_configs" / "retinanet_red50_fpn_1x_coco.py"))
    with pytest.raises(config_checks.ConfigOptionError, match="train_cfg \\(EpochBasedTrainLoop\\) has no option "
                                                             "'max_iter'.*use train_cfg.max_epochs="):
        config_checks.check_cfg_options(cfg, ["train_cfg.max_iter=1"])  # the paper's configs count epochs
    # new keys that the object built from the dict takes: accepted without a word
    assert config_checks.check_cfg_options(cfg, ["test_dataloader.dataset.indices=4",
                                                 "test_evaluator.outfile_prefix=/tmp/x",
                                                 "train_dataloader.pin_memory=True",
                                                 # keys the builders take before the class sees the dict
                                                 "optim_wrapper.paramwise_cfg.norm_decay_mult=0",
                                                 "default_hooks.logger.priority=BELOW_NORMAL"]) == []
    # plain settings dicts and the top level take anything: a warning naming the near key
    (warning,) = config_checks.check_cfg_options(cfg, ["model.test_cfg.score_th=0.1"])
    assert "model.test_cfg has no key 'score_th'" in warning and "model.test_cfg.score_thr" in warning
    (warning,) = config_checks.check_cfg_options(cfg, ["train_cfgs.max_epochs=1"])
    assert "no top-level key 'train_cfgs'" in warning and "train_cfg" in warning
    with pytest.raises(config_checks.ConfigOptionError, match="torch DataLoader.*batch_size"):
        config_checks.check_cfg_options(cfg, ["train_dataloader.batchsize=4"])
    with pytest.raises(config_checks.ConfigOptionError, match="pipeline is a list of"):
        config_checks.check_cfg_options(cfg, ["train_dataloader.dataset.pipeline.40.scale=(1,1)"])


# ------------------------------------------------------------------ RESUME=1 on a group

def _killed_run(work: Path, name: str, stamp: str = "20260101-000000") -> Path:
    run = work / "coco" / name / stamp
    run.mkdir(parents=True)
    (run / "iter_2.pth").write_bytes(b"checkpoint")
    (run / "last_checkpoint").write_text(str(run / "iter_2.pth"))
    return run


def test_resume_a_group_whose_second_config_never_started(tmp_path, capsys, monkeypatch):
    """The first config was killed after a checkpoint, the second never started: RESUME=1 resumes the
    first and starts the second (the commands handed to the launcher are what is checked)."""
    require.module("mmdet")
    _killed_run(tmp_path, "retinanet_red50_fpn_1x_coco")
    launched = []
    monkeypatch.setattr(subprocess, "run", lambda command, **kw: launched.append(command)
                        or subprocess.CompletedProcess(command, 0))
    code = cli.main(["coco", "retinanet", "--resume", "--work-dir", str(tmp_path),
                     "--runs-dir", str(tmp_path / "runs")])
    assert code == 0, capsys.readouterr().err
    assert [Path(c[2]).parent.parent.name for c in launched] == ["retinanet_red50_fpn_1x_coco",
                                                                 "retinanet_red50_neck_fpn_1x_coco"]
    assert "--resume" in launched[0] and "--resume" not in launched[1]


def test_resume_trains_on_the_config_in_the_run_folder(tmp_path, capsys, monkeypatch):
    """RESUME=1 restarts the killed run on the config.py of its folder (here with a setting the group's
    config does not have), not on a config built anew; this invocation's CFG_OPTIONS still apply."""
    require.module("mmdet")
    from mmengine.config import Config

    run = _killed_run(tmp_path, "retinanet_red50_fpn_1x_coco")
    args = cli.parse_args(["coco", "retinanet", "--work-dir", str(tmp_path), "--runs-dir",
                           str(tmp_path / "runs"), "--cfg-options", "train_cfg.max_iters=7"])
    job = planning.select_jobs(args, toy=True)[0]
    cfg = run_config(job, planning.resolve_data(args)[0], args)
    runconfig.place_in_run_dir(cfg, run)
    launched = []
    monkeypatch.setattr(subprocess, "run", lambda command, **kw: launched.append(command)
                        or subprocess.CompletedProcess(command, 0))
    code = cli.main(["coco", "retinanet", "--configs", job.model.name, "--resume", "--work-dir", str(tmp_path),
                     "--runs-dir", str(tmp_path / "runs"), "--cfg-options", "default_hooks.logger.interval=3"])
    assert code == 0, capsys.readouterr().err
    (command,) = launched
    resumed_file = Path(command[2])
    assert command[3:] == ["--resume"] and resumed_file.parent == run.resolve()
    assert resumed_file.name.startswith("config.resume-") and resumed_file.suffix == ".py"
    resumed = Config.fromfile(command[2])
    assert resumed.train_cfg.max_iters == 7 and resumed.default_hooks.logger.interval == 3
    assert resumed.work_dir == str(run.resolve()) and [p.name for p in run.parent.iterdir()] == [run.name]
    assert resumed.involution_run.run_config == runconfig.relative(resumed_file)
    first = Config.fromfile(str(run / "config.py"))  # the run's own config.py is kept as it was
    assert first.default_hooks.logger.interval != 3 and first.involution_run.run_config.endswith("/config.py")


def test_resume_never_rewrites_config_py_and_refuses_options_the_checkpoint_overrides(tmp_path, capsys,
                                                                                       no_launch):
    """RESUME=1 with a new lr: the optimizer state in the checkpoint would keep the old one, so the
    option is refused (with the reason) and nothing in the run folder changes."""
    require.module("mmdet")
    run = _killed_run(tmp_path, "retinanet_red50_fpn_1x_coco")
    base = ["coco", "retinanet", "--configs", "retinanet_red50_fpn_1x_coco", "--work-dir", str(tmp_path),
            "--runs-dir", str(tmp_path / "runs")]
    args = cli.parse_args(base)
    job = planning.select_jobs(args, toy=True)[0]
    runconfig.place_in_run_dir(run_config(job, planning.resolve_data(args)[0], args), run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    for option, named in [("optim_wrapper.optimizer.lr=0.5", "lr, momentum, weight_decay"),
                          ("optim_wrapper.optimizer.weight_decay=0", "lr, momentum, weight_decay"),
                          ("param_scheduler.0.end=3", "scheduler's state"), ("randomness.seed=4", "seed")]:
        assert cli.main([*base, "--resume", "--cfg-options", option]) == 2
        err = capsys.readouterr().err
        assert f"error: RESUME=1 with CFG_OPTIONS {option.split('=')[0]} (the checkpoint restores" in err, err
        assert named in err and "without RESUME=1" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert runconfig.resume_refusals(["train_cfg.max_iters=9", "optim_wrapper.clip_grad.max_norm=5",
                                      "model.test_cfg.score_thr=0.1"]) == []


def test_resume_accepts_the_options_the_run_started_with():
    """The same command again (as the Ctrl-C line repeats it, CFG_OPTIONS included) resumes; an
    option restored from the checkpoint is refused only when its value changed."""
    require.module("mmdet")
    base = ["coco", "retinanet", "--configs", "retinanet_red50_fpn_1x_coco", "--cfg-options"]

    def built(options):
        args = cli.parse_args([*base, *options])
        job = planning.select_jobs(args, toy=True)[0]
        return run_config(job, planning.resolve_data(args)[0], args)

    started = ["param_scheduler.0.end=3", "optim_wrapper.optimizer.lr=0.02", "train_cfg.max_iters=9"]
    run_cfg = built(started)
    assert runconfig.resume_refusals(started, run_cfg, lambda: built(started)) == []
    changed = ["param_scheduler.0.end=4", "optim_wrapper.optimizer.lr=0.02"]
    (refused,) = runconfig.resume_refusals(changed, run_cfg, lambda: built(changed))
    assert refused.startswith("param_scheduler.0.end (the checkpoint restores each lr/momentum scheduler's state")


def test_resume_plan_leaves_out_finished_runs(tmp_path):
    args = cli.parse_args(["coco", "retinanet", "--resume", "--work-dir", str(tmp_path),
                           "--runs-dir", str(tmp_path / "runs")])
    jobs = planning.select_jobs(args, toy=True)
    done = _killed_run(tmp_path, "retinanet_red50_fpn_1x_coco")
    killed = _killed_run(tmp_path, "retinanet_red50_neck_fpn_1x_coco")
    run_record.write_record({"name": "retinanet_red50_fpn_1x_coco", "suite": "coco", "dataset": "toy",
                             "metrics": {}, "work_dir": str(done), "evaluated_checkpoint_only": False},
                            tmp_path / "runs")
    planned = planning.plan_resume(jobs, args)
    assert [(j.model.name, j.resume) for j in planned] == [("retinanet_red50_neck_fpn_1x_coco", True)]
    (killed / "last_checkpoint").unlink()
    with pytest.raises(preflight.PreflightError, match="holds no run with a checkpoint"):
        planning.plan_resume(jobs, args)


# ------------------------------------------------------------------ BATCH: the paper's total batch

def test_batch_plan_is_in_the_run_config_and_the_banner(toy_coco, tmp_path, capsys, monkeypatch):
    """Real data (a COCO layout given as DATA) on fewer processes than the paper: the plan is written
    into the config the run trains with, recorded in its run facts and stated before training."""
    from mmengine.config import Config

    name = "retinanet_red50_fpn_1x_coco"
    paper = Config.fromfile(str(ROOT / "det_configs" / f"{name}.py"))
    base = ["coco", "retinanet", "--configs", name, "--data", str(toy_coco), "--work-dir", str(tmp_path),
            "--runs-dir", str(tmp_path / "runs")]
    options = ["--cfg-options", *runs.FIT_TOY_COCO, "model.backbone.init_cfg=None"]
    launched = []
    monkeypatch.setattr(subprocess, "run", lambda command, **kw: launched.append(command)
                        or subprocess.CompletedProcess(command, 0))
    assert cli.main([*base, *options]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    cfg = Config.fromfile(launched[0][2])
    per_process = paper.train_dataloader.batch_size
    accumulation = paper.auto_scale_lr.base_batch_size // per_process  # one process
    assert cfg.optim_wrapper.accumulative_counts == accumulation
    assert cfg.optim_wrapper.optimizer.lr == paper.optim_wrapper.optimizer.lr
    assert cfg.involution_run.batch["mode"] == "accumulate" and cfg.involution_run.batch["matches_paper"]
    assert f"accumulation {accumulation} -> {paper.auto_scale_lr.base_batch_size}" in out

    args = cli.parse_args([*base, "--gpus", "2", "--batch", "scale_lr", *options])
    job = planning.select_jobs(args, toy=False)[0]
    cfg = run_config(job, toy_coco, args, device="cpu")
    assert "accumulative_counts" not in cfg.optim_wrapper
    total = 2 * per_process
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(
        paper.optim_wrapper.optimizer.lr * total / paper.auto_scale_lr.base_batch_size)
    args = cli.parse_args([*base, "--gpus", "3", *options])  # 6 images never add up to 16
    with pytest.raises(preflight.PreflightError, match="BATCH=accumulate: .*not a multiple"):
        run_config(job, toy_coco, args, device="cpu")
