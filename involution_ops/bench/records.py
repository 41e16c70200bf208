"""The run record: what one training or evaluation run produced, as one JSON file.

This module owns the record: its type (`RunRecord`, schema `SCHEMA`), the one writer
(`write_record` to results/runs, `write_failed_record` to a failed run's own folder) and the
one reader (`read_record`, `read_records`) that the tables, resume planning
(`finished_run_dirs`) and dataset identity use. The reader upgrades records of older schemas
here, so no other reader needs to know about them. Records are written by the training and
evaluation processes (involution_ops.bench.run_process, `run_record`). A record is never
overwritten (a name clash moves the timestamp on by a second) and appears whole or not at all.
Records are strict JSON: a non-finite number is written as null. A run that failed (status
"failed") is recorded in its own run folder only (failed_record.json), never in results/runs.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import resource
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypedDict

from .paper_batch import BatchPlan
from .output import REPO_ROOT, write_new

SCHEMA = 2  # 2: `status`, `batch`, `dataset_identity`, `work_dir`, `evaluated_checkpoint_only` always present
REPO = REPO_ROOT
SUITES = ("imagenet", "coco", "cityscapes")
OK = "ok"
FAILED = "failed"


class _RequiredFields(TypedDict):
    """The fields every run record has; RunRecord documents them."""

    schema: int
    status: str          # "ok": produced its results; "failed": see `failure`
    name: str            # the config's name (det_configs/<name>.py ...)
    suite: str           # one of SUITES
    dataset: str         # the suite (real data) or "toy"
    metrics: dict[str, Any]  # record keys of metrics_from_mm; values may be null
    batch: dict[str, Any] | None
    dataset_identity: dict[str, Any] | None
    work_dir: str | None
    evaluated_checkpoint_only: bool  # an evaluation of a given checkpoint, not a training


class RunRecord(_RequiredFields, total=False):
    """One run record (schema 2) as written and as `read_record` returns it.

    Required (_RequiredFields): what identifies the run and what it produced. Always present
    after reading (the reader fills them for older records), None where unknown: `batch` (BatchPlan.as_record()
    of the run's config; None for a config from before batch plans), `dataset_identity`
    (dataset_identity.identify + images_evaluated; None when the data could not be identified
    or the run did not test), `work_dir` (the run folder, relative to the checkout where
    inside it) and `evaluated_checkpoint_only`. The rest is optional: what the run measured.
    """

    config: str       # the source config
    run_config: str   # the file this session ran with (config.py or config.resume-*.py)
    params_trainable_m: float
    params_total_m: float
    gflops_paper: float | None
    seed: int | None
    deterministic: bool
    amp: bool
    world_size: int
    git_commit: str   # environment.git_commit()
    versions: dict[str, str | None]
    hardware: dict[str, Any]
    iterations: int | None
    wall_time_s: float
    train_time_s: float
    peak_memory_mb: float | None
    loss_curve: list[list[float | None]]
    checkpoint: str
    resumed: bool
    resumed_from: str
    resume_passed_over: list[dict[str, str]]
    skipped_images: int
    skipped_image_files: list[str]
    started_at: str
    finished_at: str
    failure: dict[str, Any]  # status "failed": stage, iteration, error


# what a record holds when its writer (or an older schema) left it out
_DEFAULTS: dict[str, Any] = {"batch": None, "dataset_identity": None, "work_dir": None,
                             "evaluated_checkpoint_only": False}

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
    from involution_ops.complexity import count_params as _count_params  # torch: not for `make tables`

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


def record_problem(record: Any) -> str | None:
    """Why ``record`` (already upgraded to schema 2) is not a run record; None when it is one."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("schema") != SCHEMA:
        return f"schema is {record.get('schema')!r}, expected 1 or {SCHEMA}"
    missing = [key for key in RunRecord.__required_keys__ if key not in record]
    if missing:
        return f"missing {', '.join(sorted(missing))}"
    if not isinstance(record["name"], str) or not record["name"]:
        return "name is not a non-empty string"
    if record["suite"] not in SUITES:
        return f"suite {record['suite']!r} is none of {', '.join(SUITES)}"
    if record["dataset"] not in ("toy", record["suite"]):
        return f"dataset {record['dataset']!r} is neither 'toy' nor the suite {record['suite']!r}"
    if not isinstance(record["status"], str):
        return "status is not a string"
    if not isinstance(record["metrics"], dict):
        return "metrics is not an object"
    if record["batch"] is not None:
        problem = BatchPlan.record_problem(record["batch"])
        if problem:
            return f"batch: {problem}"
    if record["dataset_identity"] is not None and not isinstance(record["dataset_identity"], dict):
        return "dataset_identity is not an object"
    if record["work_dir"] is not None and not isinstance(record["work_dir"], str):
        return "work_dir is not a string"
    return None


def upgrade(record: Any) -> Any:
    """``record`` in schema 2, the one place that knows older schemas (anything else is returned as is).

    Schema 1 grew fields without a bump: a schema-1 record may lack status (those in results/runs
    all produced results), batch, dataset_identity, work_dir or evaluated_checkpoint_only."""
    if isinstance(record, dict) and record.get("schema") == 1:
        return {**_DEFAULTS, **record, "schema": SCHEMA, "status": record.get("status", OK)}
    return record


def _text(record: dict[str, Any], status: str) -> str:
    for key in ("name", "suite", "dataset", "metrics"):
        if key not in record:
            raise ValueError(f"run record lacks {key!r}")
    complete = {"schema": SCHEMA, "status": status, **_DEFAULTS, **record}
    complete.update(schema=SCHEMA, status=status)
    problem = record_problem(complete)
    if problem:
        raise ValueError(f"not a run record: {problem}")
    return json.dumps(strict_json(complete), indent=1, sort_keys=False, allow_nan=False) + "\n"


def write_record(record: dict[str, Any], runs_dir: str | Path = REPO / "results" / "runs") -> Path:
    """Write the record of a run that produced its results (status "ok") as
    `<name>__<dataset>__<YYYYmmdd-HHMMSS>.json`; never replaces a file, never leaves half a record.

    ``record`` needs name, suite, dataset and metrics; the reader's defaults fill the other
    fields of RunRecord that it leaves out. A name already taken moves the timestamp on by a
    second (output.write_new: a kill at any moment leaves either no record or a whole one)."""
    text = _text(record, OK)
    when = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    names = (f"{record['name']}__{record['dataset']}__{when + _dt.timedelta(seconds=step):%Y%m%d-%H%M%S}.json"
             for step in range(1000))
    return write_new(Path(runs_dir), names, text)


def write_failed_record(record: dict[str, Any], run_dir: str | Path) -> Path:
    """Write the record of a failed run (status "failed", with its `failure`) as `failed_record.json`
    (then `-1`, `-2`, ...) in its run folder."""
    text = _text(record, FAILED)
    return write_new(Path(run_dir), ("failed_record" + (f"-{n}" if n else "") + ".json" for n in range(1000)), text)


def _name_is_utf8(path: Path) -> bool:
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:  # a byte that is not UTF-8, kept by Python as a lone surrogate
        return False
    return True


def read_record(path: str | Path) -> RunRecord | str:
    """The record in ``path`` (of any schema, upgraded to this one), or why it is none: a problem
    sentence such as "not readable JSON (...)" to show after the file's name."""
    path = Path(path)
    if not _name_is_utf8(path):
        return ("its file name is not valid UTF-8 (a run writes <config>__<dataset>__<time>.json: "
                "rename it to that)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"not readable JSON ({error})"
    record = upgrade(data)
    problem = record_problem(record)
    if problem:
        return f"not a run record of schema 1 or {SCHEMA}: {problem}"
    return record


def read_records(folder: str | Path) -> list[tuple[Path, RunRecord | str]]:
    """`read_record` of every *.json file directly in ``folder``, by file name; [] without the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [(path, read_record(path)) for path in sorted(folder.glob("*.json"))]


def run_dir(record: RunRecord) -> Path | None:
    """The run folder a record names (absolute), or None."""
    return (REPO / record["work_dir"]).resolve() if record["work_dir"] else None


def finished_run_dirs(runs_dir: str | Path, run_dirs: Iterable[str | Path] = ()) -> set[Path]:
    """Run folders whose training finished: named by a training record with status "ok" in
    ``runs_dir``, or, for each of ``run_dirs``, by such a record the run wrote into its own folder
    because ``runs_dir`` could not be written (the training process's exit code 3). Evaluations
    of a given checkpoint, failed runs and files that are no record do not count."""
    found = [item for folder in (runs_dir, *run_dirs) for item in read_records(folder)]
    finished = set()
    for _path, record in found:
        if isinstance(record, dict) and record["status"] == OK and not record["evaluated_checkpoint_only"]:
            folder = run_dir(record)
            if folder is not None:
                finished.add(folder)
    return finished
