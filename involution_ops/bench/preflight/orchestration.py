"""The pre-flight of one launch, in order: launch options, the user-given weights (a second each),
the data root and the target's configs, then per config the data and the weights it will load,
the batch plan and the output folders. Every problem is a `PreflightError` raised before the first
run starts.

`run_preflight` takes the launch options as attributes (suite, group, amp, pretrained, ckpt,
resume, slurm_partition, runs_dir, work_dir...: today the launcher's parsed arguments).
"""
from __future__ import annotations

from typing import Any

from ..io import banner
from .cache import PreflightCache
from .cityscapes import check_cityscapes
from .coco import check_coco
from .options import check_launch_options
from .weights import check_pretrained, match_checkpoint, read_weights, require_checkpoint_file, require_pretrained_file


def run_preflight(options: Any) -> tuple[list[Any], dict[str, Any], str, bool | None]:
    """Every check before the first run: (jobs, their configs, dataset, partition has GPUs)."""
    # The job planning and config building still live in the launcher (being split into a package).
    from .. import launcher, zoo
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
    manifest = zoo.load()
    data_root, dataset = launcher.resolve_data(options, manifest)
    jobs = launcher.select_jobs(options, toy=dataset == "toy", manifest=manifest)
    partition_gpus = (launcher.slurm_partition_has_gpus(options.slurm_partition) if options.slurm_partition
                      else None)
    device = launcher.planned_device(options, partition_gpus)
    banner(f"pre-flight checks: {len(jobs)} config(s) on {dataset} data at {data_root}")
    warned: set = set()
    configs = {job.name: launcher.load_config(job, data_root, options, warned, dataset, device) for job in jobs}
    if options.ckpt:
        jobs = match_checkpoint(jobs, options.ckpt, configs, cache)
        configs = {job.name: launcher.evaluation_config(job, configs[job.name], data_root, options, dataset, device,
                                                        cache, warned) for job in jobs}
    if options.resume:
        jobs = launcher.plan_resume(jobs, options)
        for job in jobs:
            if job.run_dir is not None and (job.run_dir / CONFIG_NAME).is_file():
                configs[job.name] = launcher.reload_config(job.run_dir / CONFIG_NAME, job, data_root, options,
                                                           False, warned, dataset, device)
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
    launcher.check_output_folders(jobs, configs, options)
    return jobs, configs, dataset, partition_gpus
