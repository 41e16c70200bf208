"""The pre-flight of a launch: every check before the first run starts (the checks themselves are
in bench.preflight, launch_checks, run_space and the *_checks modules)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import run_space, zoo
from ..io import banner
from ..launch_checks import LaunchError, check_launch
from ..preflight import (CONVERT_HINT, PreflightError, _local_path, check_amp, check_cityscapes, check_coco,
                         check_pretrained, match_checkpoint, read_weights)
from ..runconfig import CONFIG_NAME, batch_plan, relative
from .options import Job, LaunchOptions, RunContext
from .planning import evaluation_config, load_config, plan_resume, reload_config, resolve_data, run_context, select_jobs


def preflight(options: LaunchOptions) -> tuple[list[Job], dict[str, Any], RunContext]:
    """Every check before the first run: (jobs, their configs, the run context)."""
    try:
        check_launch(options, cuda=None if not options.slurm_partition else False)
    except LaunchError as error:
        raise PreflightError(str(error)) from None
    check_amp(options.amp, options.slurm_partition)
    cache: dict = {}
    # User-given weights are read first: a broken or unsafe file stops here, in a second.
    if options.pretrained:
        if not _local_path(options.pretrained).is_file():
            raise PreflightError(f"pretrained backbone weights {options.pretrained} not found. Fix: "
                                 + CONVERT_HINT.format(path=options.pretrained))
        read_weights(options.pretrained, f"PRETRAINED={options.pretrained}", cache)
    if options.ckpt:
        if not Path(options.ckpt).is_file():
            raise PreflightError(f"CKPT={options.ckpt}: no such checkpoint file. Fix: give the path of a .pth "
                                 f"file (e.g. work_dirs/<suite>/<config>/<timestamp>/iter_N.pth)")
        read_weights(options.ckpt, f"CKPT={options.ckpt}", cache)
    manifest = zoo.load()
    data_root, dataset = resolve_data(options, manifest)
    jobs = select_jobs(options, toy=dataset == "toy", manifest=manifest)
    context = run_context(options, manifest, data_root, dataset)
    banner(f"pre-flight checks: {len(jobs)} config(s) on {dataset} data at {data_root}")
    warned: set = set()
    configs = {job.name: load_config(job, context, warned) for job in jobs}
    if options.ckpt:
        jobs = match_checkpoint(jobs, options.ckpt, configs, cache)
        configs = {job.name: evaluation_config(job, configs[job.name], context, cache, warned) for job in jobs}
    if options.resume:
        jobs = plan_resume(jobs, options)
        for job in jobs:
            if job.run_dir is not None and (job.run_dir / CONFIG_NAME).is_file():
                configs[job.name] = reload_config(job.run_dir / CONFIG_NAME, job, context, False, warned)
    for job in jobs:
        cfg = configs[job.name]
        if options.suite == "coco":
            check_coco(cfg, cache)
        else:
            check_cityscapes(cfg)
        if not options.ckpt:
            check_pretrained(cfg, options.pretrained, dataset, job.name, cache)
        print(f"  ok  {job.name}  ({relative(job.config)})", flush=True)
        plan = None if options.ckpt else batch_plan(cfg)
        if plan is not None:
            print("      " + plan.describe().replace("\n", "\n      "), flush=True)
    check_output_folders(jobs, configs, options)
    return jobs, configs, context


def check_output_folders(jobs: list[Job], configs: dict[str, Any], options: LaunchOptions) -> None:
    """WORK_DIR and the records' folder writable, and WORK_DIR's disk able to hold the checkpoints
    (node 0 only: the other nodes' processes save nothing)."""
    if options.node_rank > 0 or not jobs:
        return
    try:
        run_space.check_writable(options.runs_dir, "the run records' folder")
        for job in jobs:
            run_space.check_writable(job.run_dir or Path(options.work_dir) / options.suite / job.name, "WORK_DIR",
                                     "WORK_DIR")
        if options.ckpt:
            return  # an evaluation saves no checkpoint
        estimates = [run_space.estimate(job.name, configs[job.name]) for job in jobs]
        lines = run_space.check_space(options.work_dir, estimates)
    except run_space.SpaceError as error:
        raise PreflightError(str(error)) from None
    print("  " + "\n  ".join(lines), flush=True)
