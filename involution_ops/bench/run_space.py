"""Before training: the folders a run writes (WORK_DIR, results/runs) are writable, and WORK_DIR's
disk has room for the checkpoints the run will keep (estimated from the model's size)."""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .preflight.errors import PreflightError

BYTES_PER_VALUE = 4  # float32 weights and optimizer state (AMP keeps float32 master weights too)


class SpaceError(PreflightError, ValueError):
    """A folder a run must write to is not writable, or its disk cannot hold one checkpoint."""


def existing_folder(path: str | Path) -> Path:
    """``path`` itself or its nearest existing ancestor (what a run would create its folders in)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(path: str | Path, what: str, setting: str | None = None) -> Path:
    """Refuse a folder (or the folder it would be created in) that cannot be written; the folder tried.
    ``what`` names it in messages, ``setting`` is the variable that chooses it (if there is one)."""
    folder = existing_folder(path)
    other = f" or set {setting} to a writable folder" if setting else ""
    if not folder.is_dir():
        raise SpaceError(f"{what} {path}: {folder} is a file, not a folder. Fix: remove or rename that file{other}")
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".involution-write-test-")
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        raise SpaceError(f"{what} {path} is not writable ({error.strerror or error} in {folder}), so "
                         f"{'the checkpoints and logs' if setting == 'WORK_DIR' else 'the run records'} could not be "
                         f"saved. Fix: make it writable{other}") from None
    return folder


@dataclass
class CheckpointEstimate:
    name: str
    parameters: int  # values in the model's state dict
    state_copies: int  # 1 (weights) + the optimizer's per-weight state tensors
    kept: int  # checkpoints on disk at the end of the run

    @property
    def each(self) -> int:
        return self.parameters * BYTES_PER_VALUE * self.state_copies

    @property
    def total(self) -> int:
        return self.each * self.kept

    def describe(self) -> str:
        return (f"{self.name}: {self.kept} checkpoint(s) x {_size(self.each)} ({self.parameters / 1e6:.1f} M values "
                f"x {BYTES_PER_VALUE} bytes x {self.state_copies} for weights and optimizer state)")


def optimizer_copies(cfg: Any) -> int:
    """1 + the state tensors the optimizer keeps per weight (SGD: momentum; Adam-like: two moments)."""
    optimizer = (cfg.get("optim_wrapper") or {}).get("optimizer") or {}
    kind = str(optimizer.get("type", ""))
    if kind == "SGD":
        return 2 if optimizer.get("momentum", 0) else 1
    return 3  # Adam, AdamW and the like: exp_avg and exp_avg_sq; unknown ones are estimated the same


def checkpoints_kept(cfg: Any) -> int:
    """How many checkpoints the run leaves: max_keep_ckpts, else one per interval of the schedule."""
    hook = ((cfg.get("default_hooks") or {}).get("checkpoint") or {})
    keep = hook.get("max_keep_ckpts", -1) or -1
    if keep > 0:
        return int(keep)
    train = cfg.get("train_cfg") or {}
    length = train.get("max_epochs") if hook.get("by_epoch", True) else train.get("max_iters")
    interval = hook.get("interval", 1) or 1
    if not length or interval <= 0:
        return 1
    return max(1, math.ceil(length / interval))


def estimate(name: str, cfg: Any) -> CheckpointEstimate:
    from .mmconfig import model_shapes, scope_of

    shapes = model_shapes(cfg.model, scope_of(cfg))
    parameters = sum(math.prod(shape) for shape in shapes.values())
    return CheckpointEstimate(name, parameters, optimizer_copies(cfg), checkpoints_kept(cfg))


def check_space(work_dir: str | Path, estimates: list[CheckpointEstimate], free: int | None = None) -> list[str]:
    """Refuse a disk that cannot hold even one checkpoint; return the lines to show (a warning when
    the checkpoints of all runs may not fit)."""
    folder = existing_folder(work_dir)
    free = shutil.disk_usage(folder).free if free is None else free
    need = sum(e.total for e in estimates)
    largest = max(estimates, key=lambda e: e.each)
    lines = [f"disk space at {folder}: {_size(free)} free; the checkpoints need about {_size(need)}"]
    lines += ["  " + e.describe() for e in estimates]
    if free < largest.each:
        raise SpaceError(f"WORK_DIR {work_dir}: {_size(free)} free at {folder}, but one checkpoint of "
                         f"{largest.describe()} needs about {_size(largest.each)}, so the first save would fill "
                         f"the disk. Fix: free space there or set WORK_DIR to a disk with at least "
                         f"{_size(need)} free")
    if free < need:
        lines.append(f"warning: the checkpoints of all runs (about {_size(need)}) may not fit in {_size(free)}; "
                     f"free space or set WORK_DIR to a larger disk before the later saves")
    return lines


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
