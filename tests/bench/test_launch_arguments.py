"""Launch arguments refused before anything starts (NNODES without MASTER_ADDR, GPUS above the
machine, SEED range), CFG_OPTIONS through make's shell, Ctrl-C, the scripts' config errors,
RESUME=1 with new CFG_OPTIONS, and the output folders' write access and free space."""
from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support import REPO_ROOT as ROOT, require

from involution_ops.bench import launch_checks, run_space, runconfig  # noqa: E402
from involution_ops.bench.launch import cli, planning, runner  # noqa: E402
from involution_ops.bench.launch.options import Job  # noqa: E402
from involution_ops.bench.manifest import load_manifest  # noqa: E402
from involution_ops.bench.preflight import orchestration  # noqa: E402
from involution_ops.bench.launch_checks import LaunchError, check_launch  # noqa: E402

NAME = "retinanet_red50_fpn_1x_coco"


def _args(*extra: str):
    return cli.parse_args(["coco", "retinanet", *extra])


# ------------------------------------------------------------------ NNODES, GPUS, SEED

def test_several_nodes_need_a_master_address(monkeypatch):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(LaunchError, match="NNODES=2 needs MASTER_ADDR") as error:
        check_launch(_args("--nnodes", "2"), cuda=False)
    assert "MASTER_ADDR='<address of node 0>'" in str(error.value) and "SLURM_PARTITION" in str(error.value)
    check_launch(_args("--nnodes", "2", "--master-addr", "127.0.0.1", "--gpus", "1"), cuda=False)  # one machine
    check_launch(_args("--nnodes", "2", "--master-addr", "10.1.2.3", "--gpus", "1"), cuda=False)
    check_launch(_args("--nnodes", "2", "--slurm-partition", "gpu", "--gpus", "64"), cuda=False)  # Slurm places them
    monkeypatch.setenv("MASTER_ADDR", "10.1.2.3")  # make passes it only when set; the environment then counts
    check_launch(_args("--nnodes", "2", "--gpus", "1"), cuda=False)
    with pytest.raises(LaunchError, match="node ranks are 0 to 1"):
        check_launch(_args("--nnodes", "2", "--node-rank", "2"), cuda=False)


