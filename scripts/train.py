#!/usr/bin/env python
"""Train one mmdet/mmseg config with mmengine's Runner, test it, and write a run record.

Usually launched by scripts/benchmark.py (plain python for one process, torchrun or
srun for several); usable alone:

    python scripts/train.py det_configs/toy/retinanet_red50_fpn_toy.py \
        --work-root work_dirs/coco/retinanet_red50_fpn_1x_coco --suite coco --dataset toy \\
        --data data/toy/coco
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from involution_ops.bench import records as run_record  # noqa: E402

REMOTE_PREFIXES = ("http://", "https://", "torchvision://", "open-mmlab://", "mmcls://", "s3://", "pavi://")


def common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="mmdet / mmseg config file")
    parser.add_argument("--work-root", required=True,
                        help="folder of this config's runs; each run gets a new <timestamp> folder in it")
    parser.add_argument("--suite", choices=["coco", "cityscapes"], required=True)
    parser.add_argument("--name", help="official config stem for the record (default: from the config file)")
    parser.add_argument("--dataset", choices=["toy", "coco", "cityscapes"], required=True)
    parser.add_argument("--data", help="dataset root, replacing the config's data_root everywhere")
    parser.add_argument("--pretrained", help="ImageNet backbone weights, replacing the backbone init_cfg")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--runs-dir", default=str(run_record.REPO / "results" / "runs"))
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config keys, mmengine syntax (applied last)")


def record_name(config: str, name: str | None) -> str:
    if name:
        return name
    return Path(config).stem.removesuffix("_toy")


def _datasets(loader_cfg: Any):
    """Yield the dataset dicts of a dataloader config, looking through dataset wrappers."""
    dataset = loader_cfg.get("dataset") if loader_cfg else None
    while dataset is not None:
        yield dataset
        dataset = dataset.get("dataset") if "dataset" in dataset else None
        # ConcatDataset keeps a list under `datasets`; not used by our configs.


def set_data_root(cfg: Any, root: str) -> None:
    """Point every dataloader and annotation-file evaluator at `root`."""
    root = root.rstrip("/") + "/"
    old_roots = set()
    for split in ("train", "val", "test"):
        for dataset in _datasets(cfg.get(f"{split}_dataloader")):
            if "data_root" in dataset:
                old_roots.add(dataset["data_root"])
                dataset["data_root"] = root
    for split in ("val", "test"):
        evaluators = cfg.get(f"{split}_evaluator")
        for evaluator in evaluators if isinstance(evaluators, list) else [evaluators]:
            if evaluator and isinstance(evaluator.get("ann_file"), str):
                for old in old_roots:
                    if evaluator["ann_file"].startswith(old):
                        evaluator["ann_file"] = root + evaluator["ann_file"][len(old):]


def backbone_init_checkpoints(model_cfg: Any) -> list[str]:
    """Checkpoint paths of Pretrained init_cfgs anywhere in the model config."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            init = node.get("init_cfg")
            for item in init if isinstance(init, list) else [init]:
                if isinstance(item, dict) and item.get("type") == "Pretrained" and item.get("checkpoint"):
                    found.append(item["checkpoint"])
            for value in node.values():
                walk(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)

    walk(model_cfg)
    return found


def prepare_config(args: argparse.Namespace) -> Any:
    """Load the config and apply the run options; --cfg-options last so they win."""
    from mmengine.config import Config

    cfg = Config.fromfile(args.config)
    cfg.work_dir = str(Path(args.work_dir).resolve())  # chosen by choose_run_dir
    if args.data:
        set_data_root(cfg, args.data)
    if args.pretrained and cfg.model.backbone.get("type") == "RedNet":
        # (SEG) ImageNet *RedNet* weights: the ResNet-50 baselines keep their own (mmseg's would
        # otherwise get both `pretrained` and `init_cfg` and refuse to build)
        cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=args.pretrained)
    cfg.randomness = dict(seed=args.seed, deterministic=bool(args.deterministic))
    cfg.launcher = args.launcher
    if args.launcher != "none" and not _cuda():
        cfg.setdefault("env_cfg", {}).setdefault("dist_cfg", {})["backend"] = "gloo"
    if getattr(args, "amp", False):
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    from involution_ops.bench.config_checks import check_cfg_options

    check_cfg_options(cfg, args.cfg_options)  # a key the config lacks and its builder refuses stops here
    apply_cfg_options(cfg, args.cfg_options)
    from involution_ops.bench import image_guard

    image_guard.guard_train_pipeline(cfg, cfg.work_dir)  # an unreadable training image is skipped, counted
    return cfg


