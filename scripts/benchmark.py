#!/usr/bin/env python
"""Train and evaluate the paper's models of one suite, as the `make coco-*` / `cityscapes-*` targets do.

    python scripts/benchmark.py coco retinanet                  # built-in toy data if data/coco is absent
    python scripts/benchmark.py coco all --data /datasets/coco --gpus 8
    python scripts/benchmark.py cityscapes fpn --ckpt work_dirs/.../iter_80000.pth

Every check on data and weights runs before the first training starts. Each run gets its own
folder `<work-dir>/<suite>/<config name>/<timestamp>` and leaves a record in results/runs/.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(1, str(REPO))  # this checkout's involution_ops, as the runs it launches get (PYTHONPATH)
import make_toy_data  # noqa: E402
from involution_ops.bench import data_checks, weight_checks  # noqa: E402
from involution_ops.bench.config_checks import ConfigOptionError, check_cfg_options  # noqa: E402
from train import REMOTE_PREFIXES, apply_cfg_options, latest_resumable, set_data_root  # noqa: E402


@dataclass(frozen=True)
class Suite:
    config_dir: str
    schedule_suffix: str  # official stem = <model> + suffix; the toy variant is toy/<model>_toy.py
    default_data: str
    groups: dict[str, list[str]]
    baselines: dict[str, list[str]]


SUITES = {
    "coco": Suite(
        "det_configs", "_1x_coco", "data/coco",
        groups={
            "retinanet": ["retinanet_red50_fpn", "retinanet_red50_neck_fpn"],
            "faster_rcnn": ["faster_rcnn_red50_fpn", "faster_rcnn_red50_neck_fpn", "faster_rcnn_red50_neck_fpn_head"],
            "mask_rcnn": ["mask_rcnn_red50_fpn", "mask_rcnn_red50_neck_fpn", "mask_rcnn_red50_neck_fpn_head"],
        },
        baselines={"retinanet": ["retinanet_r50_fpn"], "faster_rcnn": ["faster_rcnn_r50_fpn"],
                   "mask_rcnn": ["mask_rcnn_r50_fpn"]}),
    "cityscapes": Suite(
        "seg_configs", "_512x1024_80k_cityscapes", "data/cityscapes",
        groups={"fpn": ["fpn_red50", "fpn_red50_neck"], "upernet": ["upernet_red50"]},
        baselines={"fpn": ["fpn_r50"], "upernet": ["upernet_r50"]}),
}
CONVERT_HINT = ("download PaddleClas' RedNet-50 ImageNet weights "
                "(https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/RedNet50_pretrained.pdparams) and "
                "convert them once with `python scripts/convert_checkpoint.py paddleclas "
                "RedNet50_pretrained.pdparams {path}`, or point PRETRAINED=/path/to/rednet50.pth at weights you have")


QUIET_WARNINGS = "ignore:pkg_resources is deprecated:UserWarning"


class PreflightError(RuntimeError):
    """A problem found before any training starts; the message names the path and the fix."""


@dataclass
class Job:
    name: str  # official config stem, used in records, tables and work dirs
    config: Path  # file actually run (the toy variant on toy data)
    resume: bool = False  # continue the newest run of this config (RESUME=1 and it has one)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("suite", choices=sorted(SUITES))
    parser.add_argument("group", help="coco: retinanet | faster_rcnn | mask_rcnn | all; "
                                      "cityscapes: fpn | upernet | all")
    parser.add_argument("--data", help="dataset root (default data/coco or data/cityscapes; "
                                       "absent default -> built-in toy data)")
    parser.add_argument("--gpus", type=int, default=1, help="processes per node (GPUs; gloo processes on a CPU)")
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--node-rank", type=int, default=0)
    parser.add_argument("--master-addr", default="127.0.0.1")
    parser.add_argument("--master-port", type=int, default=29500)
    parser.add_argument("--slurm-partition", help="launch with srun on this partition")
    parser.add_argument("--ckpt", help="only evaluate this checkpoint (of the group's config it belongs to)")
    parser.add_argument("--pretrained", help="ImageNet RedNet-50 weights for the backbone")
    parser.add_argument("--work-dir", default="work_dirs", help="root of the run folders (default work_dirs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--amp", action="store_true", help="mixed precision (needs a GPU)")
    parser.add_argument("--resume", action="store_true", help="continue the newest run of each config")
    parser.add_argument("--baselines", action="store_true", help="also run the ResNet-50 baselines")
    parser.add_argument("--configs", nargs="+", metavar="NAME",
                        help="run only these configs of the group (official names, e.g. retinanet_red50_fpn_1x_coco)")
    parser.add_argument("--runs-dir", default="results/runs", help=argparse.SUPPRESS)
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    suite = SUITES[args.suite]
    if args.group != "all" and args.group not in suite.groups:
        parser.error(f"unknown {args.suite} group {args.group!r}; choose one of {sorted(suite.groups) + ['all']}")
    if args.ckpt and args.resume:
        parser.error("--ckpt evaluates a finished checkpoint and --resume continues training: use one")
    if args.gpus < 1 or args.nnodes < 1:
        parser.error("--gpus and --nnodes must be at least 1")
    return args


def banner(text: str, loud: bool = False) -> None:
    rule = "!" * 78 if loud else "=" * 78
    print(f"\n{rule}\n{text}\n{rule}", flush=True)


def select_jobs(args: argparse.Namespace, toy: bool) -> list[Job]:
    suite = SUITES[args.suite]
    groups = list(suite.groups) if args.group == "all" else [args.group]
    models = [m for g in groups for m in suite.groups[g]]
    if args.baselines:
        models += [m for g in groups for m in suite.baselines[g]]
    if args.configs:
        known = {m + suite.schedule_suffix: m for m in models}
        unknown = [n for n in args.configs if n not in known]
        if unknown:
            raise PreflightError(f"--configs {' '.join(unknown)}: not in this target; choose from {', '.join(known)}")
        models = [known[n] for n in args.configs]
    jobs = []
    for model in models:
        name = model + suite.schedule_suffix
        config = REPO / suite.config_dir / ("toy/" + model + "_toy.py" if toy else name + ".py")
        if not config.is_file():
            raise PreflightError(f"config {config.relative_to(REPO)} is missing from this checkout")
        jobs.append(Job(name, config))
    return jobs


def resolve_data(args: argparse.Namespace) -> tuple[Path, str]:
    """(data root, dataset label). Only the default location may fall back to the toy data."""
    suite = SUITES[args.suite]
    if args.data:
        root = Path(args.data).expanduser()
        if not root.is_dir():
            raise PreflightError(f"DATA={args.data}: no such folder. Fix: point DATA at your {args.suite} root, "
                                 f"or leave DATA unset to use the built-in toy data")
        return root.resolve(), args.suite
    default = REPO / suite.default_data
    if default.is_dir():
        return default, args.suite
    banner(f"NO {args.suite.upper()} DATASET AT {suite.default_data}: USING THE BUILT-IN TOY DATASET\n"
           f"(synthetic shapes from scripts/make_toy_data.py; results are recorded as dataset 'toy' and\n"
           f" say nothing about {args.suite}. Set DATA=/path/to/{args.suite} for the real benchmark.)", loud=True)
    return make_toy_data.ensure_toy_data(REPO / "data" / "toy", args.suite).resolve(), "toy"


# ---------------------------------------------------------------- pre-flight checks

def _load_json(path: Path, cache: dict) -> dict:
    if path not in cache:
        if not path.is_file():
            raise PreflightError(f"annotation file {path} not found. Fix: put the dataset's annotations there "
                                 f"(COCO 2017: annotations_trainval2017.zip) or set DATA to the right root")
        try:
            data = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as error:
            raise PreflightError(f"annotation file {path} is corrupt (not valid JSON: {error}). "
                                 f"Fix: download and extract it again") from None
        missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
        if missing:
            raise PreflightError(f"annotation file {path} is corrupt: no {', '.join(missing)} list. "
                                 f"Fix: download and extract it again")
        cache[path] = data
    return cache[path]


def model_num_classes(model_cfg: Any) -> set[int]:
    """Every num_classes of the model's heads (the RPN's single objectness class excluded)."""
    found: set[int] = set()

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            if key != "rpn_head" and isinstance(node.get("num_classes"), int):
                found.add(node["num_classes"])
            for child_key, child in node.items():
                walk(child, child_key)
        elif isinstance(node, (list, tuple)):
            for child in node:
                walk(child, key)

    walk(model_cfg)
    return found


def _dataset_cfgs(cfg: Any) -> list[tuple[str, dict]]:
    found = []
    for split in ("train", "val", "test"):
        loader = cfg.get(f"{split}_dataloader")
        dataset = loader.get("dataset") if loader else None
        while dataset is not None and "dataset" in dataset:  # RepeatDataset and friends
            dataset = dataset["dataset"]
        if dataset is not None:
            found.append((split, dataset))
    return found


def check_coco(cfg: Any, cache: dict) -> None:
    heads = model_num_classes(cfg.model)
    for split, dataset in _dataset_cfgs(cfg):
        root = Path(dataset.get("data_root", ""))
        ann_path = root / dataset["ann_file"]
        data = _load_json(ann_path, cache)
        image_dir = root / dataset.get("data_prefix", {}).get("img", "")
        if not image_dir.is_dir():
            raise PreflightError(f"image folder {image_dir} for {split} not found. Fix: extract the "
                                 f"{split} images there (COCO 2017: {image_dir.name}.zip) or set DATA")
        _check_coco_annotations(data, ann_path, cache)
        key = ("images", image_dir, ann_path)
        if key not in cache:
            present = set(os.listdir(image_dir))
            missing = [im["file_name"] for im in data["images"] if im["file_name"] not in present]
            if missing:
                raise PreflightError(f"{len(missing)} of {len(data['images'])} images listed in {ann_path} are "
                                     f"missing from {image_dir} (e.g. {missing[0]}). Fix: extract the complete "
                                     f"image archive there")
            _check_images([image_dir / im["file_name"] for im in data["images"]], ann_path, split,
                          f"extract the image archive again (COCO 2017: {image_dir.name}.zip), or remove those "
                          f"images and their annotations from {ann_path.name}")
            cache[key] = True
        names = [c["name"] for c in data["categories"]]
        wanted = (dataset.get("metainfo") or {}).get("classes")
        if wanted:
            unknown = [c for c in wanted if c not in names]
            if unknown:
                raise PreflightError(f"classes {unknown} of the config are not categories of {ann_path} "
                                     f"({len(names)}: {', '.join(names[:8])}...). Fix: set metainfo.classes "
                                     f"to names from the annotation file")
        expected = len(wanted) if wanted else len(names)
        bad = sorted(n for n in heads if n != expected)
        if bad:
            raise PreflightError(f"the model predicts {bad[0]} classes but {ann_path} has {expected} "
                                 f"{'selected ' if wanted else ''}categories. Fix: set the heads' num_classes "
                                 f"to {expected} (e.g. --cfg-options model.bbox_head.num_classes={expected}) "
                                 f"or use the matching dataset")


def _check_coco_annotations(data: dict, ann_path: Path, cache: dict) -> None:
    key = ("annotations", ann_path)
    if key in cache:
        return
    errors, warnings = data_checks.coco_annotation_problems(data, ann_path)
    if errors:
        raise PreflightError("\n       ".join(errors))
    for warning in warnings:
        print(f"  warning: {warning}", flush=True)
    cache[key] = True


# Seconds the pre-flight spends reading image bytes per file list; on slow storage the rest of a
# training list is left to the load-time guard (scripts/image_guard.py), which skips and counts.
IMAGE_CHECK_BUDGET_S = {"train": 60.0, "val": 120.0, "test": 120.0}


def _check_images(paths: list[Path], listed_in: Path, split: str, fix: str) -> None:
    start = time.monotonic()
    if len(paths) > 5000:
        print(f"  reading the first and last bytes of {len(paths)} files of {listed_in} ...", flush=True)
    bad, checked, total = data_checks.unreadable_images(paths, budget_s=IMAGE_CHECK_BUDGET_S.get(split, 60.0))
    if bad:
        shown = "; ".join(f"{path} {reason}" for path, reason in bad[:5])
        more = f" ... ({len(bad) - 5} more)" if len(bad) > 5 else ""
        raise PreflightError(f"{len(bad)} of the {checked} images of {listed_in} read so far are unreadable: "
                             f"{shown}{more}. Fix: {fix}")
    if checked < total:
        guard = ("the rest are checked as they load: an unreadable one is skipped with a warning and counted in "
                 "the run record" if split == "train" else "an unreadable one among the rest stops the evaluation")
        print(f"  note: read {checked} of {total} images of {listed_in} in {time.monotonic() - start:.0f} s; "
              f"{guard}", flush=True)


def check_cityscapes(cfg: Any) -> None:
    heads = model_num_classes(cfg.model)
    for split, dataset in _dataset_cfgs(cfg):
        root = Path(dataset.get("data_root", ""))
        prefix = dataset.get("data_prefix", {})
        image_dir = root / prefix.get("img_path", "")
        label_dir = root / prefix.get("seg_map_path", "")
        img_suffix = dataset.get("img_suffix", "_leftImg8bit.png")
        seg_suffix = dataset.get("seg_map_suffix", "_gtFine_labelTrainIds.png")
        for folder, what in ((image_dir, "leftImg8bit images"), (label_dir, "gtFine labels")):
            if not folder.is_dir():
                raise PreflightError(f"{what} folder {folder} for {split} not found. Fix: extract "
                                     f"leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip under DATA "
                                     f"or set DATA to the Cityscapes root")
        images = sorted(image_dir.rglob("*" + img_suffix))
        if not images:
            raise PreflightError(f"no *{img_suffix} images in {image_dir}. Fix: extract the Cityscapes images there")
        missing = [p for p in images
                   if not (label_dir / p.relative_to(image_dir)).with_name(p.name[:-len(img_suffix)] + seg_suffix).is_file()]
        if missing:
            hint = ("Fix: generate them with `python -m cityscapesscripts.preparation.createTrainIdLabelImgs` "
                    "(CITYSCAPES_DATASET=DATA) or mmseg's tools/dataset_converters/cityscapes.py"
                    if not any(label_dir.rglob("*" + seg_suffix)) else
                    "Fix: extract the complete gtFine archive and regenerate the train-id labels")
            raise PreflightError(f"{len(missing)} of {len(images)} images in {image_dir} have no *{seg_suffix} "
                                 f"label in {label_dir} (e.g. for {missing[0].name}). {hint}")
        labels = [(label_dir / p.relative_to(image_dir)).with_name(p.name[:-len(img_suffix)] + seg_suffix)
                  for p in images]
        _check_cityscapes_samples(images[:1], labels[:3], num_classes=len(_cityscapes_classes(cfg)))
        _check_images(images + labels, image_dir, split,
                      "extract leftImg8bit_trainvaltest.zip / gtFine_trainvaltest.zip again (and regenerate the "
                      "train-id labels)")
    classes = _cityscapes_classes(cfg)
    expected = len(classes)
    bad = sorted(n for n in heads if n != expected)
    if bad:
        raise PreflightError(f"the model predicts {bad[0]} classes but Cityscapes has {expected} train classes. "
                             f"Fix: set decode_head.num_classes (and auxiliary_head) to {expected}")


def _cityscapes_classes(cfg: Any) -> tuple:
    """(SEG) The dataset's classes: metainfo.classes of the config, else Cityscapes' 19 train classes."""
    classes = None
    for _, dataset in _dataset_cfgs(cfg):
        classes = (dataset.get("metainfo") or {}).get("classes") or classes
    return tuple(classes) if classes else make_toy_data.CITYSCAPES_CLASSES


def _check_cityscapes_samples(images: list[Path], labels: list[Path], num_classes: int) -> None:
    """(SEG) A few files open, and the labels hold train ids (0..num_classes-1 and 255), not raw label ids."""
    import numpy as np
    from PIL import Image

    for path in images + labels:
        try:
            with Image.open(path) as image:
                array = np.asarray(image)
        except Exception as error:  # PIL raises several types for a truncated or foreign file
            raise PreflightError(f"cannot read {path} ({error}). Fix: extract that archive again") from None
        if path in labels:
            values = set(np.unique(array).tolist()) - {255}
            if array.ndim != 2 or max(values, default=0) >= num_classes:
                raise PreflightError(
                    f"{path} does not hold train ids (0-{num_classes - 1}, 255 = ignore): found "
                    f"{'a colour image' if array.ndim != 2 else f'value {max(values)}'}. Fix: regenerate the "
                    f"*_labelTrainIds.png files with `python -m cityscapesscripts.preparation.createTrainIdLabelImgs`")


def _local_path(path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else REPO / path


def read_weights(path: str, what: str, cache: dict) -> weight_checks.Checkpoint:
    """A weights file loaded weights-only, once; any problem is a PreflightError naming it."""
    key = ("weights", str(_local_path(path)))
    if key not in cache:
        try:
            cache[key] = weight_checks.read_checkpoint(str(_local_path(path)), what)
        except weight_checks.WeightsError as error:
            raise PreflightError(str(error)) from None
    return cache[key]


def check_pretrained(cfg: Any, args: argparse.Namespace, dataset: str, job_name: str = "", cache: dict | None = None
                     ) -> None:
    """Every local Pretrained file the run will load, read and checked against its module."""
    cache = {} if cache is None else cache
    if not args.pretrained and dataset == "toy":
        return  # toy variants train from scratch unless PRETRAINED is given
    targets = weight_checks.pretrained_targets(cfg.model, args.pretrained)
    paths = [args.pretrained] if args.pretrained else []
    paths += [t.checkpoint for t in targets if t.checkpoint not in paths]
    for path in paths:
        if path.startswith(REMOTE_PREFIXES):
            continue
        full = _local_path(path)
        if not full.is_file() or full.stat().st_size == 0:
            raise PreflightError(f"pretrained backbone weights {path} not found. Fix: "
                                 + CONVERT_HINT.format(path=path))
    for target in targets:
        if target.checkpoint.startswith(REMOTE_PREFIXES):
            continue
        checkpoint = read_weights(target.checkpoint, f"pretrained weights {target.checkpoint}", cache)
        shapes_key = ("shapes", job_name, target.where)
        if shapes_key not in cache:
            cache[shapes_key] = weight_checks.build_shapes(target.module_cfg, cfg.get("default_scope", "mmdet"))
        error, note = weight_checks.pretrained_problem(checkpoint, target, cache[shapes_key], job_name)
        if error:
            raise PreflightError(error)
        if note:
            print(f"  note: {note}", flush=True)


def check_amp(args: argparse.Namespace) -> None:
    if args.amp:
        import torch

        if not torch.cuda.is_available() and not args.slurm_partition:
            raise PreflightError("AMP=1 needs a CUDA GPU (mixed precision through AmpOptimWrapper); "
                                 "this machine has none. Fix: drop AMP=1 on a CPU")


def load_config(job: Job, data_root: Path, args: argparse.Namespace, warned: set | None = None) -> Any:
    from mmengine.config import Config

    try:
        cfg = Config.fromfile(str(job.config))
    except Exception as error:  # a config that does not parse or import is a pre-flight failure too
        raise PreflightError(f"config {job.config.relative_to(REPO)} does not load: {error}") from error
    set_data_root(cfg, str(data_root))
    try:
        warnings = check_cfg_options(cfg, args.cfg_options)
    except ConfigOptionError as error:
        raise PreflightError(f"{error} (config {job.config.relative_to(REPO)})") from None
    for warning in warnings:
        if warned is None or warning not in warned:
            print(f"  warning: {warning}", flush=True)
            if warned is not None:
                warned.add(warning)
    try:
        apply_cfg_options(cfg, args.cfg_options)
    except Exception as error:
        raise PreflightError(f"CFG_OPTIONS {' '.join(args.cfg_options)} do not apply: {error}") from error
    return cfg


def _named_jobs(jobs: list[Job], path: Path, meta: dict) -> list[Job]:
    """The configs a checkpoint's folder names, else its recorded experiment name."""
    parts = set(path.resolve().parts)
    hits = [job for job in jobs if job.name in parts or job.config.stem in parts]
    if not hits:
        experiment = str(meta.get("experiment_name", ""))
        hits = [job for job in jobs if experiment.startswith((job.name + "_", job.config.stem + "_"))]
    return hits


