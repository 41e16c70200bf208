"""What one launch works with: the user's options (typed, built once by `launch.cli`), the jobs
it runs, and the run context that pre-flight computes once and the later steps share."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..manifest import Manifest, Model


@dataclass(frozen=True)
class LaunchOptions:
    """The options of `scripts/benchmark.py` (the make variables), as typed values."""

    suite: str  # coco | cityscapes
    group: str  # a group of the suite in results/paper.yaml, or "all"
    data: str | None  # dataset root; None: the default folder, else the built-in toy data
    gpus: int  # processes per node
    nnodes: int
    node_rank: int
    master_addr: str | None
    master_port: int
    slurm_partition: str | None  # launch with srun on this partition
    ckpt: str | None  # only evaluate this checkpoint
    pretrained: str | None  # ImageNet RedNet-50 weights for the backbone
    work_dir: str
    seed: int
    deterministic: bool
    amp: bool
    resume: bool
    baselines: bool
    batch: str  # bench.paper_batch.MODES
    configs: list[str] | None  # only these configs of the group
    runs_dir: str
    cfg_options: list[str]  # key=value overrides, CFG_OPTIONS included

    @property
    def world_size(self) -> int:
        return self.gpus * self.nnodes


@dataclass(frozen=True)
class Job:
    """One model of the manifest as a launch runs it."""

    model: Model  # its name (the official config stem) names records, tables and work dirs
    config: Path  # the config it trains with: the model's, or its toy variant on toy data
    resume: bool = False  # continue the newest run of this config (RESUME=1 and it has one)
    run_dir: Path | None = None  # RESUME=1: the run folder it continues


@dataclass(frozen=True)
class RunContext:
    """What a launch decides once, before its first config is built, for all its runs."""

    options: LaunchOptions
    manifest: Manifest
    data_root: Path
    dataset: str  # the dataset label records carry: toy | coco | cityscapes
    device: str  # where the training processes run: cuda | cpu (gloo processes)
    partition_gpus: bool | None  # SLURM_PARTITION: whether its nodes declare GPUs (None: unknown, or no Slurm)
    launcher: str  # none | pytorch | slurm (launch.commands.launcher_kind)
