"""Real distributed launches on localhost: `make coco-retinanet SLURM_PARTITION=...` on a one-machine
Slurm cluster, and two torchrun "nodes" sharing one WORK_DIR. Both on the toy data with gloo
processes and a two-iteration schedule; plus the unit tests of the srun command line."""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import REPO_ROOT as ROOT, require
from support.runs import benchmark_command, checkout_env, free_port, records
from support import slurm_cluster as local_slurm
from support.slurm_cluster import SlurmUnavailable, slurm_cluster

from involution_ops.bench.launch import cli, commands  # noqa: E402

CONFIG = "retinanet_red50_neck_fpn_1x_coco"
ITERS = 2
# As in test_det_e2e: tiny images, a two-image test set, every prediction kept.
TINY = [f"train_cfg.max_iters={ITERS}", "train_dataloader.dataset.pipeline.2.scale=(128,96)",
        "test_dataloader.dataset.pipeline.1.scale=(128,96)", "test_dataloader.dataset.indices=4",
        "model.test_cfg.score_thr=0.0", "default_hooks.logger.interval=1"]
LAUNCH_TIMEOUT = 780  # each slow test below has its own pytest timeout of 900 s
# gloo CPU processes on any machine (two ranks would otherwise share one GPU); one thread each, as torchrun sets
CPU_ENV = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


# ------------------------------------------------------------------ srun command line

def _args(*extra: str):
    return cli.parse_args(["coco", "retinanet", *extra])


@pytest.mark.parametrize("gres, expected", [
    ("gpu:8", True), ("gpu:a100:4(S:0-1)", True), ("mps:400,gpu:2", True), ("gpu", True),
    ("(null)", False), ("(null)\n(null)", False), ("gpux:2", False), ("", False)])
def test_gres_has_gpu(gres, expected):
    assert commands.gres_has_gpu(gres) is expected


def test_srun_requests_gpus_only_where_the_partition_has_them():
    args = _args("--gpus", "2", "--slurm-partition", "cpu")
    cpu = commands.launch_prefix(args, "job", partition_gpus=False)
    assert cpu[0] == "srun" and not any(part.startswith("--gres") for part in cpu)
    assert {"--ntasks=2", "--ntasks-per-node=2", "--nodes=1"} <= set(cpu)
    gpu = commands.launch_prefix(args, "job", partition_gpus=True)
    assert "--gres=gpu:2" in gpu


def test_slurm_task_ids_win_over_inherited_rank_variables():
    """srun copies the submitting shell's environment: a stale RANK/WORLD_SIZE there must not
    override the task's SLURM_PROCID/SLURM_NTASKS (here a one-task job: rank 0 of 1; taking the
    stale rank 3 of 4 instead would wait for three absent peers, hence the subprocess timeout)."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("with CUDA the slurm launch is mmengine's init_dist")
    env = {**os.environ, "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_LOCALID": "0", "RANK": "3",
           "WORLD_SIZE": "4", "LOCAL_RANK": "3", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "PYTHONPATH": str(ROOT)}
    code = ("import torch.distributed as dist; from involution_ops.bench import run_process; "
            "run_process.init_distributed('slurm'); "
            "print(dist.get_rank(), dist.get_world_size()); dist.destroy_process_group()")
    try:
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("init_distributed('slurm') waited for peers: it took the inherited RANK/WORLD_SIZE")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["0", "1"]


# ------------------------------------------------------------------ helpers

def _copy_checkout(target: Path) -> Path:
    """The working tree without outputs, so that the make target's records and tables stay in tmp."""
    outputs = {".git", ".venv", "data", "work_dirs", "results/runs", "results/plots"}

    def ignore(folder: str, names: list[str]) -> set[str]:
        relative = Path(folder).relative_to(ROOT)
        return {name for name in names if (relative / name).as_posix() in outputs
                or name in ("__pycache__", ".pytest_cache") or name.endswith(".egg-info")}

    shutil.copytree(ROOT, target, ignore=ignore, symlinks=True)
    return target


def _communicate(processes: list[subprocess.Popen], timeout: float) -> list[str]:
    """Wait for all; on a timeout kill every process group and fail with their output so far."""
    outputs = []
    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
    except subprocess.TimeoutExpired:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        tails = [(p.communicate()[0] or "")[-3000:] for p in processes]
        pytest.fail(f"launch did not finish within {timeout} s:\n" + "\n-----\n".join(tails))
    return outputs


def _run_log(work_dir: Path) -> str:
    logs = sorted(work_dir.glob(f"coco/{CONFIG}/*/*/*.log"))
    assert len(logs) == 1, f"expected one run log, found {logs}"
    return logs[0].read_text()


# ------------------------------------------------------------------ Slurm

@pytest.fixture
def slurm():
    require.module("mmdet")  # before installing or starting anything
    try:
        with slurm_cluster() as cluster:
            yield cluster
    except SlurmUnavailable as error:  # a skip; a failure under INVOLUTION_REQUIRE=slurm (.ci/run)
        require.missing("slurm", f"no local Slurm cluster: {error}")


