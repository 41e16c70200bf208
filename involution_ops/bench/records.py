"""Run records: one JSON file per finished run in results/runs/ (schema 1).

Shared by the detection and segmentation suites; written by the training and evaluation
processes (involution_ops.bench.session), read by involution_ops.bench.tables. A record is never overwritten (a name
clash moves the timestamp on by a second) and appears whole or not at all. Records are strict JSON:
a non-finite number is written as null. A run that failed (status "failed") is recorded in its
own run folder only (failed_record.json), never in results/runs.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import resource
import subprocess
from pathlib import Path
from typing import Any

from involution_ops.complexity import count_params as _count_params

from .io import REPO_ROOT, write_new

SCHEMA = 1
REPO = REPO_ROOT

# mmdet CocoMetric key suffix -> record key suffix
_COCO_KEYS = {"mAP": "AP", "mAP_50": "AP50", "mAP_75": "AP75", "mAP_s": "APs", "mAP_m": "APm", "mAP_l": "APl"}
_SEG_KEYS = ("mIoU", "mAcc", "aAcc")


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def metrics_from_mm(raw: dict[str, Any]) -> dict[str, Any]:
    """Map mmdet/mmseg evaluator output to the record's percentage keys.

    mmdet's CocoMetric gives `coco/bbox_mAP_50`-style fractions (0-1); mmseg's IoUMetric gives
    `mIoU`, `mAcc`, `aAcc` already in percent. Per-class IoU is taken from a `per_class_IoU`
    dict or from `IoU.<class>` keys (percent), when a metric provides them.
    """
    metrics: dict[str, Any] = {}
    per_class: dict[str, float] = {}
    for key, value in raw.items():
        short = key.split("/", 1)[-1]
        for task in ("bbox", "segm"):
            suffix = short[len(task) + 1:] if short.startswith(task + "_") else None
            # pycocotools reports -1 when no ground truth falls in an area range: not applicable
            if suffix in _COCO_KEYS and _finite(value) is not None and float(value) >= 0:
                metrics[f"{task}_{_COCO_KEYS[suffix]}"] = round(100.0 * float(value), 2)
        if short in _SEG_KEYS and _finite(value) is not None:
            metrics[short] = round(float(value), 2)
        elif short == "per_class_IoU" and isinstance(value, dict):
            per_class.update({str(k): round(float(v), 2) for k, v in value.items() if _finite(v) is not None})
        elif short.startswith("IoU.") and _finite(value) is not None:
            per_class[short[4:]] = round(float(value), 2)
    if per_class:
        metrics["per_class_IoU"] = per_class
    return metrics


def loss_curve(run_dir: str | Path) -> list[list[float | None]]:
    """[[iter, loss], ...] from mmengine's scalar logs (vis_data/*.json) of every session in run_dir.

    A resumed run has one session folder per start; later sessions win for repeated iterations.
    A non-finite loss is None (null in the record).
    """
    points: dict[int, float | None] = {}
    for log in sorted(Path(run_dir).glob("*/vis_data/*.json")):
        if log.name == "config.json":
            continue
        for line in log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            step = entry.get("iter", entry.get("step"))
            if isinstance(entry, dict) and "loss" in entry and step is not None:
                loss = _finite(entry["loss"])
                points[int(step)] = round(loss, 5) if loss is not None else None
    return [[step, points[step]] for step in sorted(points)]


def params_m(model: Any) -> tuple[float, float]:
    """(trainable, total) parameters in millions; DDP wrappers are unwrapped."""
    trainable, total = _count_params(getattr(model, "module", model))
    return round(trainable / 1e6, 3), round(total / 1e6, 3)


def gflops_paper(name: str, complexity_json: str | Path = REPO / "results" / "complexity.json") -> float | None:
    """GFLOPs of `name` in the paper's convention from results/complexity.json, if that row exists."""
    try:
        rows = json.loads(Path(complexity_json).read_text())
    except (OSError, ValueError):
        return None
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and row.get("name") == name:
            return _finite(row.get("gflops_paper"))
    return None


def peak_memory_mb() -> float:
    """Peak CUDA memory allocated by this process, or its peak resident set size on a CPU run."""
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    except ImportError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str | None]:
    from importlib import metadata

    found: dict[str, str | None] = {}
    for key, dist in (("torch", "torch"), ("mmengine", "mmengine"), ("mmcv", "mmcv"), ("mmdet", "mmdet"),
                      ("mmseg", "mmsegmentation"), ("involution_ops", "involution_ops")):
        try:
            found[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[key] = None
    return found


def hardware() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus: list[str] = []
    try:
        import torch

        if torch.cuda.is_available():
            gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return {"cpu": f"{cpu} ({os.cpu_count()} cores)", "gpus": gpus, "num_gpus": len(gpus)}


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) replaced by None, so that it is valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def _text(record: dict[str, Any]) -> str:
    for key in ("name", "suite", "dataset", "metrics"):
        if key not in record:
            raise ValueError(f"run record lacks {key!r}")
    return json.dumps(strict_json({"schema": SCHEMA, **record}), indent=1, sort_keys=False, allow_nan=False) + "\n"


def write_record(record: dict[str, Any], runs_dir: str | Path = REPO / "results" / "runs") -> Path:
    """Write `<name>__<dataset>__<YYYYmmdd-HHMMSS>.json`; never replaces a file, never leaves half a record.

    A name already taken moves the timestamp on by a second (io.write_new: a kill at any moment
    leaves either no record or a whole one)."""
    text = _text(record)
    when = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    names = (f"{record['name']}__{record['dataset']}__{when + _dt.timedelta(seconds=step):%Y%m%d-%H%M%S}.json"
             for step in range(1000))
    return write_new(Path(runs_dir), names, text)


def write_failed_record(record: dict[str, Any], run_dir: str | Path) -> Path:
    """Write the record of a failed run as `failed_record.json` (then `-1`, `-2`, ...) in its run folder."""
    text = _text(record)
    return write_new(Path(run_dir), ("failed_record" + (f"-{n}" if n else "") + ".json" for n in range(1000)), text)
