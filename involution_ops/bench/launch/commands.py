"""The commands that start a job's processes - one process, torchrun or srun - and their environment."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from ..output import REPO_ROOT as REPO
from ..runconfig import LAUNCHED_ENV
from .options import Job, LaunchOptions

SCRIPTS = REPO / "scripts"
QUIET_WARNINGS = "ignore:pkg_resources is deprecated:UserWarning"
DEFAULT_MASTER_PORT = 29500


def gres_has_gpu(gres: str) -> bool:
    """Whether sinfo's %G column (e.g. `gpu:a100:4(S:0-1)`, `(null)`) lists a GPU resource."""
    return re.search(r"(?:^|[\s,])gpu(?:[:(\s,]|$)", gres) is not None


def slurm_partition_has_gpus(partition: str) -> bool | None:
    """Whether the nodes of a Slurm partition declare GPUs (`sinfo`); None when sinfo cannot tell."""
    try:
        result = subprocess.run(["sinfo", "-h", "-p", partition, "-o", "%G"], capture_output=True, text=True,
                                timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0 or not result.stdout.strip():
        return None
    return gres_has_gpu(result.stdout)


def launcher_kind(options: LaunchOptions) -> str:
    """mmengine's name for how the processes are started: slurm (srun), pytorch (torchrun) or none."""
    if options.slurm_partition:
        return "slurm"
    return "pytorch" if options.gpus > 1 or options.nnodes > 1 else "none"


def launch_prefix(options: LaunchOptions, job_name: str, partition_gpus: bool | None = None) -> list[str]:
    """The command prefix for one process, torchrun, or srun (as `launcher_kind` says).

    srun asks for `--gres=gpu:GPUS` unless the partition's nodes declare no GPU at all (then the
    ranks are CPU processes talking gloo; requesting a GPU there would never be scheduled).
    `partition_gpus` None: ask sinfo (the submitting machine itself often has no GPU).
    """
    kind = launcher_kind(options)
    if kind == "slurm":
        if partition_gpus is None:
            partition_gpus = slurm_partition_has_gpus(options.slurm_partition)
        gres = [] if partition_gpus is False else [f"--gres=gpu:{options.gpus}"]
        return ["srun", "-p", options.slurm_partition, f"--job-name={job_name}", *gres,
                f"--ntasks={options.world_size}", f"--ntasks-per-node={options.gpus}", f"--nodes={options.nnodes}",
                "--kill-on-bad-exit=1", sys.executable, "-u"]
    if kind == "pytorch":
        return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={options.gpus}",
                f"--nnodes={options.nnodes}", f"--node_rank={options.node_rank}",
                f"--master_addr={options.master_addr or '127.0.0.1'}", f"--master_port={options.master_port}"]
    return [sys.executable]


def job_command(job: Job, options: LaunchOptions, config: Path, partition_gpus: bool | None = None) -> list[str]:
    """The command that starts a job's processes on its run's config.py."""
    prefix = launch_prefix(options, job.model.name, partition_gpus)
    if options.ckpt:
        return [*prefix, str(SCRIPTS / "test.py"), str(config)]
    return [*prefix, str(SCRIPTS / "train.py"), str(config), *(["--resume"] if job.resume else [])]


def child_environment(options: LaunchOptions) -> dict[str, str]:
    """The environment the job's processes start with."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # mmengine 0.10.7 imports pkg_resources, whose deprecation warning would repeat in every process
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), QUIET_WARNINGS]))
    if options.slurm_partition and options.master_port != DEFAULT_MASTER_PORT:  # srun hands it to every task
        env["MASTER_PORT"] = str(options.master_port)
    env[LAUNCHED_ENV] = "1"  # scripts/train.py leaves the Ctrl-C message to this launcher
    return env
