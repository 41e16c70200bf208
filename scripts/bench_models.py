#!/usr/bin/env python
"""RetinaNet RedNet-50 next to RetinaNet ResNet-50: forward time, training-step time and peak memory.

Both detectors are built from the suite's configs (det_configs/retinanet_*_1x_coco.py,
random weights) and measured in one run, at 800x1333 by default, on the CPU unless
--device cuda. Printed ratios are RedNet / ResNet; targets (issue 5): forward <= 1.5x,
training-step peak memory <= 1.0x.

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

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "RetinaNet ResNet-50": "det_configs/retinanet_r50_fpn_1x_coco.py",
    "RetinaNet RedNet-50": "det_configs/retinanet_red50_fpn_1x_coco.py",
}


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


def build(config: str, device: torch.device):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS as DET_MODELS

    cfg = Config.fromfile(str(REPO / config))
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


def measure(model, images, samples, device: torch.device, repeats: int) -> dict[str, float]:
    """Median forward (eval, no grad, raw head outputs) and training-step times; one more step
    measures the training-step peak memory (kept apart: the CPU probe slows every operator)."""
    forward_times, step_times = [], []
    model.eval()
    with torch.no_grad():
        model(images, samples, mode="tensor")  # warm-up
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            model(images, samples, mode="tensor")
            _sync(device)
            forward_times.append(time.perf_counter() - start)
    model.train()
    _train_step(model, images, samples)  # warm-up
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        _train_step(model, images, samples)
        _sync(device)
        step_times.append(time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    with PeakMemory(device) as memory:
        _train_step(model, images, samples)
    model.zero_grad(set_to_none=True)
    return {"forward_s": statistics.median(forward_times), "train_step_s": statistics.median(step_times),
            "peak_mib": memory.mib}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=(800, 1333), metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = os.environ.get("INVOLUTION_BACKEND", "default dispatch")
    print(f"RetinaNet at {args.size[0]}x{args.size[1]}, batch 1, {args.device}"
          f" ({torch.get_num_threads()} threads), involution backend: {backend}, median of {args.repeats}")
    images, samples = sample_batch(*args.size, device)
    results = {}
    for name, config in MODELS.items():
        model = build(config, device)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        results[name] = measure(model, images, samples, device, args.repeats)
        print(f"  {name:20s} params {params:6.2f} M   forward {results[name]['forward_s']:7.3f} s   "
              f"train step {results[name]['train_step_s']:7.3f} s   train-step peak {results[name]['peak_mib']:8.0f} MiB",
              flush=True)
        del model
        gc.collect()
    red, res = results["RetinaNet RedNet-50"], results["RetinaNet ResNet-50"]
    fwd, step, mem = red["forward_s"] / res["forward_s"], red["train_step_s"] / res["train_step_s"], \
        red["peak_mib"] / res["peak_mib"]
    print("ratios RedNet-50 / ResNet-50:")
    print(f"  forward          {fwd:5.2f}x   (target <= 1.50x: {'met' if fwd <= 1.5 else 'NOT met'})")
    print(f"  training step    {step:5.2f}x")
    print(f"  train-step peak  {mem:5.2f}x   (target <= 1.00x: {'met' if mem <= 1.0 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
