"""Job planning: which configs run (CONFIGS, the group), on which data, the run context, each run's
config (built, or read back for RESUME=1 and CKPT), resume planning, and the run folders."""
from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from ..manifest import Manifest, load_manifest
from ..output import REPO_ROOT as REPO
from ..output import banner
from ..mmconfig import scope_of
from ..preflight.cache import PreflightCache
from ..preflight.errors import PreflightError
from ..preflight.weights import checkpoint_fit, read_weights
from ..records import finished_run_dirs
from ..runconfig import (CONFIG_NAME, RUN_KEY, RunConfigError, RunSpec, build_run_config, load_model_config,
                         place_in_run_dir, prepare_evaluation, relative, reload_run_config, resume_config_name)
from ..toy_data import ensure_toy_data
from .commands import launcher_kind, slurm_partition_has_gpus
from .options import Job, LaunchOptions, RunContext


def select_jobs(options: LaunchOptions, toy: bool, manifest: Manifest | None = None) -> list[Job]:
    models = (manifest or load_manifest()).target_models(options.suite, options.group, baselines=options.baselines)
    if options.configs:
        known = {model.name: model for model in models}
        unknown = [n for n in options.configs if n not in known]
        if unknown:
            raise PreflightError(f"--configs {' '.join(unknown)}: not in this target; choose from {', '.join(known)}")
        models = [known[n] for n in options.configs]
    jobs = []
    for model in models:
        config = model.config_for(toy)
        if not config.is_file():
            raise PreflightError(f"config {relative(config)} is missing from this checkout")
        jobs.append(Job(model, config))
    return jobs


def resolve_data(options: LaunchOptions, manifest: Manifest | None = None) -> tuple[Path, str]:
    """(data root, dataset label). Only the default location may fall back to the toy data."""
    if options.data:
        root = Path(options.data).expanduser()
        if not root.is_dir():
            raise PreflightError(f"DATA={options.data}: no such folder. Fix: point DATA at your {options.suite} "
                                 f"root, or leave DATA unset to use the built-in toy data")
        return root.resolve(), options.suite
    default_data = (manifest or load_manifest()).default_data(options.suite)
    default = REPO / default_data
    if default.is_dir():
        return default, options.suite
    suite = options.suite
    banner(f"NO {suite.upper()} DATASET AT {default_data}: USING THE BUILT-IN TOY DATASET\n"
           f"(synthetic shapes from involution_ops/bench/toy_data.py; results are recorded as dataset 'toy' and\n"
           f" say nothing about {suite}. Set DATA=/path/to/{suite} for the real benchmark.)", loud=True)
    return ensure_toy_data(REPO / "data" / "toy", suite).resolve(), "toy"


def planned_device(options: LaunchOptions, partition_gpus: bool | None = None) -> str:
    """Where the training processes will run: cuda, or cpu (gloo processes)."""
    if options.slurm_partition:
        return "cpu" if partition_gpus is False else "cuda"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_context(options: LaunchOptions, manifest: Manifest, data_root: Path, dataset: str,
                device: str | None = None) -> RunContext:
    """The run context of a launch on ``data_root``: asks sinfo (SLURM_PARTITION) and torch (the
    device) once; ``device`` given: that device, and no sinfo."""
    partition_gpus = None
    if device is None:
        partition_gpus = slurm_partition_has_gpus(options.slurm_partition) if options.slurm_partition else None
        device = planned_device(options, partition_gpus)
    return RunContext(options=options, manifest=manifest, data_root=Path(data_root), dataset=dataset,
                      device=device, partition_gpus=partition_gpus, launcher=launcher_kind(options))


# ---------------------------------------------------------------- the run configs

def run_spec(job: Job, context: RunContext) -> RunSpec:
    options = context.options
    return RunSpec(model=job.model, config=job.config, dataset=context.dataset,
                   data_root=context.data_root, runs_dir=options.runs_dir, launcher=context.launcher,
                   device=context.device, world_size=options.world_size, seed=options.seed,
                   deterministic=options.deterministic, amp=options.amp, pretrained=options.pretrained,
                   cfg_options=list(options.cfg_options), batch=options.batch)


def _warner(warned: set | None) -> Callable[[str], None]:
    def warn(text: str) -> None:
        if warned is None or text not in warned:
            print(f"  warning: {text}", flush=True)
            if warned is not None:
                warned.add(text)
    return warn


def load_config(job: Job, context: RunContext, warned: set | None = None) -> Any:
    """The config a run of ``job`` trains with (involution_ops.bench.runconfig), as a pre-flight step."""
    return build_run_config(run_spec(job, context), warn=_warner(warned))


def reload_config(path: Path, job: Job, context: RunContext, evaluate: bool, warned: set | None = None) -> Any:
    """A run folder's config.py read back (RESUME=1, CKPT), with this invocation's launch and options."""
    return reload_run_config(path, run_spec(job, context), evaluate, warn=_warner(warned))