def match_checkpoint(jobs: list[Job], ckpt: str, configs: dict[str, Any], cache: dict | None = None) -> list[Job]:
    """The one config of the target whose model every tensor of the checkpoint fits.

    The checkpoint's folder (or recorded experiment) must name that config when it names one, and
    --configs may pick it; otherwise the content decides. ``configs``: job name -> loaded config."""
    cache = {} if cache is None else cache
    path = Path(ckpt)
    if not path.is_file():
        raise PreflightError(f"CKPT={ckpt}: no such checkpoint file. Fix: give the path of a .pth file "
                             f"(e.g. work_dirs/<suite>/<config>/<timestamp>/iter_N.pth)")
    checkpoint = read_weights(ckpt, f"CKPT={ckpt}", cache)
    diffs = {}
    for job in jobs:
        cfg = configs[job.name]
        shapes = weight_checks.build_shapes(cfg.model, cfg.get("default_scope", "mmdet"))
        diffs[job.name] = weight_checks.fit_diff(checkpoint, shapes)
    fits = [job for job in jobs if not diffs[job.name]]
    named = jobs if len(jobs) == 1 else _named_jobs(jobs, path, checkpoint.meta)
    if len(named) == 1 and named[0] in fits:
        return named
    where = ("it fits no config of this target. Fix: evaluate it with the target of the model it was "
             "trained as (see its meta above), or with the options it was trained with (CFG_OPTIONS)")
    if fits:
        where = (f"its tensors fit {', '.join(j.name for j in fits)} of this target. Fix: keep it under "
                 f"work_dirs/<suite>/<config name>/ of that config, or pick it with --configs")
    if len(named) == 1:
        raise PreflightError(weight_checks.fit_message(checkpoint, named[0].name, diffs[named[0].name]) + " " + where)
    if len(fits) == 1:
        return fits
    closest = min(jobs, key=lambda job: diffs[job.name].count)
    raise PreflightError(f"CKPT={ckpt} cannot be matched to exactly one config of this target "
                         f"({', '.join(j.name for j in jobs)}): "
                         + weight_checks.fit_message(checkpoint, closest.name, diffs[closest.name]) + " " + where)


