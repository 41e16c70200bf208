"""What `make tables` reads, checked before anything is rendered: run records (results/runs/*.json,
read by involution_ops/bench/records.py) as `Run`s grouped into `Results`, and the complexity
rows of `make flops`. A missing or malformed file only costs a warning naming it."""
from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import dataset_identity
from ..paper_batch import BatchPlan
from ..cells import number
from ..records import OK, RunRecord, read_records

RECORD_STAMP = re.compile(r"__(\d{8}-\d{6})$")

Warn = Callable[[str], None]


def printable_path(path: Path) -> str:
    """`path` as text that can be written and drawn: bytes of the name that are not UTF-8 as \\xNN."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


@dataclass
class Run:
    """One run record as the tables read it."""

    path: Path
    record: RunRecord

    @property
    def name(self) -> str:
        return self.record["name"]

    @property
    def dataset(self) -> str:
        return self.record["dataset"]

    @property
    def is_toy(self) -> bool:
        return self.dataset != self.record["suite"]

    @property
    def is_official(self) -> bool:
        """Evaluated on the complete official split (provable from the record only)."""
        return dataset_identity.is_official_full_split(self.record)

    @property
    def batch_note(self) -> str | None:
        """How the run departs from the paper's total batch; None when it trained at it."""
        batch = self.record["batch"]
        return "total batch not recorded" if batch is None else BatchPlan.from_record(batch).departure()

    @property
    def stamp(self) -> str:
        match = RECORD_STAMP.search(self.path.stem)
        return match.group(1) if match else self.path.stem

    @property
    def time(self) -> dt.datetime:
        for key in ("started_at", "finished_at"):
            moment = _parse_time(self.record.get(key))
            if moment:
                return moment
        match = RECORD_STAMP.search(self.path.stem)
        if match:
            return dt.datetime.strptime(match.group(1), "%Y%m%d-%H%M%S").replace(tzinfo=dt.timezone.utc)
        return dt.datetime.fromtimestamp(self.path.stat().st_mtime, dt.timezone.utc)

    def metric(self, key: str) -> float | None:
        return number(self.record["metrics"].get(key))

    def value(self, key: str) -> float | None:
        return number(self.record.get(key))

    def loss_curve(self) -> list[tuple[float, float]]:
        """The (iteration, loss) points of the record that are numbers."""
        curve = self.record.get("loss_curve")
        if not isinstance(curve, list):
            return []
        points = []
        for point in curve:
            if isinstance(point, (list, tuple)) and len(point) == 2:
                x, y = number(point[0]), number(point[1])
                if x is not None and y is not None:
                    points.append((x, y))
        return points


def load_runs(runs_dir: Path, warn: Warn) -> list[Run]:
    """Every record of `runs_dir` of a run that produced its results (status "ok"); each skipped
    file costs a warning naming it and why."""
    runs = []
    for path, record in read_records(runs_dir):
        if isinstance(record, str):
            warn(f"{printable_path(path)}: skipped, {record}")
            continue
        if record["status"] != OK:
            warn(f"{path}: skipped, its status is {record['status']!r}, not {OK!r} (the tables show only runs "
                 "that produced results)")
            continue
        bad = [key for key, value in record["metrics"].items()
               if key != "per_class_IoU" and value is not None and number(value) is None]
        if bad:
            warn(f"{path}: ignoring non-numeric metrics {', '.join(sorted(bad))}")
        runs.append(Run(path, record))
    return runs


def load_complexity(path: Path, warn: Warn) -> dict[str, dict]:
    """The rows of results/complexity.json by model name; {} (with a warning) when unusable."""
    if not path.is_file():
        warn(f"{path}: missing, our params/FLOPs columns come from run records only (run `make flops`)")
        return {}
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        warn(f"{path}: ignored, not readable JSON ({error})")
        return {}
    if not isinstance(rows, list):
        warn(f"{path}: ignored, expected a JSON list of rows")
        return {}
    by_name = {}
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("name"), str):
            warn(f"{path}: row {index} skipped, not an object with a name")
            continue
        by_name[row["name"]] = row
    return by_name


class Results:
    """Our side of the comparison: complexity rows and runs grouped by config name, newest first."""

    def __init__(self, runs: list[Run], complexity: dict[str, dict]):
        self.complexity = complexity
        self.real: dict[str, list[Run]] = {}    # full official split: the paper's columns
        self.other: dict[str, list[Run]] = {}   # real data, not proven to be the full official split
        self.toy: dict[str, list[Run]] = {}
        for run in sorted(runs, key=lambda r: (r.time, r.path.name), reverse=True):
            group = self.toy if run.is_toy else self.real if run.is_official else self.other
            group.setdefault(run.name, []).append(run)

    def newest(self, name: str) -> Run | None:
        runs = self.real.get(name)
        return runs[0] if runs else None

    def params(self, name: str) -> tuple[float | None, float | None]:
        """(trainable, total) millions of parameters: `make flops`, else the newest run's record."""
        row = self.complexity.get(name, {})
        trainable, total = number(row.get("params_trainable_m")), number(row.get("params_total_m"))
        run = self.newest(name)
        if trainable is None and run:
            trainable, total = run.value("params_trainable_m"), run.value("params_total_m")
        return trainable, total

    def gflops(self, name: str) -> float | None:
        value = number(self.complexity.get(name, {}).get("gflops_paper"))
        run = self.newest(name)
        return run.value("gflops_paper") if value is None and run else value
