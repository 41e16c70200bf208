"""What runs inside a training or evaluation process: join the process group, load the run's
config.py (rank 0's, on every rank), build mmengine's Runner, train + test or evaluate, and
write the run record (rank 0).

Exit codes: 0 the run is recorded in results/runs; 1 the run failed (non-finite loss, full disk,
a test that evaluated nothing: a `failed_record.json` in its run folder where the disk allows,
nothing in results/runs); 2 it could not start; 3 it trained and tested but its record could not
be written to results/runs, so it was written to the run folder (the tables do not see it yet).
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import checkpoint_files, dataset_identity, records, training_guards
from .runconfig import LAUNCHED_ENV, RUN_KEY, RunConfigError, load_model_config, relative


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def init_distributed(launcher: str) -> None:
    """Join the process group before the Runner does, so that rank 0's config can be shared.

    On a CPU machine mmengine's launchers would call torch.cuda.set_device, so gloo is
    started here directly; the Runner then finds the group initialised and keeps it.
    """
    if launcher == "none":
        return
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if _cuda():
        from mmengine.dist import init_dist

        init_dist(launcher)
        return
    if launcher == "slurm":
        # as mmengine's slurm launcher: the task's own ids win over any RANK etc. srun copied from the shell
        os.environ["RANK"] = os.environ["SLURM_PROCID"]
        os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
        os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")
        os.environ.setdefault("MASTER_PORT", "29500")
        if "MASTER_ADDR" not in os.environ:
            nodes = os.environ["SLURM_NODELIST"]
            os.environ["MASTER_ADDR"] = subprocess.getoutput(f"scontrol show hostname {nodes} | head -n1")
    dist.init_process_group(backend="gloo")


def load_run_config(path: str | Path) -> Any:
    """The run's config.py; with several processes, rank 0's file on every rank (each node's
    launcher wrote its own, only rank 0's names the run folder the processes share)."""
    import torch.distributed as dist

    cfg = load_model_config(path)
    init_distributed(cfg.get("launcher", "none"))
    if dist.is_initialized():
        chosen = [str(Path(path).resolve())]
        dist.broadcast_object_list(chosen, src=0)
        if chosen[0] != str(Path(path).resolve()):
            cfg = load_model_config(chosen[0])
    if RUN_KEY not in cfg:
        raise SystemExit(f"error: {path} is not a run's config (no {RUN_KEY} key). Fix: start runs with "
                         f"scripts/benchmark.py (make coco-* / cityscapes-*), which writes that file")
    if cfg[RUN_KEY].get("device") == "cuda" and not _cuda():
        raise SystemExit(f"error: {path} was built for CUDA processes but this one has no GPU. Fix: start it "
                         f"where the launcher planned it, or run the benchmark again on this machine")
    return cfg


def is_main_process() -> bool:
    from mmengine.dist import get_rank

    return get_rank() == 0


def banner(text: str) -> None:
    if is_main_process():
        print(f"\n{'=' * 78}\n== {text}\n{'=' * 78}", flush=True)


def build_runner(cfg: Any) -> Any:
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from . import image_guard  # noqa: F401  (registers the training pipeline's image loader)

    if "runner_type" in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def run_record(cfg: Any, runner: Any, *, started_at: str, seconds: float, iterations: int | None,
               checkpoint: str, loss_curve: list, evaluated_checkpoint_only: bool,
               raw_metrics: dict[str, Any] | None = None, tested: bool = True,
               **extra: Any) -> records.RunRecord:
    """The record of a training or an evaluation run (records.RunRecord), built by rank 0.

    ``raw_metrics``: the evaluator's output (none when the run did not get to its test);
    ``tested``: the runner has run its test, so the evaluated data is identified (else the
    record's dataset_identity is None); ``extra``: fields only one kind of run has."""
    from mmengine.dist import get_world_size

    from . import environment

    facts = cfg[RUN_KEY]
    trainable, total = records.params_m(runner.model)
    return {
        "schema": records.SCHEMA,
        "status": records.OK,
        "name": facts["name"],
        "suite": facts["suite"],
        "config": facts["source_config"],
        # the file this session ran with: config.py, or a resumed session's config.resume-*.py
        "run_config": facts.get("run_config") or relative(Path(cfg.work_dir) / "config.py"),
        "dataset": facts["dataset"],
        "metrics": records.metrics_from_mm(raw_metrics or {}),
        "params_trainable_m": trainable,
        "params_total_m": total,
        "gflops_paper": records.gflops_paper(facts["name"]),
        "seed": runner.seed,
        "deterministic": bool(cfg.get("randomness", {}).get("deterministic", False)),
        "amp": cfg.optim_wrapper.get("type") == "AmpOptimWrapper",
        "world_size": get_world_size(),
        "work_dir": relative(cfg.work_dir),
        "git_commit": environment.git_commit(),
        "versions": environment.package_versions(),
        "hardware": environment.hardware(),
        "batch": facts.get("batch") or None,
        "dataset_identity": evaluated_data(cfg, runner) if tested else None,
        "iterations": iterations,
        "wall_time_s": round(seconds, 1),
        "peak_memory_mb": records.peak_memory_mb(),
        "loss_curve": loss_curve,
        "checkpoint": checkpoint,
        "evaluated_checkpoint_only": evaluated_checkpoint_only,
        **extra,
        "started_at": started_at,
        "finished_at": records.now_iso(),
    }


def evaluated_data(cfg: Any, runner: Any) -> dict[str, Any] | None:
    """Which data the run evaluated (dataset_identity), after runner.test(); None if it cannot tell."""
    facts = cfg[RUN_KEY]
    try:
        identity = dataset_identity.identify(cfg, facts["suite"], facts["dataset"])
        identity["images_evaluated"] = dataset_identity.images_evaluated(runner)
    except (OSError, ValueError) as error:
        print(f"[record] warning: the evaluated data cannot be identified: {error}", flush=True)
        return None
    return identity


def skipped_images_record(run_dir: str) -> dict[str, Any]:
    """Record fields for the training images the load-time guard skipped (every session of the run)."""
    from .image_guard import skipped_images

    count, files = skipped_images(run_dir)
    if count:
        print(f"[train] warning: {count} unreadable training image(s) were skipped: {', '.join(files[:5])}"
              + (" ..." if len(files) > 5 else ""), flush=True)
    return {"skipped_images": count, "skipped_image_files": files[:100]}


def write_run_record(cfg: Any, record: dict[str, Any]) -> int:
    """Record a run that produced its results: results/runs, or the run folder if that cannot be
    written (exit code 3, with the command that moves it where the tables read)."""
    runs_dir = cfg[RUN_KEY]["runs_dir"]
    try:
        path = records.write_record(record, runs_dir)
    except OSError as error:
        try:
            path = records.write_record(record, cfg.work_dir)
        except OSError as second:
            print(f"error: the run record could not be written to {runs_dir} ({error}) nor to its run folder "
                  f"{cfg.work_dir} ({second}); here it is, save it as a .json file in {runs_dir}:\n"
                  + json.dumps(records.strict_json(record), indent=1), file=sys.stderr, flush=True)
            return 3
        print(f"metrics: {record['metrics']}", flush=True)
        print(f"error: the run record could not be written to {runs_dir} ({error}); it was written to the run "
              f"folder instead: {path}. Fix: make {runs_dir} writable (or free space), then "
              f"`mv {path} {runs_dir}/` so that `make tables` shows the run", file=sys.stderr, flush=True)
        return 3
    banner(f"record written: {relative(path)}")
    print(f"metrics: {record['metrics']}", flush=True)
    return 0


def _fail(cfg: Any, record: dict[str, Any], stage: str, message: str, iteration: int | None = None) -> int:
    """Stop with ``error: message`` (exit 1); keep the failed run's record in its run folder only."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    if not is_main_process():
        return 1
    record.update({"status": records.FAILED, "metrics": {},
                   "failure": {"stage": stage, "iteration": iteration, "error": message}})
    try:
        path = records.write_failed_record(record, cfg.work_dir)
        print(f"[record] the failed run is described in {relative(path)} (not in "
              f"{cfg[RUN_KEY]['runs_dir']}: the tables show only runs that produced results)", flush=True)
    except OSError as error:
        print(f"[record] the failed run's record could not be written to {cfg.work_dir} ({error})", flush=True)
    return 1


def evaluation_problem(raw_metrics: dict[str, Any] | None, metrics: dict[str, Any], cfg: Any,
                       identity: dict[str, Any] | None) -> str | None:
    """Why the test evaluated nothing (no images, or no metric with a value), or None."""
    dataset = cfg.get("test_dataloader", {}).get("dataset", {})
    where = os.path.join(str(dataset.get("data_root", "")), str(dataset.get("ann_file", ""))).rstrip("/")
    if identity is not None and identity.get("images_evaluated") == 0:
        return (f"the test set is empty: no image of {where or 'test_dataloader.dataset'} was evaluated. Fix: point "
                f"the test split at a non-empty annotation file / image folder")
    if metrics:
        return None
    given = ", ".join(f"{key}={value}" for key, value in (raw_metrics or {}).items()) or "nothing"
    return (f"the test evaluated nothing: the evaluator gave {given}, no metric with a value (pycocotools gives -1 "
            f"where no ground truth exists). Likely cause: the test annotations ({where or 'test_dataloader'}) hold "
            f"no objects of the configured classes, or the model predicted nothing (a diverged run). Fix: check "
            f"that file; the trained checkpoint is kept, evaluate it again with CKPT=... once the data is fixed")


def choose_resume(run_dir: str | Path) -> checkpoint_files.ResumePlan:
    """Rank 0 picks the checkpoint to resume from (the newest whole one) and tells every rank."""
    import torch.distributed as dist

    outcome: list[Any] = [None]
    if not dist.is_initialized() or dist.get_rank() == 0:
        for partial in checkpoint_files.remove_partial_files(run_dir):
            print(f"[resume] removed {partial.name}, an interrupted write that was never a whole file", flush=True)
        try:
            outcome = [checkpoint_files.resume_plan(run_dir)]
        except checkpoint_files.NothingToResume as error:
            outcome = [error]
    if dist.is_initialized():
        dist.broadcast_object_list(outcome, src=0)
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]


def _disk_full(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EDQUOT)


def train(config: str | Path, resume: bool = False) -> int:
    """Train the run of ``config`` (its run folder's config.py), test it, record it."""
    cfg = load_run_config(config)
    resumed: dict[str, Any] = {}
    if resume:
        if not (Path(cfg.work_dir) / "last_checkpoint").is_file():
            print(f"error: nothing to resume in {cfg.work_dir}: it has no checkpoint yet", file=sys.stderr)
            return 2
        try:
            plan = choose_resume(cfg.work_dir)
        except checkpoint_files.NothingToResume as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        if plan.passed_over and is_main_process():
            print(f"[resume] warning: {plan.describe()}", flush=True)
        cfg.resume = True
        cfg.load_from = str(plan.checkpoint)  # mmengine resumes from exactly this file
        resumed = {"resumed_from": relative(plan.checkpoint),
                   "resume_passed_over": [{"file": relative(path), "problem": problem}
                                          for path, problem in plan.passed_over]}
    checkpoint_files.install()
    started = records.now_iso()
    runner = build_runner(cfg)
    training_guards.attach(runner)
    banner(f"training {config}")
    start = time.perf_counter()

    def record(**fields: Any) -> records.RunRecord:
        """The training run's record as it stands now."""
        checkpoint = Path(cfg.work_dir) / "last_checkpoint"
        return run_record(cfg, runner, started_at=started, seconds=time.perf_counter() - start,
                          iterations=int(runner.iter), loss_curve=records.loss_curve(cfg.work_dir),
                          checkpoint=relative(checkpoint.read_text().strip()) if checkpoint.exists() else "",
                          evaluated_checkpoint_only=False, resumed=bool(resume), **resumed, **fields)

    try:
        runner.train()
    except training_guards.NonFiniteLoss as error:
        return _fail(cfg, record(tested=False), "training", str(error), error.iteration)
    except OSError as error:
        if not _disk_full(error):
            raise
        failed = record(tested=False)
        last = failed["checkpoint"]
        where = f" ({error.filename})" if error.filename and str(error.filename) not in str(error.strerror) else ""
        message = (f"{error.strerror}{where}, at iteration {runner.iter + 1}."
                   + (f" The last whole checkpoint is {last}: RESUME=1 continues from it once there is room"
                      if last else ""))
        return _fail(cfg, failed, "training", message, runner.iter + 1)
    train_seconds = time.perf_counter() - start
    banner(f"testing {config}")
    raw_metrics = runner.test()
    if not is_main_process():
        return 0
    tested = record(raw_metrics=raw_metrics, train_time_s=round(train_seconds, 1),
                    **skipped_images_record(cfg.work_dir))
    problem = evaluation_problem(raw_metrics, tested["metrics"], cfg, tested["dataset_identity"])
    if problem:
        return _fail(cfg, tested, "test", problem)
    return write_run_record(cfg, tested)


def checkpoint_iteration(meta: dict) -> int | None:
    """Training iteration stored in an mmengine checkpoint's meta."""
    value = meta.get("iter")
    return int(value) if value is not None else None


def checkpoint_problem(checkpoint: Any, model: object, config: str) -> str | None:
    """Why ``checkpoint`` cannot be evaluated with ``model`` (every tensor, names and shapes), or None.

    mmengine's loader would only log missing or mis-shaped tensors and evaluate a partly random model."""
    from .preflight.weights import checkpoint_fit

    return checkpoint_fit(checkpoint, model, config).problem(
        "Fix: evaluate it with the config it was trained with (and the same CFG_OPTIONS)", label="checkpoint ")


def evaluate(config: str | Path) -> int:
    """Evaluate the checkpoint that ``config`` (an evaluation folder's config.py) loads; record it."""
    from .weight_checks import WeightsError, read_checkpoint

    cfg = load_run_config(config)
    source = cfg.get("load_from")
    if not source:
        print(f"error: {config} names no checkpoint to evaluate (load_from)", file=sys.stderr)
        return 2
    try:
        checkpoint = read_checkpoint(source, f"checkpoint {source}")
    except WeightsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started = records.now_iso()
    runner = build_runner(cfg)
    problem = checkpoint_problem(checkpoint, runner.model, cfg[RUN_KEY]["source_config"])
    if problem:
        print(f"error: {problem}", file=sys.stderr, flush=True)
        return 2
    banner(f"evaluating {source} with {config}")
    start = time.perf_counter()
    raw_metrics = runner.test()
    if not is_main_process():
        return 0
    record = run_record(cfg, runner, started_at=started, seconds=time.perf_counter() - start,
                        iterations=checkpoint_iteration(checkpoint.meta), checkpoint=relative(source), loss_curve=[],
                        evaluated_checkpoint_only=True, raw_metrics=raw_metrics)
    problem = evaluation_problem(raw_metrics, record["metrics"], cfg, record["dataset_identity"])
    if problem:
        return _fail(cfg, record, "test", problem)
    return write_run_record(cfg, record)


def train_main(argv: list[str] | None = None) -> int:
    """`scripts/train.py`, `involution-train`: train one run from the config.py in its run folder."""
    parser = argparse.ArgumentParser(
        description="Train one run from the config.py in its run folder, test it, and write its run record.")
    parser.add_argument("config", help="the run's config.py (in its run folder)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    args = parser.parse_args(argv)
    try:
        return train(args.config, resume=args.resume)
    except RunConfigError as error:  # the config does not load: one line, not mmengine's chained tracebacks
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        if not os.environ.get(LAUNCHED_ENV):  # else the launcher says how to resume
            print(f"\ninterrupted: continue from the last checkpoint with: python scripts/train.py "
                  f"{args.config} --resume", file=sys.stderr, flush=True)
        return 130


def evaluate_main(argv: list[str] | None = None) -> int:
    """`scripts/test.py`, `involution-test`: evaluate one checkpoint from its evaluation folder's config.py."""
    parser = argparse.ArgumentParser(
        description="Evaluate one checkpoint from the config.py of its evaluation folder and write a run record.")
    parser.add_argument("config", help="the evaluation's config.py (its load_from names the checkpoint)")
    args = parser.parse_args(argv)
    try:
        return evaluate(args.config)
    except RunConfigError as error:  # the config does not load: one line, not mmengine's chained tracebacks
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the evaluation stopped; run the same command again", file=sys.stderr, flush=True)
        return 130