def _finished_runs(runs_dir: str) -> set[Path]:
    """Run folders that a training record names (those runs are complete)."""
    finished = set()
    for record in Path(runs_dir).glob("*.json"):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and not data.get("evaluated_checkpoint_only") and data.get("work_dir"):
            finished.add((REPO / data["work_dir"]).resolve())
    return finished


def plan_resume(jobs: list[Job], args: argparse.Namespace) -> list[Job]:
    """RESUME=1 on a group: continue each config's newest run with a checkpoint, start the configs
    that have none (killed before their first checkpoint, or never started), and leave out those
    whose newest run already finished (it has a record)."""
    finished = _finished_runs(args.runs_dir)
    planned = []
    for job in jobs:
        found = latest_resumable(Path(args.work_dir) / args.suite / job.name)
        if found is not None and found.resolve() in finished:
            print(f"  done {job.name}: its newest run {found} has finished (record in {args.runs_dir}); "
                  f"not run again", flush=True)
            continue
        planned.append(Job(job.name, job.config, resume=found is not None))
        print(f"  {'resume' if found is not None else 'start '} {job.name}"
              + (f" from {found}" if found is not None else ": no run with a checkpoint yet, starts afresh"),
              flush=True)
    if planned and not any(job.resume for job in planned):
        folders = ", ".join(str(Path(args.work_dir) / args.suite / job.name) for job in planned)
        raise PreflightError(f"RESUME=1 but {folders} holds no run with a checkpoint. Fix: start without "
                             f"RESUME=1, or set WORK_DIR to the folder of the killed runs")
    return planned