def evaluation_config(job: Job, cfg: Any, context: RunContext, cache: PreflightCache, warned: set) -> Any:
    """CKPT: the config of the checkpoint's own run folder when it has one (checked against every
    tensor of the checkpoint), else the target's config; set to load the checkpoint."""
    ckpt = context.options.ckpt
    saved = Path(ckpt).resolve().parent / CONFIG_NAME
    if saved.is_file() and _run_name(saved) == job.model.name:
        cfg = reload_config(saved, job, context, True, warned)
        checkpoint = read_weights(ckpt, f"CKPT={ckpt}", cache)
        problem = checkpoint_fit(checkpoint, cfg.model, relative(saved), scope_of(cfg)).problem(
            "Fix: keep the checkpoint next to the config.py it was trained with")
        if problem:
            raise PreflightError(problem)
        print(f"  using the config it was trained with: {relative(saved)}", flush=True)
    else:
        cfg[RUN_KEY].pop("batch", None)  # planned for this invocation, not how the checkpoint was trained
    prepare_evaluation(cfg, ckpt)
    return cfg


def _run_name(path: Path) -> str | None:
    """The run name a config.py written by this launcher records, else None."""
    try:
        facts = load_model_config(path).get(RUN_KEY)
    except RunConfigError:
        return None
    return facts.get("name") if isinstance(facts, dict) else None


# ---------------------------------------------------------------- RESUME=1 and the run folders

def latest_resumable(root: str | Path) -> Path | None:
    """Newest run folder under root that holds mmengine's `last_checkpoint` pointer."""
    runs = [p.parent for p in Path(root).glob("*/last_checkpoint")]
    return max(runs, key=lambda p: p.name) if runs else None


def plan_resume(jobs: list[Job], options: LaunchOptions) -> list[Job]:
    """RESUME=1 on a group: continue each config's newest run with a checkpoint, start the configs
    that have none (killed before their first checkpoint, or never started), and leave out those
    whose newest run already finished (it has a record)."""
    newest = {job.model.name: latest_resumable(Path(options.work_dir) / options.suite / job.model.name) for job in jobs}
    finished = finished_run_dirs(options.runs_dir, [found for found in newest.values() if found is not None])
    planned = []
    for job in jobs:
        found = newest[job.model.name]
        if found is not None and found.resolve() in finished:
            print(f"  done {job.model.name}: its newest run {found} has finished (record in {options.runs_dir}); "
                  f"not run again", flush=True)
            continue
        planned.append(dataclasses.replace(job, resume=found is not None,
                                           run_dir=found.resolve() if found is not None else None))
        print(f"  {'resume' if found is not None else 'start '} {job.model.name}"
              + (f" from {found}" if found is not None else ": no run with a checkpoint yet, starts afresh"),
              flush=True)
    if planned and not any(job.resume for job in planned):
        folders = ", ".join(str(Path(options.work_dir) / options.suite / job.model.name) for job in planned)
        raise PreflightError(f"RESUME=1 but {folders} holds no run with a checkpoint. Fix: start without "
                             f"RESUME=1, or set WORK_DIR to the folder of the killed runs")
    return planned


def new_run_dir(root: str | Path, suffix: str = "") -> Path:
    """A fresh `<timestamp><suffix>` folder under root; an existing folder is never reused."""
    Path(root).mkdir(parents=True, exist_ok=True)
    base = time.strftime("%Y%m%d-%H%M%S") + suffix
    for attempt in range(100):
        candidate = Path(root) / (base if attempt == 0 else f"{base}-{attempt}")
        try:
            candidate.mkdir()
            return candidate.resolve()
        except FileExistsError:
            continue
    raise PreflightError(f"could not create a new run folder in {root}")


def write_run_config(job: Job, cfg: Any, options: LaunchOptions) -> tuple[Path, Path | None]:
    """(config.py the run starts on, a temporary folder to remove afterwards or None).

    Node 0 writes into the run folder (a new one, or the resumed one); the launchers of the other
    nodes write a stand-in that their processes drop for rank 0's file (run_process.load_run_config)."""
    if options.node_rank > 0:
        scratch = Path(tempfile.mkdtemp(prefix=f"involution-{job.model.name}-node{options.node_rank}-"))
        cfg.dump(str(scratch / CONFIG_NAME))
        return scratch / CONFIG_NAME, scratch
    if job.run_dir is not None:  # RESUME=1: the run's config.py stays as it was; this session gets its own file
        return place_in_run_dir(cfg, job.run_dir, resume_config_name(job.run_dir)), None
    root = Path(options.work_dir) / options.suite / job.model.name
    return place_in_run_dir(cfg, new_run_dir(root, "-eval" if options.ckpt else "")), None
