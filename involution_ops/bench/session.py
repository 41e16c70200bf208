"""What runs inside a training or evaluation process: join the process group, load the run's
config.py (rank 0's, on every rank), build mmengine's Runner, train + test or evaluate, and
write the run record (rank 0)."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import dataset_identity, records
from .runconfig import RUN_KEY, load_model_config, relative


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


def base_record(cfg: Any, runner: Any) -> dict[str, Any]:
    from mmengine.dist import get_world_size

    facts = cfg[RUN_KEY]
    trainable, total = records.params_m(runner.model)
    return {
        "name": facts["name"],
        "suite": facts["suite"],
        "config": facts["source_config"],
        "run_config": relative(Path(cfg.work_dir) / "config.py"),
        "dataset": facts["dataset"],
        "metrics": {},
        "params_trainable_m": trainable,
        "params_total_m": total,
        "gflops_paper": records.gflops_paper(facts["name"]),
        "seed": runner.seed,
        "deterministic": bool(cfg.get("randomness", {}).get("deterministic", False)),
        "amp": cfg.optim_wrapper.get("type") == "AmpOptimWrapper",
        "world_size": get_world_size(),
        "work_dir": relative(cfg.work_dir),
        "git_commit": records.git_commit(),
        "versions": records.versions(),
        "hardware": records.hardware(),
        **({"batch": facts["batch"]} if facts.get("batch") else {}),
        "dataset_identity": evaluated_data(cfg, runner),
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


def _write(cfg: Any, record: dict[str, Any]) -> None:
    path = records.write_record(record, cfg[RUN_KEY]["runs_dir"])
    banner(f"record written: {relative(path)}")
    print(f"metrics: {record['metrics']}", flush=True)


def train(config: str | Path, resume: bool = False) -> int:
    """Train the run of ``config`` (its run folder's config.py), test it, record it."""
    cfg = load_run_config(config)
    if resume:
        if not (Path(cfg.work_dir) / "last_checkpoint").is_file():
            print(f"error: nothing to resume in {cfg.work_dir}: it has no checkpoint yet", file=sys.stderr)
            return 2
        cfg.resume = True
        cfg.load_from = None  # mmengine then takes the work dir's last_checkpoint
    started = records.now_iso()
    runner = build_runner(cfg)
    banner(f"training {config}")
    start = time.perf_counter()
    runner.train()
    train_seconds = time.perf_counter() - start
    banner(f"testing {config}")
    raw_metrics = runner.test()
    if is_main_process():
        record = base_record(cfg, runner)
        checkpoint = Path(cfg.work_dir) / "last_checkpoint"
        record.update({
            "metrics": records.metrics_from_mm(raw_metrics or {}),
            "iterations": int(runner.iter),
            "wall_time_s": round(time.perf_counter() - start, 1),
            "train_time_s": round(train_seconds, 1),
            "peak_memory_mb": records.peak_memory_mb(),
            "loss_curve": records.loss_curve(cfg.work_dir),
            "checkpoint": relative(checkpoint.read_text().strip()) if checkpoint.exists() else "",
            "evaluated_checkpoint_only": False,
            **skipped_images_record(cfg.work_dir),
            "resumed": bool(resume),
            "started_at": started,
            "finished_at": records.now_iso(),
        })
        _write(cfg, record)
    return 0


def checkpoint_iteration(meta: dict) -> int | None:
    """Training iteration stored in an mmengine checkpoint's meta."""
    value = meta.get("iter")
    return int(value) if value is not None else None


def checkpoint_problem(checkpoint: Any, model: object, config: str) -> str | None:
    """Why ``checkpoint`` cannot be evaluated with ``model`` (every tensor, names and shapes), or None.

    mmengine's loader would only log missing or mis-shaped tensors and evaluate a partly random model."""
    from .weight_checks import fit_diff, fit_message

    module = getattr(model, "module", model)  # DDP wrapper
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    diff = fit_diff(checkpoint, shapes)
    if not diff:
        return None
    return (fit_message(checkpoint, config, diff, label="checkpoint ")
            + " Fix: evaluate it with the config it was trained with (and the same CFG_OPTIONS)")


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
    if is_main_process():
        record = base_record(cfg, runner)
        record.update({
            "metrics": records.metrics_from_mm(raw_metrics or {}),
            "iterations": checkpoint_iteration(checkpoint.meta),
            "wall_time_s": round(time.perf_counter() - start, 1),
            "peak_memory_mb": records.peak_memory_mb(),
            "loss_curve": [],
            "checkpoint": relative(source),
            "evaluated_checkpoint_only": True,
            "started_at": started,
            "finished_at": records.now_iso(),
        })
        _write(cfg, record)
    return 0


def train_main(argv: list[str] | None = None) -> int:
    """`scripts/train.py`, `involution-train`: train one run from the config.py in its run folder."""
    parser = argparse.ArgumentParser(
        description="Train one run from the config.py in its run folder, test it, and write its run record.")
    parser.add_argument("config", help="the run's config.py (in its run folder)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    args = parser.parse_args(argv)
    return train(args.config, resume=args.resume)


def evaluate_main(argv: list[str] | None = None) -> int:
    """`scripts/test.py`, `involution-test`: evaluate one checkpoint from its evaluation folder's config.py."""
    parser = argparse.ArgumentParser(
        description="Evaluate one checkpoint from the config.py of its evaluation folder and write a run record.")
    parser.add_argument("config", help="the evaluation's config.py (its load_from names the checkpoint)")
    args = parser.parse_args(argv)
    return evaluate(args.config)
