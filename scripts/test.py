#!/usr/bin/env python
"""Evaluate one checkpoint of an mmdet/mmseg config with mmengine's Runner and write a run record.

    python scripts/test.py det_configs/toy/retinanet_red50_fpn_toy.py work_dirs/.../iter_80.pth \
        --work-root work_dirs/coco/retinanet_red50_fpn_1x_coco --suite coco --dataset toy
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from involution_ops.bench import records as run_record  # noqa: E402
from involution_ops.bench import weight_checks  # noqa: E402
from train import banner, base_record, build_runner, choose_run_dir, common_args, init_distributed, is_main_process, prepare_config  # noqa: E402


def checkpoint_iteration(meta: dict) -> int | None:
    """Training iteration stored in an mmengine checkpoint's meta."""
    value = meta.get("iter")
    return int(value) if value is not None else None


def checkpoint_problem(checkpoint: weight_checks.Checkpoint, model: object, config: str) -> str | None:
    """Why ``checkpoint`` cannot be evaluated with ``model`` (every tensor, names and shapes), or None.

    mmengine's loader would only log missing or mis-shaped tensors and evaluate a partly random model."""
    module = getattr(model, "module", model)  # DDP wrapper
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    diff = weight_checks.fit_diff(checkpoint, shapes)
    if not diff:
        return None
    return (weight_checks.fit_message(checkpoint, config, diff, label="checkpoint ")
            + " Fix: evaluate it with the config it was trained with (and the same CFG_OPTIONS)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="checkpoint to evaluate")
    common_args(parser)
    args = parser.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        parser.error(f"checkpoint {args.checkpoint} does not exist")
    try:
        checkpoint = weight_checks.read_checkpoint(args.checkpoint, f"checkpoint {args.checkpoint}")
    except weight_checks.WeightsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    init_distributed(args.launcher)
    args.work_dir = choose_run_dir(args.work_root, suffix="-eval")
    cfg = prepare_config(args)
    cfg.load_from = str(Path(args.checkpoint).resolve())
    cfg.resume = False
    # Evaluation only: nothing to initialise from ImageNet, the checkpoint holds every weight.
    cfg.model.get("backbone", {}).pop("init_cfg", None)
    started = run_record.now_iso()
    runner = build_runner(cfg)
    problem = checkpoint_problem(checkpoint, runner.model, args.config)
    if problem:
        print(f"error: {problem}", file=sys.stderr, flush=True)
        return 2
    banner(f"evaluating {args.checkpoint} with {args.config}")
    start = time.perf_counter()
    raw_metrics = runner.test()
    if is_main_process():
        record = base_record(args, cfg, runner)
        record.update({
            "metrics": run_record.metrics_from_mm(raw_metrics or {}),
            "iterations": checkpoint_iteration(checkpoint.meta),
            "wall_time_s": round(time.perf_counter() - start, 1),
            "peak_memory_mb": run_record.peak_memory_mb(),
            "loss_curve": [],
            "checkpoint": os.path.relpath(Path(args.checkpoint).resolve(), run_record.REPO),
            "evaluated_checkpoint_only": True,
            "started_at": started,
            "finished_at": run_record.now_iso(),
        })
        path = run_record.write_record(record, args.runs_dir)
        banner(f"record written: {os.path.relpath(path, run_record.REPO)}")
        print(f"metrics: {record['metrics']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