def apply_cfg_options(cfg: Any, options: list[str]) -> None:
    """Merge `key=value` overrides (mmengine's --cfg-options syntax) into cfg."""
    if not options:
        return
    from mmengine.config import DictAction

    parsed = argparse.Namespace()
    DictAction(option_strings=[], dest="cfg_options")(None, parsed, options)
    cfg.merge_from_dict(parsed.cfg_options)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def init_distributed(launcher: str) -> None:
    """Join the process group before the Runner does, so that rank 0 can pick the run folder.

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
            import subprocess

            nodes = os.environ["SLURM_NODELIST"]
            os.environ["MASTER_ADDR"] = subprocess.getoutput(f"scontrol show hostname {nodes} | head -n1")
    dist.init_process_group(backend="gloo")


def timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def latest_resumable(root: str | Path) -> Path | None:
    """Newest run folder under root that holds mmengine's `last_checkpoint` pointer."""
    runs = [p.parent for p in Path(root).glob("*/last_checkpoint")]
    return max(runs, key=lambda p: p.name) if runs else None


def choose_run_dir(root: str | Path, resume: bool = False, suffix: str = "") -> str:
    """Rank 0 creates a fresh `<timestamp><suffix>` folder (or, resuming, picks the newest run
    with a checkpoint) and every rank receives its path; an existing folder is never reused."""
    import torch.distributed as dist

    chosen: list[str | None] = [None]
    if not dist.is_initialized() or dist.get_rank() == 0:
        if resume:
            found = latest_resumable(root)
            if found is None:
                raise SystemExit(f"error: nothing to resume in {root}: no run there has a checkpoint yet")
            chosen[0] = str(found.resolve())
        else:
            Path(root).mkdir(parents=True, exist_ok=True)
            base = timestamp() + suffix
            for attempt in range(100):
                candidate = Path(root) / (base if attempt == 0 else f"{base}-{attempt}")
                try:
                    candidate.mkdir()
                    chosen[0] = str(candidate.resolve())
                    break
                except FileExistsError:
                    continue
    if dist.is_initialized():
        dist.broadcast_object_list(chosen, src=0)
    if chosen[0] is None:
        raise SystemExit(f"error: could not create a new run folder in {root}")
    return chosen[0]


def build_runner(cfg: Any) -> Any:
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    if "runner_type" in cfg:
        return RUNNERS.build(cfg)
    if not _cuda() and cfg.launcher != "none":
        # DDP on CPU must not be given device ids (mmengine defaults them to LOCAL_RANK).
        cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False,
                                     find_unused_parameters=cfg.get("find_unused_parameters", False))
        sync_bn_to_bn(cfg.model)  # (SEG) DDP refuses SyncBN modules off the GPU
    return Runner.from_cfg(cfg)


def sync_bn_to_bn(model_cfg: Any) -> None:
    """(SEG) Turn every SyncBN norm_cfg into BN in place: the segmentation configs use SyncBN, which
    needs CUDA; CPU processes (gloo) then normalise each over its own batch, and say so."""
    changed = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("SyncBN", "MMSyncBN"):
                node["type"] = "BN"
                changed.append(path)
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, (list, tuple)):
            for index, value in enumerate(node):
                walk(value, f"{path}.{index}")

    walk(model_cfg, "model")
    if changed and is_main_process():
        print(f"[train] no CUDA: SyncBN -> BN in {', '.join(sorted(set(changed)))} "
              "(each process normalises over its own batch)", flush=True)