def test_the_launcher_refuses_nnodes_without_master_addr_before_torchrun(monkeypatch, capsys, no_launch):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    assert cli.main(["coco", "retinanet", "--nnodes", "2", "--gpus", "1"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: NNODES=2 needs MASTER_ADDR")


def test_gpus_above_the_machine_are_refused():
    cores, _ = launch_checks.available_processes(cuda=False)
    assert cores == len(os.sched_getaffinity(0))
    with pytest.raises(LaunchError, match=f"GPUS={cores + 1} processes per node, but this machine has {cores} CPU"):
        check_launch(_args("--gpus", str(cores + 1)), cuda=False)
    check_launch(_args("--gpus", str(cores)), cuda=False)
    import torch

    devices = torch.cuda.device_count()
    if devices:
        with pytest.raises(LaunchError, match=f"has {devices} visible CUDA devices"):
            check_launch(_args("--gpus", str(devices + 1)), cuda=True)
        check_launch(_args("--gpus", str(devices)), cuda=True)


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_seed_out_of_range_is_refused(seed):
    with pytest.raises(LaunchError, match=f"SEED={seed}: a seed must be between 0 and 4294967295"):
        check_launch(_args("--seed", seed), cuda=False)


def test_seed_at_the_ends_of_the_range_passes():
    for seed in ("0", str(2**32 - 1)):
        check_launch(_args("--seed", seed), cuda=False)


# ------------------------------------------------------------------ CFG_OPTIONS through make

def _make_words(**variables: str) -> list[str]:
    """The argument words make hands scripts/benchmark.py for `make coco-retinanet VAR=value ...`: the
    recipe line of a dry run (-n: nothing runs), executed by bash with the command replaced by printf."""
    settings = [f"{k}={v}" for k, v in variables.items()]
    dry = subprocess.run(["make", "-n", "-s", "-C", str(ROOT), "coco-retinanet", "BENCH=printf '%s\\n'", *settings],
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    (line,) = [line for line in dry.stdout.splitlines() if line.startswith("printf")]
    result = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr  # a '(' reached bash as code before the fix
    return result.stdout.splitlines()


@pytest.mark.parametrize("value, expected", [
    ("train_dataloader.dataset.metainfo.classes=(circle,square,triangle)",
     ["train_dataloader.dataset.metainfo.classes=(circle,square,triangle)"]),
    ('a.classes="(x, y)" train_cfg.max_iters=2', ["a.classes=(x, y)", "train_cfg.max_iters=2"]),
    ("model.name='it''s'", ["model.name=its"]),
])
def test_cfg_options_with_brackets_and_spaces_pass_through_make(value, expected):
    """The value as the shell gives it to make, i.e. what `make ... CFG_OPTIONS='<value>'` sets."""
    words = _make_words(CFG_OPTIONS=value)
    args = cli.parse_args(words)
    assert args.cfg_options == expected


def test_cfg_options_quoted_word_by_word_and_launcher_flags_in_them():
    tiny = ["train_cfg.max_iters=2", "train_dataloader.dataset.pipeline.2.scale=(128,96)"]
    words = _make_words(CONFIGS=NAME, CFG_OPTIONS=shlex.join(tiny))  # what the slurm e2e test passes
    args = cli.parse_args(words)
    assert args.cfg_options == tiny and args.configs == [NAME]
    with pytest.raises(SystemExit):
        cli.parse_args(_make_words(CFG_OPTIONS=f"train_cfg.max_iters=2 --configs {NAME}"))


def test_hints_quote_cfg_options_for_the_shell():
    hint = launch_checks.cfg_options_hint(["train_dataloader.dataset.metainfo.classes=(a,b)", "x.y=1"])
    assert hint == "CFG_OPTIONS='train_dataloader.dataset.metainfo.classes=(a,b) x.y=1'"
    (assignment,) = shlex.split(hint)  # what the user's shell hands make
    value = assignment.split("=", 1)[1]
    assert cli.parse_args(_make_words(CFG_OPTIONS=value)).cfg_options == [
        "train_dataloader.dataset.metainfo.classes=(a,b)", "x.y=1"]


def test_resume_command_repeats_the_options():
    args = _args("--data", "/data/my coco", "--gpus", "2", "--seed", "3", "--cfg-options", "a=(1,2)")
    assert launch_checks.make_command(args, resume=True) == (
        "make coco-retinanet DATA='/data/my coco' GPUS=2 SEED=3 RESUME=1 CFG_OPTIONS='a=(1,2)'")
    assert launch_checks.make_target("coco", "faster_rcnn") == "coco-faster-rcnn"
    assert launch_checks.make_target("cityscapes", "all") == "cityscapes"


def test_launch_options_are_typed_frozen_and_name_one_launcher_kind():
    """parse_args gives the one typed, frozen options object a launch reads (CFG_OPTIONS merged in);
    the launcher kind a run's config records is the one whose command starts its processes."""
    require.module("mmdet")
    from involution_ops.bench.launch import commands
    from involution_ops.bench.launch.options import LaunchOptions

    args = _args("--cfg-options", "a.b=1", "--cfg-options-line", "c.d='x y'")
    assert type(args) is LaunchOptions and args.cfg_options == ["a.b=1", "c.d=x y"]
    assert not hasattr(args, "cfg_options_line")
    with pytest.raises(dataclasses.FrozenInstanceError):
        args.amp = True
    job = planning.select_jobs(args, toy=True)[0]
    for extra, kind, program in [((), "none", sys.executable), (("--gpus", "2"), "pytorch", sys.executable),
                                 (("--gpus", "2", "--slurm-partition", "cpu"), "slurm", "srun")]:
        options = _args(*extra)
        context = planning.run_context(options, load_manifest(), Path("data/toy/coco"), "toy", device="cpu")
        cfg = planning.load_config(job, context)
        command = commands.job_command(job, options, Path("config.py"), partition_gpus=False)
        assert context.launcher == kind == cfg.launcher and command[0] == program, (extra, command)


# ------------------------------------------------------------------ Ctrl-C

DRIVER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from involution_ops.bench.launch import cli, commands, planning, runner
    from involution_ops.bench.launch.options import Job
    from involution_ops.bench.manifest import load_manifest
    child = ("import sys, time; from involution_ops.bench import run_process; "
             "run_process.train = lambda *a, **k: (print('ready', flush=True), time.sleep(60)); "
             "sys.exit(run_process.train_main(['config.py']))")
    args = cli.parse_args(["coco", "retinanet", "--work-dir", sys.argv[1], "--seed", "5"])
    manifest = load_manifest()
    job = Job(manifest.get("retinanet_red50_fpn_1x_coco"), Path("det_configs/retinanet_red50_fpn_1x_coco.py"))
    planning.write_run_config = lambda job, cfg, options: (Path(sys.argv[1]) / "config.py", None)
    commands.job_command = lambda *a, **k: [sys.executable, "-c", child]
    context = planning.run_context(args, manifest, Path("data/coco"), "coco", device="cpu")
    sys.exit(runner.run_jobs([job], {job.model.name: None}, context))
""")


def test_ctrl_c_ends_with_one_line_saying_how_to_resume(tmp_path):
    """SIGINT to the whole process group, as the terminal sends it: the launcher and its training
    process (scripts/train.py, its training replaced by a sleep) end without a traceback."""
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_2.pth"))  # the run has saved once
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        for line in process.stdout:
            if line.strip() == "ready":
                break
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    (message,) = err.strip().splitlines()
    assert message.startswith(f"interrupted: {NAME} stopped")
    assert f"make coco-retinanet WORK_DIR={tmp_path} SEED=5 RESUME=1" in message


def test_ctrl_c_before_the_first_checkpoint_says_to_start_again(tmp_path):
    args = _args("--work-dir", str(tmp_path))
    job = Job(load_manifest().get(NAME), Path("unused.py"))
    message = runner.interrupted_message(args, job, tmp_path)
    assert "before its first checkpoint" in message and "RESUME=1" not in message
    (tmp_path / "last_checkpoint").write_text("iter_2.pth")
    assert "RESUME=1" in runner.interrupted_message(args, job, tmp_path)


def test_train_script_on_its_own_says_how_to_resume(monkeypatch, capsys):
    from involution_ops.bench import run_process as train_script

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_script, "train", interrupted)
    monkeypatch.delenv(runconfig.LAUNCHED_ENV, raising=False)
    assert train_script.train_main(["run/config.py"]) == 130
    assert capsys.readouterr().err.strip() == ("interrupted: continue from the last checkpoint with: "
                                               "python scripts/train.py run/config.py --resume")
    monkeypatch.setenv(runconfig.LAUNCHED_ENV, "1")  # under the launcher, which prints the make command
    assert train_script.train_main(["run/config.py"]) == 130
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ output folders

def test_a_folder_that_cannot_be_written_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(run_space.SpaceError, match="is a file, not a folder"):
        run_space.check_writable(blocker / "work_dirs", "WORK_DIR", "WORK_DIR")
    if os.access("/sys", os.W_OK) and not os.path.ismount("/sys"):
        pytest.skip("no read-only folder on this machine")
    with pytest.raises(run_space.SpaceError, match="WORK_DIR /sys/work_dirs is not writable"):
        run_space.check_writable("/sys/work_dirs", "WORK_DIR", "WORK_DIR")
    assert run_space.check_writable(tmp_path / "new" / "runs", "results/runs") == tmp_path
    assert not (tmp_path / "new").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_checkpoint_size_estimate_and_free_space():
    cfg = {"optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.01, "momentum": 0.9}},
           "train_cfg": {"by_epoch": True, "max_epochs": 12},
           "default_hooks": {"checkpoint": {"type": "CheckpointHook", "interval": 1}}}
    assert run_space.optimizer_copies(cfg) == 2 and run_space.checkpoints_kept(cfg) == 12
    cfg["default_hooks"]["checkpoint"] = {"by_epoch": False, "interval": 500, "max_keep_ckpts": 3}
    assert run_space.checkpoints_kept(cfg) == 3
    cfg["optim_wrapper"]["optimizer"]["type"] = "AdamW"
    assert run_space.optimizer_copies(cfg) == 3
    estimate = run_space.CheckpointEstimate(NAME, parameters=10_000_000, state_copies=3, kept=3)
    assert estimate.each == 120_000_000 and estimate.total == 360_000_000  # 10 M x 4 bytes x 3, three kept
    lines = run_space.check_space("/", [estimate], free=10**12)
    assert lines[0].endswith("1000.0 GB free; the checkpoints need about 360.0 MB")
    assert "warning" in run_space.check_space("/", [estimate], free=200_000_000)[-1]
    with pytest.raises(run_space.SpaceError, match="100.0 MB free .* needs about 120.0 MB"):
        run_space.check_space("/", [estimate], free=100_000_000)


def test_preflight_refuses_an_unwritable_work_dir_and_shows_the_space(tmp_path, capsys, no_launch):
    require.module("mmdet")
    blocker = tmp_path / "file"
    blocker.write_text("")
    base = ["coco", "retinanet", "--configs", NAME, "--runs-dir", str(tmp_path / "runs")]
    assert cli.main([*base, "--work-dir", str(blocker / "work")]) == 2
    assert "error: WORK_DIR" in capsys.readouterr().err
    assert cli.main([*base, "--work-dir", str(tmp_path), "--runs-dir", str(blocker / "runs")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    jobs, configs, _ = orchestration.run_preflight(_args("--configs", NAME, "--work-dir", str(tmp_path),
                                                   "--runs-dir", str(tmp_path / "runs")))
    out = capsys.readouterr().out
    estimate = run_space.estimate(NAME, configs[NAME])
    assert estimate.parameters > 1_000_000 and estimate.kept == 2  # the toy schedule keeps two
    assert f"{estimate.kept} checkpoint(s) x" in out and "free; the checkpoints need about" in out


# ------------------------------------------------------------------ the scripts' config errors

@pytest.mark.parametrize("script", ["train.py", "test.py"])
def test_scripts_report_a_config_syntax_error_in_one_line(tmp_path, script):
    require.module("mmengine")
    config = tmp_path / "config.py"
    config.write_text("involution_run = dict(name='x')\nmodel = dict(\n    type='RetinaNet',,\n)\n")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / script), str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"error: config {config} does not load: syntax error in {config} line 3")
    assert "type='RetinaNet',," in lines[0]


def test_a_syntax_error_in_a_base_file_is_named(tmp_path):
    require.module("mmengine")
    from involution_ops.bench.runconfig import RunConfigError, load_model_config

    (tmp_path / "base.py").write_text("a = 1\nb = [1, 2\n")
    (tmp_path / "top.py").write_text("_base_ = ['./base.py']\nc = 3\n")
    with pytest.raises(RunConfigError) as error:
        load_model_config(tmp_path / "top.py")
    message = str(error.value)
    assert f"syntax error in {tmp_path / 'base.py'} line 2" in message and "\n" not in message
    with pytest.raises(RunConfigError, match="no such file"):
        load_model_config(tmp_path / "missing.py")
