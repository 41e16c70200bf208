#!/usr/bin/env python
"""A RedNet-50 detector next to its ResNet-50 baseline: forward time, training-step time and peak memory.

By default RetinaNet (retinanet_red50_fpn_1x_coco against retinanet_r50_fpn_1x_coco); --model
picks another COCO detector of the manifest (results/paper.yaml), compared with its baseline.
Both detectors are built from their configs (random weights) and measured in one run, at
800x1333 by default, on the CPU unless --device cuda. Printed ratios are RedNet / ResNet;
targets: forward <= 1.5x, training-step peak memory <= 1.0x.

Peak memory: what one training step adds on top of the idle model: on CUDA the allocator's
peak, on the CPU the peak of the malloc heap in use, sampled after every operator.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, installed or not
from involution_ops.bench import zoo  # noqa: E402
from involution_ops.complexity import count_params  # noqa: E402

DEFAULT_MODEL = "retinanet_red50_fpn_1x_coco"


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _heap_in_use() -> int:
    """Bytes malloc has handed out and not got back (all arenas plus mmap'ed blocks), glibc >= 2.33."""
    info = _LIBC.mallinfo2()
    return info.uordblks + info.hblkhd


_LIBC = ctypes.CDLL(None)
_LIBC.mallinfo2.restype = _MallInfo2


class PeakMemory(TorchDispatchMode):
    """Peak memory (MiB) of the enclosed code above its starting level.

    CUDA: the caching allocator's peak. CPU: the heap in use, sampled after every operator
    (forward and backward run on this thread), so freed-but-cached pages do not hide a peak
    the way a resident-set measurement would.
    """

    def __init__(self, device: torch.device):
        super().__init__()
        self.device = device
        self.mib = float("nan")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, _heap_in_use())
        return out

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        self.start = self.peak = _heap_in_use()
        return super().__enter__()

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.mib = (torch.cuda.max_memory_allocated() - self.start) / 2**20
            return None
        result = super().__exit__(*exc)
        self.mib = (self.peak - self.start) / 2**20
        return result


def build(config: Path, device: torch.device):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS as DET_MODELS

    cfg = Config.fromfile(str(config))
    init_default_scope("mmdet")
    cfg.model.backbone.init_cfg = None  # timing and memory do not depend on the weights
    return DET_MODELS.build(cfg.model).to(device)  # default init: speed and memory do not depend on it


def sample_batch(height: int, width: int, device: torch.device):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    generator = torch.Generator().manual_seed(0)
    padded = (-(-height // 32) * 32, -(-width // 32) * 32)
    images = torch.randn(1, 3, *padded, generator=generator).to(device)
    sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                         pad_shape=padded, batch_input_shape=padded, scale_factor=(1.0, 1.0)))
    gt = InstanceData()
    gt.bboxes = torch.tensor([[100.0, 120.0, 400.0, 500.0], [600.0, 200.0, 900.0, 380.0],
                              [50.0, 600.0, 260.0, 780.0], [1000.0, 300.0, 1250.0, 700.0]], device=device)
    gt.labels = torch.tensor([0, 17, 2, 56], device=device)
    sample.gt_instances = gt
    return images, [sample]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _train_step(model, images, samples) -> None:
    model.zero_grad(set_to_none=True)
    loss, _ = model.parse_losses(model(images, samples, mode="loss"))
    loss.backward()


def _timed(device: torch.device, fn) -> tuple[float, float]:
    """(wall, process CPU) seconds of fn(); CPU time stays honest on a machine shared with other jobs."""
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(models: dict, images, samples, device: torch.device, repeats: int) -> dict[str, dict[str, float]]:
    """Median forward (eval, no grad, raw head outputs) and training-step times, the models taking
    turns so that a change in machine load hits both alike; then one more training step each
    for the peak memory (kept apart: the CPU probe slows every operator)."""
    times: dict[str, dict[str, list[float]]] = {name: {} for name in models}

    def add(name: str, key: str, pair: tuple[float, float]) -> None:
        times[name].setdefault(key + "_s", []).append(pair[0])
        times[name].setdefault(key + "_cpu_s", []).append(pair[1])

    for name, model in models.items():  # warm-up
        model.eval()
        with torch.no_grad():
            model(images, samples, mode="tensor")
    for _ in range(repeats):
        for name, model in models.items():
            with torch.no_grad():
                add(name, "forward", _timed(device, lambda: model(images, samples, mode="tensor")))
    for name, model in models.items():
        model.train()
        _train_step(model, images, samples)  # warm-up
    for _ in range(repeats):
        for name, model in models.items():
            add(name, "train_step", _timed(device, lambda: _train_step(model, images, samples)))
    results = {name: {key: statistics.median(values) for key, values in entry.items()} for name, entry in times.items()}
    for name, model in models.items():
        model.zero_grad(set_to_none=True)
        with PeakMemory(device) as memory:
            _train_step(model, images, samples)
        model.zero_grad(set_to_none=True)
        results[name]["peak_mib"] = memory.mib
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=(800, 1333), metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    manifest = zoo.load()
    detectors = [m.name for m in manifest.models if m.suite == "coco" and not m.is_baseline]
    parser.add_argument("--model", default=DEFAULT_MODEL, choices=detectors,
                        help=f"RedNet-50 detector to compare with its baseline (default {DEFAULT_MODEL})")
    args = parser.parse_args(argv)
    red_model = manifest.get(args.model)
    res_model = manifest.get(red_model.baseline)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = os.environ.get("INVOLUTION_BACKEND", "default dispatch")
    print(f"{red_model.name} and {res_model.name} at {args.size[0]}x{args.size[1]}, batch 1, {args.device}"
          f" ({torch.get_num_threads()} threads), involution backend: {backend}, median of {args.repeats}")
    images, samples = sample_batch(*args.size, device)
    models = {m.name: build(m.config, device) for m in (res_model, red_model)}
    results = measure(models, images, samples, device, args.repeats)
    for name, model in models.items():
        params = count_params(model)[1] / 1e6
        r = results[name]
        print(f"  {name:40s} params {params:6.2f} M | forward {r['forward_s']:7.3f} s (cpu {r['forward_cpu_s']:7.3f} s)"
              f" | train step {r['train_step_s']:7.3f} s (cpu {r['train_step_cpu_s']:7.3f} s)"
              f" | train-step peak {r['peak_mib']:8.1f} MiB", flush=True)
    red, res = results[red_model.name], results[res_model.name]
    ratio = {key: red[key] / res[key] for key in red}
    print(f"ratios {red_model.name} / {res_model.name} (wall time; process CPU time in brackets):")
    print(f"  forward          {ratio['forward_s']:5.2f}x  ({ratio['forward_cpu_s']:5.2f}x)   target <= 1.50x: "
          f"{'met' if ratio['forward_s'] <= 1.5 else 'NOT met'}")
    print(f"  training step    {ratio['train_step_s']:5.2f}x  ({ratio['train_step_cpu_s']:5.2f}x)")
    print(f"  train-step peak  {ratio['peak_mib']:6.3f}x           target <= 1.00x: "
          f"{'met' if ratio['peak_mib'] <= 1.0 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