def is_main_process() -> bool:
    from mmengine.dist import get_rank

    return get_rank() == 0


def base_record(args: argparse.Namespace, cfg: Any, runner: Any) -> dict[str, Any]:
    from mmengine.dist import get_world_size

    trainable, total = run_record.params_m(runner.model)
    name = record_name(args.config, args.name)
    return {
        "name": name,
        "suite": args.suite,
        "config": os.path.relpath(Path(args.config).resolve(), run_record.REPO),
        "dataset": args.dataset,
        "metrics": {},
        "params_trainable_m": trainable,
        "params_total_m": total,
        "gflops_paper": run_record.gflops_paper(name),
        "seed": runner.seed,
        "deterministic": bool(args.deterministic),
        "amp": cfg.optim_wrapper.get("type") == "AmpOptimWrapper",
        "world_size": get_world_size(),
        "work_dir": os.path.relpath(cfg.work_dir, run_record.REPO),
        "git_commit": run_record.git_commit(),
        "versions": run_record.versions(),
        "hardware": run_record.hardware(),
    }


def skipped_images_record(run_dir: str) -> dict[str, Any]:
    """Record fields for the training images the load-time guard skipped (every session of the run)."""
    from involution_ops.bench import image_guard

    count, files = image_guard.skipped_images(run_dir)
    if count:
        print(f"[train] warning: {count} unreadable training image(s) were skipped: {', '.join(files[:5])}"
              + (" ..." if len(files) > 5 else ""), flush=True)
    return {"skipped_images": count, "skipped_image_files": files[:100]}


def banner(text: str) -> None:
    if is_main_process():
        print(f"\n{'=' * 78}\n== {text}\n{'=' * 78}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_args(parser)
    parser.add_argument("--resume", action="store_true", help="continue from the work dir's last checkpoint")
    parser.add_argument("--amp", action="store_true", help="mixed precision (AmpOptimWrapper)")
    args = parser.parse_args(argv)

    init_distributed(args.launcher)
    args.work_dir = choose_run_dir(args.work_root, resume=args.resume)
    from involution_ops.bench.config_checks import ConfigOptionError

    try:
        cfg = prepare_config(args)
    except ConfigOptionError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    if args.resume:
        cfg.resume = True
        cfg.load_from = None  # mmengine then takes the work dir's last_checkpoint
    started = run_record.now_iso()
    runner = build_runner(cfg)
    banner(f"training {args.config} -> {cfg.work_dir}")
    start = time.perf_counter()
    runner.train()
    train_seconds = time.perf_counter() - start
    banner(f"testing {args.config}")
    raw_metrics = runner.test()
    if is_main_process():
        record = base_record(args, cfg, runner)
        checkpoint = Path(cfg.work_dir) / "last_checkpoint"
        record.update({
            "metrics": run_record.metrics_from_mm(raw_metrics or {}),
            "iterations": int(runner.iter),
            "wall_time_s": round(time.perf_counter() - start, 1),
            "train_time_s": round(train_seconds, 1),
            "peak_memory_mb": run_record.peak_memory_mb(),
            "loss_curve": run_record.loss_curve(cfg.work_dir),
            "checkpoint": os.path.relpath(checkpoint.read_text().strip(), run_record.REPO)
            if checkpoint.exists() else "",
            "evaluated_checkpoint_only": False,
            **skipped_images_record(cfg.work_dir),
            "resumed": bool(args.resume),
            "started_at": started,
            "finished_at": run_record.now_iso(),
        })
        path = run_record.write_record(record, args.runs_dir)
        banner(f"record written: {os.path.relpath(path, run_record.REPO)}")
        print(f"metrics: {record['metrics']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
