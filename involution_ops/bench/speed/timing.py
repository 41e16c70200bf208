"""The benchmark's clock: (wall, CPU) seconds of one call, synchronised on CUDA; tasks that take
turns (A, B, A, B, ...) so that a change of machine load hits them alike; medians of the repeats."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

Timer = Callable[[str, Callable[[], Any]], tuple[float, float]]
"""timer(label, fn) -> (wall seconds, process CPU seconds) of one call of fn."""


def wall_and_cpu_timer(device: torch.device | str) -> Timer:
    """(wall, process CPU) seconds of one call; synchronised on CUDA. CPU time stays
    meaningful on a machine shared with other jobs."""
    device = torch.device(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timer(label: str, fn: Callable[[], Any]) -> tuple[float, float]:
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        sync()
        return time.perf_counter() - wall, time.process_time() - cpu

    return timer


def interleave(tasks: dict[str, Callable[[], Any]], repeats: int, warmup: int,
               timer: Timer) -> dict[str, list[tuple[float, float]]]:
    """Run every task `warmup` times untimed, then `repeats` timed rounds; within a
    round the tasks take turns in order (A, B, A, B, ...)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats={repeats} must be >= 1 and warmup={warmup} >= 0")
    for _ in range(warmup):
        for fn in tasks.values():
            fn()
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label in tasks}
    for _ in range(repeats):
        for label, fn in tasks.items():
            samples[label].append(timer(label, fn))
    return samples


def summarise(samples: Sequence[tuple[float, float]], batch: int) -> dict:
    """Median wall and CPU milliseconds of the repeats, and images/s at the median."""
    wall = statistics.median(s[0] for s in samples)
    return {
        "median_ms": wall * 1e3,
        "cpu_median_ms": statistics.median(s[1] for s in samples) * 1e3,
        "images_per_s": batch / wall if wall > 0 else float("inf"),
        "samples_ms": [s[0] * 1e3 for s in samples],
    }


def ratio(model: float | None, baseline: float | None) -> float | None:
    """model / baseline; None when either is missing or the baseline is not positive."""
    if model is None or baseline is None or not baseline > 0:
        return None
    return model / baseline
