"""The launcher's former single module, kept as an import path: the launcher is the package
`involution_ops.bench.launch` (command line, options and run context, pre-flight, job planning,
launch commands, runner). New code imports from there."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import zoo
from .launch import planning
from .launch.cli import main, parse_args
from .launch.commands import gres_has_gpu, job_command, launch_prefix, launcher_kind, slurm_partition_has_gpus
from .launch.options import Job, LaunchOptions, RunContext
from .launch.planning import latest_resumable, new_run_dir, plan_resume, resolve_data, select_jobs
from .preflight.orchestration import check_output_folders, run_preflight
from .launch.runner import INTERRUPTED, interrupted_message, run_jobs

__all__ = ["INTERRUPTED", "Job", "LaunchOptions", "RunContext", "check_output_folders", "gres_has_gpu",
           "interrupted_message", "job_command", "latest_resumable", "launch_prefix", "launcher_kind", "load_config",
           "main", "new_run_dir", "parse_args", "plan_resume", "resolve_data", "run_jobs", "run_preflight",
           "select_jobs", "slurm_partition_has_gpus"]


def load_config(job: Job, data_root: Path, options: LaunchOptions, warned: set | None = None,
                dataset: str | None = None, device: str | None = None) -> Any:
    """The config a run of ``job`` on ``data_root`` trains with, for callers that hold no run
    context: the dataset label follows the config's folder (toy or the suite), the device is
    planned as a launch plans it."""
    dataset = dataset or ("toy" if job.config.parent.name == "toy" else options.suite)
    context = planning.run_context(options, zoo.load(), data_root, dataset,
                                   device=device or planning.planned_device(options))
    return planning.load_config(job, context, warned)