# ---------------------------------------------------------------- launching

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


def launch_prefix(args: argparse.Namespace, job_name: str,
                  partition_gpus: bool | None = None) -> tuple[list[str], str]:
    """(command prefix, launcher) for one process, torchrun, or srun.

    srun asks for `--gres=gpu:GPUS` unless the partition's nodes declare no GPU at all (then the
    ranks are CPU processes talking gloo; requesting a GPU there would never be scheduled).
    `partition_gpus` None: ask sinfo (the submitting machine itself often has no GPU).
    """
    if args.slurm_partition:
        tasks = args.gpus * args.nnodes
        if partition_gpus is None:
            partition_gpus = slurm_partition_has_gpus(args.slurm_partition)
        gres = [] if partition_gpus is False else [f"--gres=gpu:{args.gpus}"]
        return (["srun", "-p", args.slurm_partition, f"--job-name={job_name}", *gres,
                 f"--ntasks={tasks}", f"--ntasks-per-node={args.gpus}", f"--nodes={args.nnodes}",
                 "--kill-on-bad-exit=1", sys.executable, "-u"], "slurm")
    if args.gpus > 1 or args.nnodes > 1:
        return ([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.gpus}",
                 f"--nnodes={args.nnodes}", f"--node_rank={args.node_rank}",
                 f"--master_addr={args.master_addr}", f"--master_port={args.master_port}"], "pytorch")
    return [sys.executable], "none"


