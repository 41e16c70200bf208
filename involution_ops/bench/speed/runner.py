"""`make bench` end to end: every pair measured in turn (`run`), with the machine it ran on
and the load other processes put on it, into results/speed.json (`save_results`, which keeps
an earlier file)."""
from __future__ import annotations

import datetime as _dt
import gc
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .. import environment
from ..output import write_atomic
from .builders import BuiltModel, build_model
from .measure import INFERENCE_OPTIONS, measure_pair
from .pairs import QUICK_SHAPES, ModelPair, shape_label
from .report import SCHEMA
from .timing import Timer


def machine(device: torch.device | str) -> dict:
    """What speed.json records about the machine (its `machine` object, less date and load)."""
    device = torch.device(device)
    return {
        "cpu": environment.cpu_model(),
        "cores": environment.cpu_cores(),
        "threads": environment.torch_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else environment.cpu_model(),
        "involution_backend": os.environ.get("INVOLUTION_BACKEND", "default dispatch"),
    }


def run(pairs: Sequence[ModelPair], device: str | torch.device = "cpu", repeats: int = 5, warmup: int = 2,
        quick: bool = False, inference_options: Sequence[str] = INFERENCE_OPTIONS, train: bool = True,
        timer: Timer | None = None, log: Callable[[str], None] = print,
        builder: Callable[..., BuiltModel] = build_model,
        on_pair: Callable[[dict], None] | None = None, train_batch: int | None = None) -> dict:
    """Measure every model with its baseline; the results as written to speed.json.
    `builder(name, config, suite, shapes, device)` makes each model (tests pass tiny ones);
    `on_pair(data so far)` is called after each pair (a long run saves its progress)."""
    device = torch.device(device)
    unknown = [o for o in inference_options if o not in INFERENCE_OPTIONS]
    if unknown:
        raise ValueError(f"inference option(s) {', '.join(unknown)}: choose from {', '.join(INFERENCE_OPTIONS)}")
    info = machine(device)
    info["date"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    info["load_start"] = environment.load_average()
    clock_start, wall_start = environment.cpu_clock(), time.perf_counter()
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "machine": info,
        "settings": {"device": str(device), "repeats": repeats, "warmup": warmup, "quick": quick,
                     "train_batch": train_batch,
                     "inference_options": list(inference_options), "train": train},
        "pairs": [],
    }
    baselines: dict[tuple[str, tuple], BuiltModel] = {}
    for pair in pairs:
        shapes = QUICK_SHAPES[pair.suite] if quick else pair.shapes
        if train_batch:
            shapes = (shapes[0], (train_batch, *shapes[1][1:]))
        log(f"{pair.model} vs {pair.baseline}: inference {shape_label(shapes[0])}, training "
            f"{shape_label(shapes[1])}, {device}, {torch.get_num_threads()} threads, load {environment.load_average()}")
        key = (pair.baseline_config, tuple(map(tuple, shapes)))
        if key not in baselines:
            baselines.clear()  # one baseline alive at a time: memory
            gc.collect()
            baselines[key] = builder(pair.baseline, pair.baseline_config, pair.suite, shapes, device)
        built = builder(pair.model, pair.config, pair.suite, shapes, device)
        entry = {"model": pair.model, "baseline": pair.baseline, "suite": pair.suite,
                 "config": pair.config, "baseline_config": pair.baseline_config,
                 "inference_shape": list(shapes[0]), "training_shape": list(shapes[1]),
                 "params_m": {"model": sum(p.numel() for p in built.model.parameters()) / 1e6,
                              "baseline": sum(p.numel() for p in baselines[key].model.parameters()) / 1e6}}
        entry.update(measure_pair(built, baselines[key], device, repeats, warmup, inference_options,
                                  train, timer, log))
        data["pairs"].append(entry)
        if on_pair is not None:
            on_pair(data)
        del built
        gc.collect()
    info["load_end"] = environment.load_average()
    info["other_load"] = environment.other_load(clock_start, environment.cpu_clock(),
                                                time.perf_counter() - wall_start)
    return data


def save_results(data: dict, path: Path) -> Path | None:
    """Write `data` to `path` as JSON. An existing file is first copied, byte for byte, to
    <path's folder>/<path's stem>/<its date>.json (never over another file); returns where
    it went, or None when there was nothing to keep."""
    path = Path(path)
    kept = None
    if path.exists():
        old = path.read_bytes()
        try:
            date = str(json.loads(old)["machine"]["date"])
        except Exception:  # not ours or torn: still kept, named by its modification time
            date = _dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.timezone.utc).isoformat(timespec="seconds")
        stamp = "".join(c if c.isalnum() or c in "-_" else "-" for c in date)
        folder = path.parent / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(1000):
            kept = folder / (f"{stamp}.json" if index == 0 else f"{stamp}-{index}.json")
            try:
                with open(kept, "xb") as stream:  # exclusive: never replaces a kept file
                    stream.write(old)
                break
            except FileExistsError:
                continue
        else:
            raise RuntimeError(f"{folder}: could not find a free name to keep the earlier {path.name}")
    write_atomic(path, json.dumps(data, indent=1) + "\n")
    return kept

