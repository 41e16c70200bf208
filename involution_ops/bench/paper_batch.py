"""The paper's total batch on fewer processes: gradient accumulation or linear lr scaling.

Every paper config records the paper's total batch as `auto_scale_lr.base_batch_size`
(COCO 16 = 8 GPUs x 2 images, Cityscapes 8 = 4 GPUs x 2). A run with fewer processes
chooses one mode:

- "accumulate" (default, reproduces the paper): gradients of `accumulation` iterations are
  summed before each optimizer step, so the effective batch and the lr are the paper's.
  mmengine's schedulers and iteration-based loops count iterations (micro-batches), not
  optimizer steps, so every iteration-based count (max_iters, val/checkpoint intervals,
  by-iteration scheduler begin/end such as warm-up and poly decay) is multiplied by the
  accumulation to keep the paper's number of optimizer steps. BatchNorm statistics still
  come from each process's own images (SyncBN across GPUs), not from the paper's batch.
- "scale_lr": one step per iteration at the run's batch, lr scaled linearly
  (lr * total / paper), written into the config itself; iteration counts are scaled by
  paper / total, as the linear scaling rule keeps the number of epochs (an iteration-based
  80k schedule would otherwise see a fraction of the paper's images).
- "none": trains as configured; the record and tables flag the other total batch.

Toy data gets no compensation (short smoke-test schedules).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

MODES = ("accumulate", "scale_lr", "none")
DEFAULT_MODE = "accumulate"


@dataclass(frozen=True)
class BatchPlan:
    mode: str                 # the mode applied ("none" for toy data)
    processes: int            # training processes (world size)
    images_per_process: int   # train_dataloader.batch_size
    total_batch: int          # processes x images_per_process, per iteration
    paper_batch: int          # auto_scale_lr.base_batch_size
    accumulation: int         # iterations summed per optimizer step (1 = none)
    iteration_scale: float    # factor applied to every iteration count of the config
    lr: float                 # the lr the run trains with
    config_lr: float          # the config's lr (the paper's)
    note: str

    @property
    def effective_batch(self) -> int:
        """Images per optimizer step."""
        return self.total_batch * self.accumulation

    @property
    def matches_paper(self) -> bool:
        return self.effective_batch == self.paper_batch

    def as_record(self) -> dict:
        """The plan as run configs and run records hold it (JSON), read back by `from_record`."""
        return {**asdict(self), "effective_batch": self.effective_batch, "matches_paper": self.matches_paper}

    @staticmethod
    def record_problem(record: Any) -> str | None:
        """Why ``record`` is not a plan written by `as_record`; None when it is one."""
        if not isinstance(record, dict):
            return "not an object"
        missing = [item.name for item in fields(BatchPlan) if item.name not in record]
        if missing:
            return f"missing {', '.join(missing)}"
        wrong = [item.name for item in fields(BatchPlan)
                 if not isinstance(record[item.name], _FIELD_TYPES[item.type]) or isinstance(record[item.name], bool)]
        return f"{', '.join(wrong)} of the wrong type" if wrong else None

    @classmethod
    def from_record(cls, record: dict) -> BatchPlan:
        """The plan of `as_record`'s dict (check it with `record_problem` first)."""
        return cls(**{item.name: record[item.name] for item in fields(cls)})

    def describe(self) -> str:
        first = (f"batch: {self.processes} process(es) x {self.images_per_process} image(s) = {self.total_batch}"
                 f"{f', accumulation {self.accumulation} -> {self.effective_batch}' if self.accumulation > 1 else ''}"
                 f" per step (paper {self.paper_batch}); lr {self.lr:g}"
                 f"{f' (config {self.config_lr:g})' if self.lr != self.config_lr else ''}"
                 f"{f'; iterations x{self.iteration_scale:g}' if self.iteration_scale != 1 else ''}; mode {self.mode}")
        return f"{first}\n  {self.note}" if self.note else first

    def departure(self) -> str | None:
        """How a run with this plan departs from the paper's total batch, for the tables' footnote;
        None when it trains at it."""
        if self.matches_paper:
            return None
        return (f"trained at total batch {self.effective_batch} (paper {self.paper_batch}), accumulation "
                f"{self.accumulation if self.accumulation > 1 else 'none'}, lr {self.lr:g} (mode {self.mode})")


# the JSON types of BatchPlan's fields (an int is a valid float)
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "float": (int, float)}


def _paper_batch(cfg: Any) -> int:
    scale = cfg.get("auto_scale_lr") or {}
    base = scale.get("base_batch_size")
    if not isinstance(base, int) or isinstance(base, bool) or base < 1:
        raise ValueError("the config has no auto_scale_lr.base_batch_size (the paper's total batch); "
                         "set it, e.g. CFG_OPTIONS=auto_scale_lr.base_batch_size=16")
    return base


