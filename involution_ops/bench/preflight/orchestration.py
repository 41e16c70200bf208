"""The pre-flight of one launch, in order: launch options, the user-given weights (a second each),
the data root and the target's configs, then per config the data and the weights it will load,
the batch plan and the output folders. Every problem is a `PreflightError` raised before the first
run starts.

The configs are the very ones the runs will train with: built by the launcher's planning
(involution_ops.bench.launch.planning) through runconfig. Both are imported when a pre-flight
runs: they, and the check modules runconfig uses, import this package's errors.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..output import banner
from .cache import PreflightCache
from .cityscapes import check_cityscapes
from .coco import check_coco
from .options import check_launch_options
from .weights import check_pretrained, match_checkpoint, read_weights, require_checkpoint_file, require_pretrained_file

if TYPE_CHECKING:
    from ..launch.options import Job, LaunchOptions, RunContext


def run_preflight(options: LaunchOptions) -> tuple[list[Job], dict[str, Any], RunContext]:
    """Every check before the first run: (jobs, their configs, the run context)."""
    from ..manifest import load_manifest
    from ..launch import planning
    from ..runconfig import CONFIG_NAME, batch_plan, relative

    check_launch_options(options)
    cache = PreflightCache()
    # User-given weights are read first: a broken or unsafe file stops here, in a second.
    if options.pretrained:
        require_pretrained_file(options.pretrained, empty_is_missing=False)
        read_weights(options.pretrained, f"PRETRAINED={options.pretrained}", cache)
    if options.ckpt:
        require_checkpoint_file(options.ckpt)
        read_weights(options.ckpt, f"CKPT={options.ckpt}", cache)
    manifest = load_manifest()
    data_root, dataset = planning.resolve_data(options, manifest)
    jobs = planning.select_jobs(options, toy=dataset == "toy", manifest=manifest)
    context = planning.run_context(options, manifest, data_root, dataset)
    banner(f"pre-flight checks: {len(jobs)} config(s) on {dataset} data at {data_root}")
    warned: set = set()
    configs = {job.model.name: planning.load_config(job, context, warned) for job in jobs}
    if options.ckpt:
        jobs = match_checkpoint(jobs, options.ckpt, configs, cache)
        configs = {job.model.name: planning.evaluation_config(job, configs[job.model.name], context, cache, warned)
                   for job in jobs}
    if options.resume:
        jobs = planning.plan_resume(jobs, options)
        for job in jobs:
            if job.run_dir is not None and (job.run_dir / CONFIG_NAME).is_file():
                configs[job.model.name] = planning.reload_config(job.run_dir / CONFIG_NAME, job, context, False, warned)
    for job in jobs:
        cfg = configs[job.model.name]
        if options.suite == "coco":
            check_coco(cfg, cache)
        else:
            check_cityscapes(cfg)
        if not options.ckpt:
            check_pretrained(cfg, options.pretrained, dataset, job.model.name, cache)
        print(f"  ok  {job.model.name}  ({relative(job.config)})", flush=True)
        plan = None if options.ckpt else batch_plan(cfg)
        if plan is not None:
            print("      " + plan.describe().replace("\n", "\n      "), flush=True)
    check_output_folders(jobs, configs, options)
    return jobs, configs, context


def check_output_folders(jobs: list[Job], configs: dict[str, Any], options: LaunchOptions) -> None:
    """WORK_DIR and the records' folder writable, and WORK_DIR's disk able to hold the checkpoints
    (node 0 only: the other nodes' processes save nothing)."""
    from .. import run_space

    if options.node_rank > 0 or not jobs:
        return
    run_space.check_writable(options.runs_dir, "the run records' folder")
    for job in jobs:
        run_space.check_writable(job.run_dir or Path(options.work_dir) / options.suite / job.model.name, "WORK_DIR",
                                 "WORK_DIR")
    if options.ckpt:
        return  # an evaluation saves no checkpoint
    estimates = [run_space.estimate(job.model.name, configs[job.model.name]) for job in jobs]
    lines = run_space.check_space(options.work_dir, estimates)
    print("  " + "\n  ".join(lines), flush=True)