def job_command(job: Job, args: argparse.Namespace, data_root: Path, dataset: str) -> list[str]:
    prefix, launcher = launch_prefix(args, job.name)
    work_root = Path(args.work_dir) / args.suite / job.name
    common = [str(job.config), "--work-root", str(work_root), "--suite", args.suite, "--name", job.name,
              "--dataset", dataset, "--data", str(data_root), "--launcher", launcher, "--seed", str(args.seed),
              "--runs-dir", args.runs_dir]
    if args.deterministic:
        common.append("--deterministic")
    if args.pretrained:
        common += ["--pretrained", args.pretrained]
    if args.ckpt:
        command = [*prefix, str(SCRIPTS / "test.py"), args.ckpt, *common]
    else:
        command = [*prefix, str(SCRIPTS / "train.py"), *common]
        if job.resume:
            command.append("--resume")
        if args.amp:
            command.append("--amp")
    if args.cfg_options:
        command += ["--cfg-options", *args.cfg_options]
    return command


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(REPO)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # mmengine 0.10.7 imports pkg_resources, whose deprecation warning would repeat in every process
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), QUIET_WARNINGS]))
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    if args.slurm_partition and args.master_port != 29500:  # srun hands it to every task, on every node
        env["MASTER_PORT"] = str(args.master_port)
    try:
        check_amp(args)
        cache: dict = {}
        # User-given weights are read first: a broken or unsafe file stops here, in a second.
        if args.pretrained:
            if not _local_path(args.pretrained).is_file():
                raise PreflightError(f"pretrained backbone weights {args.pretrained} not found. Fix: "
                                     + CONVERT_HINT.format(path=args.pretrained))
            read_weights(args.pretrained, f"PRETRAINED={args.pretrained}", cache)
        if args.ckpt:
            if not Path(args.ckpt).is_file():
                raise PreflightError(f"CKPT={args.ckpt}: no such checkpoint file. Fix: give the path of a .pth "
                                     f"file (e.g. work_dirs/<suite>/<config>/<timestamp>/iter_N.pth)")
            read_weights(args.ckpt, f"CKPT={args.ckpt}", cache)
        data_root, dataset = resolve_data(args)
        jobs = select_jobs(args, toy=dataset == "toy")
        banner(f"pre-flight checks: {len(jobs)} config(s) on {dataset} data at {data_root}")
        warned: set = set()
        configs = {job.name: load_config(job, data_root, args, warned) for job in jobs}
        if args.ckpt:
            jobs = match_checkpoint(jobs, args.ckpt, configs, cache)
        for job in jobs:
            cfg = configs[job.name]
            if args.suite == "coco":
                check_coco(cfg, cache)
            else:
                check_cityscapes(cfg)
            if not args.ckpt:
                check_pretrained(cfg, args, dataset, job.name, cache)
            print(f"  ok  {job.name}  ({job.config.relative_to(REPO)})", flush=True)
        if args.resume:
            jobs = plan_resume(jobs, args)
    except PreflightError as error:
        print(f"\nerror: {error}", file=sys.stderr, flush=True)
        return 2

    summary = []
    for index, job in enumerate(jobs, 1):
        command = job_command(job, args, data_root, dataset)
        what = "evaluating" if args.ckpt else ("resuming" if job.resume else "training + testing")
        banner(f"[{index}/{len(jobs)}] {what} {job.name} on {dataset} data\n$ {shlex.join(command)}")
        start = time.perf_counter()
        result = subprocess.run(command, env=env)
        seconds = time.perf_counter() - start
        summary.append((job.name, result.returncode, seconds))
        if result.returncode != 0:
            print(f"\nerror: {job.name} failed with exit code {result.returncode} after {seconds:.0f} s "
                  f"(its log is in {Path(args.work_dir) / args.suite / job.name}/<newest>/)", file=sys.stderr)
            break
    banner("summary\n" + "\n".join(f"  {'ok    ' if rc == 0 else 'FAILED'} {name:45s} {sec:7.0f} s"
                                   for name, rc, sec in summary))
    return 0 if all(rc == 0 for _, rc, _ in summary) and len(summary) == len(jobs) else 1


if __name__ == "__main__":
    sys.exit(main())