def _config_lr(cfg: Any) -> float:
    optimizer = (cfg.get("optim_wrapper") or {}).get("optimizer") or {}
    lr = optimizer.get("lr")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool):
        raise ValueError("the config has no optim_wrapper.optimizer.lr to keep or scale")
    return float(lr)


def plan_batch(cfg: Any, world_size: int, mode: str, dataset: str) -> BatchPlan:
    """How a run with `world_size` processes reaches (or departs from) the paper's total batch."""
    if mode not in MODES:
        raise ValueError(f"batch mode {mode!r} is none of {', '.join(MODES)} (BATCH=accumulate|scale_lr|none)")
    if world_size < 1:
        raise ValueError(f"world size {world_size} is not a positive process count")
    images = cfg.train_dataloader.batch_size
    paper, lr = _paper_batch(cfg), _config_lr(cfg)
    total = world_size * images
    plan = dict(processes=world_size, images_per_process=images, total_batch=total, paper_batch=paper,
                accumulation=1, iteration_scale=1.0, lr=lr, config_lr=lr)
    if dataset == "toy":
        return BatchPlan(mode="none", note="toy data: no batch compensation (smoke test, not the paper's recipe)",
                         **plan)
    if total == paper:
        return BatchPlan(mode=mode, note="the paper's total batch", **plan)
    if mode == "none":
        return BatchPlan(mode="none", note=f"NOT the paper's batch: trains at total batch {total} (paper {paper}) "
                                           "with the paper's lr, as configured (BATCH=none)", **plan)
    if mode == "scale_lr":
        plan["lr"] = lr * total / paper
        plan["iteration_scale"] = paper / total
        return BatchPlan(mode="scale_lr", note=f"total batch {total} (paper {paper}): lr scaled linearly "
                                               f"{lr:g} x {total}/{paper}, iteration counts x {paper}/{total} "
                                               "(the paper's number of epochs)", **plan)
    if total > paper:
        raise ValueError(f"{world_size} process(es) x {images} image(s) = {total} exceeds the paper's total batch "
                         f"{paper}: accumulation cannot shrink it. Fix: BATCH=scale_lr (linear lr scaling) or "
                         f"{paper // images} processes")
    if paper % total:
        raise ValueError(f"the paper's total batch {paper} is not a multiple of {world_size} process(es) x "
                         f"{images} image(s) = {total}, so gradient accumulation cannot reach it. Fix: "
                         f"BATCH=scale_lr, or a process count dividing {paper // images}")
    plan["accumulation"] = paper // total
    plan["iteration_scale"] = float(paper // total)
    return BatchPlan(mode="accumulate",
                     note=f"gradient accumulation x{paper // total}: the paper's effective batch and lr, "
                          "iteration counts (schedule, warm-up, intervals) multiplied to keep its optimizer steps; "
                          f"BatchNorm statistics still come from {images} image(s) per process", **plan)


def _scale_iterations(cfg: Any, factor: float) -> None:
    """Multiply every count of iterations by `factor` (rounded; epochs are left alone)."""

    def scaled(value: int) -> int:
        return max(1, round(value * factor)) if value else 0

    train_cfg = cfg.get("train_cfg") or {}
    if "max_iters" in train_cfg:  # an iteration-based loop: its val_interval counts iterations too
        for key in ("max_iters", "val_interval"):
            if isinstance(train_cfg.get(key), int):
                train_cfg[key] = scaled(train_cfg[key])
    schedulers = cfg.get("param_scheduler") or []
    for scheduler in [schedulers] if isinstance(schedulers, dict) else schedulers:
        if scheduler.get("by_epoch", True) is False:
            for key in ("begin", "end", "T_max", "step_size"):
                if isinstance(scheduler.get(key), int):
                    scheduler[key] = scaled(scheduler[key])
            if isinstance(scheduler.get("milestones"), list):
                scheduler["milestones"] = [scaled(step) for step in scheduler["milestones"]]
    checkpoint = (cfg.get("default_hooks") or {}).get("checkpoint")
    if checkpoint and checkpoint.get("by_epoch", True) is False and isinstance(checkpoint.get("interval"), int):
        checkpoint["interval"] = scaled(checkpoint["interval"])


def apply_batch_plan(cfg: Any, plan: BatchPlan) -> None:
    """Write the plan into the mmengine Config, so the dumped config is the one trained."""
    if plan.accumulation > 1:
        cfg.optim_wrapper["accumulative_counts"] = plan.accumulation
    if plan.iteration_scale != 1:
        _scale_iterations(cfg, plan.iteration_scale)
    if plan.lr != plan.config_lr:
        cfg.optim_wrapper.optimizer["lr"] = plan.lr
    if cfg.get("auto_scale_lr") is not None:
        cfg.auto_scale_lr["enable"] = False  # the lr above is final; mmengine must not scale it again