def test_slurm_is_installed_only_when_asked(monkeypatch):
    """Without INVOLUTION_INSTALL_SLURM=1 a missing Slurm is reported (for the skip), never installed."""
    def no_command(command, *args, **kwargs):
        raise AssertionError(f"ran {command} without being asked to install")

    monkeypatch.setattr(local_slurm.shutil, "which", lambda name, path=None: None)
    monkeypatch.setattr(local_slurm.subprocess, "run", no_command)
    monkeypatch.delenv(local_slurm.INSTALL_VAR, raising=False)
    with pytest.raises(SlurmUnavailable, match="set INVOLUTION_INSTALL_SLURM=1 to let the test install them"):
        local_slurm.ensure_installed()
    monkeypatch.setenv(local_slurm.INSTALL_VAR, "1")
    monkeypatch.setattr(local_slurm.os, "geteuid", lambda: 1000)
    with pytest.raises(SlurmUnavailable, match="not running as root"):  # asked: it would install, as root only
        local_slurm.ensure_installed()


def _setup_is_current(repo: Path, venv: str) -> bool:
    """Whether the target's `setup` prerequisite would install nothing (as after `make setup`)."""
    check = subprocess.run(["bash", "scripts/setup_env.sh", "--check"], cwd=repo, env={**os.environ, "VENV": venv},
                           timeout=60)
    return check.returncode == 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_make_target_under_slurm(slurm, tmp_path):
    repo = _copy_checkout(tmp_path / "repo")
    if not _setup_is_current(repo, sys.prefix):
        pytest.skip(f"the environment {sys.prefix} is not set up for this checkout: the make target would "
                    f"reinstall it first (run `make setup`, as `make test` does)")
    tables_before = (repo / "results" / "README.md").read_text()
    work = tmp_path / "work_dirs"
    # CFG_OPTIONS as a user writes it in the shell: its '(' reach benchmark.py intact (one config, not both)
    command = ["make", "-C", str(repo), "coco-retinanet", f"VENV={sys.prefix}", f"SLURM_PARTITION={slurm.partition}",
               "GPUS=2", f"MASTER_PORT={free_port()}", f"WORK_DIR={work}", f"CONFIGS={CONFIG}",
               f"CFG_OPTIONS={shlex.join(TINY)}"]
    env = checkout_env(repo, slurm.env({**os.environ, **CPU_ENV}))  # the copy's package, not the installed one
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    (output,) = _communicate([process], LAUNCH_TIMEOUT)
    controller_log = slurm.log("slurmctld").read_text()
    assert process.returncode == 0, output[-4000:] + "\n" + slurm.logs()

    assert f"srun -p {slurm.partition}" in output and "--gres" not in output  # a CPU-only partition
    assert "--ntasks=2" in output
    (record,) = records(repo / "results" / "runs")
    assert record["name"] == CONFIG and record["dataset"] == "toy"
    assert record["world_size"] == 2 and record["iterations"] == ITERS
    assert "bbox_AP" in record["metrics"]
    log = _run_log(work)
    assert "Distributed launcher: slurm" in log and "Distributed training: True" in log, log[:3000]
    # the controller allocated one job and saw it end well (its two tasks: world_size above)
    assert controller_log.count("sched: _slurm_rpc_allocate_resources") == 1, controller_log[-3000:]
    assert "_job_complete: JobId=1 WEXITSTATUS 0" in controller_log, controller_log[-3000:]
    tables = (repo / "results" / "README.md").read_text()
    assert tables != tables_before and CONFIG in tables.split("toy", 1)[-1]


# ------------------------------------------------------------------ two torchrun nodes

@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_torchrun_nodes_share_one_run(tmp_path):
    require.module("mmdet")
    work, port = tmp_path / "work_dirs", free_port()
    env = checkout_env(base={**os.environ, **CPU_ENV})
    processes = [
        subprocess.Popen(benchmark_command("coco", "retinanet", CONFIG, tmp_path, "--gpus", "1", "--nnodes", "2",
                                           "--node-rank", str(rank), "--master-addr", "127.0.0.1",
                                           "--master-port", str(port), options=TINY),
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
        for rank in (0, 1)]
    outputs = _communicate(processes, LAUNCH_TIMEOUT)
    for rank, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"node {rank}:\n{output[-4000:]}"
    (record,) = records(tmp_path / "runs")  # rank 0 only
    assert record["world_size"] == 2 and record["iterations"] == ITERS  # as many as one node runs
    assert [step for step, _ in record["loss_curve"]] == list(range(1, ITERS + 1))
    run_dirs = [p for p in (work / "coco" / CONFIG).iterdir() if p.is_dir()]
    assert len(run_dirs) == 1, f"the nodes did not agree on one run folder: {run_dirs}"
    assert (run_dirs[0] / f"iter_{ITERS}.pth").is_file()
    log = _run_log(work)
    assert "Distributed launcher: pytorch" in log and "Distributed training: True" in log, log[:3000]
    assert f"Iter(train) [{ITERS}/{ITERS}]" in log
