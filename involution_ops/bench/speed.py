"""`make bench`: measured speed and memory of every paper model next to its ResNet baseline.

For each pair (a RedNet model, its ResNet baseline) and each inference option
(eager, conv+BN fusion, channels_last, torch.compile): median latency and images/s;
for training (forward, loss, backward, SGD step): median step time with the
involution kernel map regenerated in backward (``recompute_kernel``, the default,
less memory) and kept (more memory, no second kernel generation), and the peak
memory of one step. The two models of a pair take turns (A, B, A, B, ...) so that
a change of machine load hits both alike. Conventions of mmdet's
tools/analysis_tools/benchmark.py: warm-up iterations not timed, then repeats,
median; on CUDA every timing is bracketed by torch.cuda.synchronize() and memory is
the allocator's peak (max_memory_allocated).

Results go to results/speed.json (with the machine: CPU model, cores, threads, load
average at start and end, torch, date, device); an earlier speed.json is first kept
under results/speed/<its date>.json. `render_markdown` turns the file into the
"Measured speed and memory" tables.

Random weights throughout: speed and memory do not depend on them. Detectors and
segmentors run their network (mode="tensor": no final NMS or resize, the same for
both models of a pair); SyncBN is reverted to BN (one process).
"""
from __future__ import annotations

import copy
import ctypes
import datetime as _dt
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .io import REPO_ROOT, markdown_table, write_atomic

SCHEMA = 1
INFERENCE_OPTIONS = ("eager", "fuse_conv_bn", "channels_last", "compile")
TRAINING_OPTIONS = ("recompute", "keep")  # the involution kernel map: regenerated in backward / kept
SUITES = ("imagenet", "coco", "cityscapes")

# (inference shape, training shape) per suite, batch first; --quick shrinks them. Inference at
# batch 1 as mmdet's benchmark.py (ImageNet: 8); training at the papers' images per GPU (2 for
# the detectors and segmentors; UPerNet's 1x1 pyramid pooling cannot train BN on one image).
SHAPES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "imagenet": ((8, 3, 224, 224), (8, 3, 224, 224)),
    "coco": ((1, 3, 800, 1333), (2, 3, 800, 1333)),
    "cityscapes": ((1, 3, 1024, 2048), (2, 3, 512, 1024)),  # whole image / training crop
}
QUICK_SHAPES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "imagenet": ((2, 3, 32, 32), (2, 3, 32, 32)),
    "coco": ((1, 3, 128, 160), (2, 3, 128, 160)),
    "cityscapes": ((1, 3, 128, 256), (2, 3, 64, 128)),
}


# --------------------------------------------------------------------------- the model list

@dataclass(frozen=True)
class PaperModel:
    """One model of the paper and the ResNet baseline it is measured against."""

    name: str
    config: str  # "rednet:<depth>" for ImageNet, else a config path relative to the repository
    baseline: str
    baseline_config: str  # "resnet:<depth>" for ImageNet
    suite: str
    shapes: tuple[tuple[int, ...], tuple[int, ...]]  # (inference, training), batch first


def paper_models(manifest=None) -> list[PaperModel]:
    """Every paper model next to the ResNet it is measured against, from the model manifest
    (involution_ops.bench.zoo): ImageNet RedNets against the same-depth ResNet (ResNet-50 for
    RedNet-26/38, which mmdet's ResNet does not build), detectors and segmentors against the
    baseline their manifest row names."""
    if manifest is None:
        from . import zoo

        manifest = zoo.load()

    def relative(path: Path) -> str:
        return path.relative_to(REPO_ROOT).as_posix()

    models = []
    for model in manifest.models:
        if model.is_baseline:
            continue
        if model.suite == "imagenet":
            depth = int(model.depth)
            base_depth = depth if depth in (50, 101, 152) else 50
            models.append(PaperModel(model.name, f"rednet:{depth}", f"ResNet-{base_depth}", f"resnet:{base_depth}",
                                     "imagenet", SHAPES["imagenet"]))
        else:
            baseline = manifest.get(model.baseline)
            models.append(PaperModel(model.name, relative(model.config), baseline.name, relative(baseline.config),
                                     model.suite, SHAPES[model.suite]))
    return models


def select(models: Sequence[PaperModel], names: Sequence[str] | None = None,
           suites: Sequence[str] | None = None) -> list[PaperModel]:
    """The models named (exact name, or a substring matching exactly one model) and/or of the suites."""
    chosen = list(models)
    if suites:
        unknown = sorted(set(suites) - set(SUITES))
        if unknown:
            raise ValueError(f"--suite {', '.join(unknown)}: not a suite; choose from {', '.join(SUITES)}")
        chosen = [m for m in chosen if m.suite in suites]
    if names:
        picked = []
        for name in names:
            exact = [m for m in chosen if m.name == name]
            partial = exact or [m for m in chosen if name.lower() in m.name.lower()]
            if not partial:
                raise ValueError(f"--models {name}: no such model{' in the suites chosen' if suites else ''}; "
                                 f"known: {', '.join(m.name for m in chosen)}")
            picked += [m for m in partial if m not in picked]
        chosen = picked
    return chosen


# --------------------------------------------------------------------------- peak memory

class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


_LIBC = ctypes.CDLL(None)
_MALLINFO2 = getattr(_LIBC, "mallinfo2", None)  # glibc >= 2.33
if _MALLINFO2 is not None:
    _MALLINFO2.restype = _MallInfo2


def _heap_in_use() -> int:
    """Bytes malloc has handed out and not got back (all arenas plus mmap'ed blocks)."""
    info = _MALLINFO2()
    return info.uordblks + info.hblkhd


class PeakMemory(TorchDispatchMode):
    """Peak memory (MiB) of the enclosed code above its starting level.

    CUDA: the caching allocator's peak (max_memory_allocated). CPU: the malloc heap in
    use, sampled after every operator (forward and backward run on this thread), so
    freed-but-cached pages do not hide a peak the way a resident-set measurement would;
    a temporary freed inside one operator is not seen. NaN on a CPU without mallinfo2.
    """

    def __init__(self, device: torch.device):
        super().__init__()
        self.device = torch.device(device)
        self.mib = float("nan")
        self.peak = self.start = 0

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
        if _MALLINFO2 is None:
            return self
        self.start = self.peak = _heap_in_use()
        return super().__enter__()

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.mib = (torch.cuda.max_memory_allocated() - self.start) / 2**20
            return None
        if _MALLINFO2 is None:
            return None
        result = super().__exit__(*exc)
        self.mib = (self.peak - self.start) / 2**20
        return result


# --------------------------------------------------------------------------- timing

Timer = Callable[[str, Callable[[], Any]], tuple[float, float]]


def wall_and_cpu_timer(device: torch.device) -> Timer:
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


# --------------------------------------------------------------------------- building and running

@dataclass
class Subject:
    """A model with the inputs and the two calls the benchmark times."""

    name: str
    model: nn.Module
    infer_batch: Any
    train_batch: Any
    forward: Callable[[nn.Module, Any], Any]  # inference output of a model (variant)
    loss: Callable[[nn.Module, Any], torch.Tensor]
    to_channels_last: Callable[[Any], Any]
    images: dict[str, int] = field(default_factory=dict)  # images per call: {"infer": n, "train": n}
    # what an inference option must leave unchanged (default: the forward output)
    check: Callable[[nn.Module, Any], Any] | None = None


class _ClassifierHead(nn.Module):
    """mmdet's ResNet stages -> global average pooling -> 1000-way fc, as scripts/get_flops.py counts it."""

    def __init__(self, depth: int):
        super().__init__()
        from mmdet.models.backbones import ResNet

        self.backbone = ResNet(depth=depth)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.backbone(x)[-1]), 1))


def _images(shape: Sequence[int], device: torch.device, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(device)


def classifier_subject(name: str, model: nn.Module, shapes, device: torch.device, classes: int = 1000) -> Subject:
    """An image classifier: random images in, logits out; trained with cross-entropy on random labels."""
    infer = _images(shapes[0], device)
    labels = torch.randint(0, classes, (shapes[1][0],), generator=torch.Generator().manual_seed(2))
    train = (_images(shapes[1], device, 1), labels.to(device))
    return Subject(name, model.to(device), infer, train,
                   forward=lambda m, x: m(x),
                   loss=lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]),
                   to_channels_last=lambda x: x.contiguous(memory_format=torch.channels_last),
                   images={"infer": shapes[0][0], "train": shapes[1][0]})


def _imagenet_subject(name: str, config: str, shapes, device: torch.device) -> Subject:
    from involution_ops import RedNet

    arch, depth = config.split(":")
    model = RedNet(int(depth), num_classes=1000) if arch == "rednet" else _ClassifierHead(int(depth))
    return classifier_subject(name, model, shapes, device)


def _build_mm(config: str, scope: str, device: torch.device) -> nn.Module:
    import logging

    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope

    MMLogger.get_current_instance().setLevel(logging.WARNING)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))  # the configs' custom_imports name this checkout's package
    cfg = Config.fromfile(str(REPO_ROOT / config))
    cfg.model.backbone.init_cfg = None  # random weights: speed and memory do not depend on them
    cfg.model.pop("pretrained", None)
    if scope == "mmdet":
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(cfg.model)
    return revert_sync_batchnorm(model).to(device)


def _det_samples(shape: Sequence[int], device: torch.device) -> list:
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    batch, _, height, width = shape
    boxes = torch.tensor([[0.08, 0.15, 0.30, 0.62], [0.45, 0.25, 0.68, 0.48],
                          [0.04, 0.75, 0.20, 0.97], [0.75, 0.38, 0.94, 0.88]])
    samples = []
    for _ in range(batch):
        pad = (-(-height // 32) * 32, -(-width // 32) * 32)
        sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                             pad_shape=pad, batch_input_shape=pad, scale_factor=(1.0, 1.0)))
        gt = InstanceData()
        gt.bboxes = (boxes * torch.tensor([width, height, width, height])).to(device)
        gt.labels = torch.tensor([0, 17, 2, 56], device=device)
        masks = torch.zeros(len(boxes), height, width, dtype=torch.uint8)  # Mask R-CNN: the boxes filled
        for i, (x1, y1, x2, y2) in enumerate(gt.bboxes.cpu().round().int().tolist()):
            masks[i, y1:y2, x1:x2] = 1
        gt.masks = BitmapMasks(masks.numpy(), height, width)
        sample.gt_instances = gt
        samples.append(sample)
    return samples


def _seg_samples(shape: Sequence[int], device: torch.device) -> list:
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    batch, _, height, width = shape
    samples = []
    for index in range(batch):
        sample = SegDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                             pad_shape=(height, width), batch_input_shape=(height, width)))
        labels = torch.randint(0, 19, (1, height, width), generator=torch.Generator().manual_seed(3 + index))
        sample.gt_sem_seg = PixelData(data=labels.to(device))
        samples.append(sample)
    return samples


def _mm_subject(name: str, config: str, suite: str, shapes, device: torch.device) -> Subject:
    scope = "mmdet" if suite == "coco" else "mmseg"
    model = _build_mm(config, scope, device)
    make_samples = _det_samples if suite == "coco" else _seg_samples

    def padded(shape: Sequence[int]) -> tuple[int, ...]:  # as the data preprocessor pads (size divisor 32)
        return (*shape[:2], *(-(-side // 32) * 32 for side in shape[2:]))

    infer = (_images(padded(shapes[0]), device), make_samples(shapes[0], device))
    train = (_images(padded(shapes[1]), device, 1), make_samples(shapes[1], device))

    def loss(m: nn.Module, b) -> torch.Tensor:
        return m.parse_losses(m(b[0], b[1], mode="loss"))[0]

    return Subject(name, model, infer, train,
                   forward=lambda m, b: m(b[0], b[1], mode="tensor"),
                   loss=loss,
                   to_channels_last=lambda b: (b[0].contiguous(memory_format=torch.channels_last), b[1]),
                   images={"infer": shapes[0][0], "train": shapes[1][0]},
                   # the features: a two-stage detector's proposal selection (top-k of near-equal random
                   # scores) turns rounding differences into different boxes
                   check=lambda m, b: getattr(m, "_orig_mod", m).extract_feat(b[0]))


def build_subject(name: str, config: str, suite: str, shapes, device: torch.device) -> Subject:
    if suite == "imagenet":
        return _imagenet_subject(name, config, shapes, device)
    return _mm_subject(name, config, suite, shapes, device)


def _tensors(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _tensors(item)]
    return []


def max_relative_difference(a: Any, b: Any) -> float:
    """Largest |a - b| over all output tensors, relative to the largest |a|."""
    pairs = list(zip(_tensors(a), _tensors(b)))
    if not pairs or len(_tensors(a)) != len(_tensors(b)):
        return float("inf")
    scale = max(float(x.detach().abs().max()) for x, _ in pairs) or 1.0
    return max(float((x.detach().float() - y.detach().float()).abs().max()) for x, y in pairs) / scale


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """A copy of `model` with every BatchNorm that directly follows a Conv2d among its
    siblings folded into that conv (mmcv's fuse_conv_bn, as mmdet's benchmark.py uses)."""
    from mmcv.cnn import fuse_conv_bn as mmcv_fuse

    return mmcv_fuse(copy.deepcopy(model))


def inference_variant(subject: Subject, option: str) -> tuple[nn.Module, Any]:
    """(model, batch) of an inference option; the model in eval mode."""
    model = subject.model.eval()
    batch = subject.infer_batch
    if option == "eager":
        return model, batch
    if option == "fuse_conv_bn":
        return fuse_conv_bn(model).eval(), batch
    if option == "channels_last":
        return copy.deepcopy(model).to(memory_format=torch.channels_last).eval(), subject.to_channels_last(batch)
    if option == "compile":
        return torch.compile(copy.deepcopy(model).eval()), batch
    raise ValueError(f"inference option {option!r}: choose from {', '.join(INFERENCE_OPTIONS)}")


def _set_recompute(model: nn.Module, recompute: bool) -> None:
    from involution_ops import Involution

    for module in model.modules():
        if isinstance(module, Involution):
            module.recompute_kernel = recompute


def _has_involution(model: nn.Module) -> bool:
    from involution_ops import Involution

    return any(isinstance(m, Involution) for m in model.modules())


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


def measure_pair(model: Subject, baseline: Subject, device: torch.device, repeats: int, warmup: int,
                 inference_options: Sequence[str] = INFERENCE_OPTIONS, train: bool = True,
                 timer: Timer | None = None, log: Callable[[str], None] = print) -> dict:
    """Inference per option and training with the kernel map recomputed / kept, the two
    models interleaved; then one untimed call each under the peak-memory probe."""
    timer = timer or wall_and_cpu_timer(device)
    result: dict[str, Any] = {"inference": {}, "training": {}}
    references = {}
    with torch.no_grad():
        for subject in (model, baseline):
            references[subject.name] = (subject.check or subject.forward)(subject.model.eval(), subject.infer_batch)
    for option in inference_options:
        entry: dict[str, Any] = {}
        try:
            variants = {s.name: (s, *inference_variant(s, option)) for s in (model, baseline)}
            with torch.no_grad():
                for name, (subject, net, batch) in variants.items():  # first call: compiles, and is checked
                    output = subject.forward(net, batch)
                    if subject.check is not None:
                        output = subject.check(net, batch)
                    difference = max_relative_difference(references[name], output)
                    if not difference < 1e-3:
                        raise RuntimeError(f"{name}: output differs from eager by {difference:.2e} (relative)")
                tasks = {name: (lambda s=subject, n=net, b=batch: s.forward(n, b))
                         for name, (subject, net, batch) in variants.items()}
                samples = interleave(tasks, repeats, warmup, timer)
                for key, subject in (("model", model), ("baseline", baseline)):
                    entry[key] = summarise(samples[subject.name], subject.images["infer"])
                    if option != "compile" or device.type == "cuda":  # the CPU probe does not trace compiled code
                        net, batch = variants[subject.name][1:]
                        with PeakMemory(device) as memory:
                            subject.forward(net, batch)
                        entry[key]["peak_mib"] = memory.mib
            entry["ratio"] = ratio(entry["model"]["median_ms"], entry["baseline"]["median_ms"])
        except Exception as exc:  # one option failing (e.g. compile on this platform) is a result, not a crash
            entry = {"error": _error(exc)}
        log(f"  inference {option:14s} {_describe(entry)}")
        result["inference"][option] = entry
        variants = None
        gc.collect()
    if train:
        result["training"] = _measure_training(model, baseline, device, repeats, warmup, timer, log)
    return result


def _measure_training(model: Subject, baseline: Subject, device: torch.device, repeats: int, warmup: int,
                      timer: Timer, log: Callable[[str], None]) -> dict:
    optimisers = {}
    for subject in (model, baseline):
        subject.model.train()
        params = [p for p in subject.model.parameters() if p.requires_grad]
        optimisers[subject.name] = torch.optim.SGD(params, lr=1e-6, momentum=0.9)

    def step(subject: Subject, recompute: bool | None) -> None:
        if recompute is not None:
            _set_recompute(subject.model, recompute)
        optimiser = optimisers[subject.name]
        optimiser.zero_grad(set_to_none=True)
        subject.loss(subject.model, subject.train_batch).backward()
        optimiser.step()

    options = TRAINING_OPTIONS if _has_involution(model.model) else TRAINING_OPTIONS[:1]
    tasks = {f"{model.name} [{o}]": (lambda o=o: step(model, o == "recompute")) for o in options}
    tasks[baseline.name] = lambda: step(baseline, None)
    entry: dict[str, Any] = {}
    try:
        samples = interleave(tasks, repeats, warmup, timer)
        base = summarise(samples[baseline.name], baseline.images["train"])
        with PeakMemory(device) as memory:
            step(baseline, None)
        base["peak_mib"] = memory.mib
        for option in options:
            stats = summarise(samples[f"{model.name} [{option}]"], model.images["train"])
            with PeakMemory(device) as memory:
                step(model, option == "recompute")
            stats["peak_mib"] = memory.mib
            entry[option] = {"model": stats, "baseline": base,
                             "ratio": ratio(stats["median_ms"], base["median_ms"]),
                             "peak_ratio": ratio(stats["peak_mib"], base["peak_mib"])}
            log(f"  training  {option:14s} {_describe(entry[option])}")
    except Exception as exc:
        entry = {"error": _error(exc)}
        log(f"  training  {_describe(entry)}")
    finally:
        _set_recompute(model.model, True)
        for subject in (model, baseline):
            subject.model.zero_grad(set_to_none=True)
            subject.model.eval()
    return entry


def _describe(entry: dict) -> str:
    if "error" in entry:
        return f"failed: {entry['error']}"
    m, b = entry["model"], entry["baseline"]
    text = f"{m['median_ms']:9.1f} ms vs {b['median_ms']:9.1f} ms  ratio {_fmt_ratio(entry['ratio'])}"
    if m.get("peak_mib") is not None and b.get("peak_mib") is not None:
        text += f" | peak {m['peak_mib']:8.1f} vs {b['peak_mib']:8.1f} MiB"
    return text


# --------------------------------------------------------------------------- the machine and the file

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict:
    device = torch.device(device)
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "involution_backend": os.environ.get("INVOLUTION_BACKEND", "default dispatch"),
    }
    return info


def _cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds every process on the machine has used, CPU seconds of this process and its
    children) since boot, on Linux; None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # all but idle and iowait
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system + own.children_user + own.children_system


def other_load(start: tuple[float, float] | None, end: tuple[float, float] | None, seconds: float) -> float | None:
    """Cores that other processes kept busy on average while the benchmark ran: the machine's
    CPU time minus our own, over the wall time. Unlike the load average, the benchmark's own
    threads do not count."""
    if start is None or end is None or seconds <= 0:
        return None
    return round(max(0.0, ((end[0] - start[0]) - (end[1] - start[1])) / seconds), 2)


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


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


# --------------------------------------------------------------------------- the table

def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape)


def machine_label(data: dict) -> str:
    m = data["machine"]
    load = f"load average {m.get('load_start')} at start, {m.get('load_end')} at end"
    if m.get("other_load") is not None:
        load += f", other processes {m['other_load']} cores on average while it ran"
    return (f"{m['device_name']} ({m['device']}; {m['cores']} cores, {m['threads']} torch threads), "
            f"torch {m['torch']}, {m['date']}, {load}")


def under_load(data: dict) -> bool:
    """A CPU run that other processes shared: on average they kept more than a quarter of a core
    busy (`other_load`). Files without it fall back to the 1-minute load average exceeding 3/4 of
    the cores, which counts the benchmark's own threads too."""
    m = data["machine"]
    if not str(m.get("device", "cpu")).startswith("cpu"):
        return False
    if m.get("other_load") is not None:
        return m["other_load"] > 0.25
    busy = max((m.get("load_start") or [0])[0], (m.get("load_end") or [0])[0])
    return busy > 0.75 * (m.get("cores") or 1)


def render_markdown(data: dict | Path) -> str:
    """The "Measured speed and memory" section of results/speed.json (a path or its data)."""
    if not isinstance(data, dict):
        data = json.loads(Path(data).read_text(encoding="utf-8"))
    if data.get("schema") != SCHEMA:
        raise ValueError(f"speed results of schema {data.get('schema')!r}; this code reads schema {SCHEMA}: "
                         "rerun `make bench`")
    s = data["settings"]
    lines = [
        "## Measured speed and memory",
        "",
        f"Measured on {machine_label(data)}; median of {s['repeats']} runs after {s['warmup']} warm-up runs, "
        "each model interleaved with its baseline. Random weights; detectors and segmentors without final "
        "post-processing. Ratio = model / baseline (below 1: the RedNet model is faster or smaller). "
        "Peak memory: what one call adds above the idle model"
        + (" (CUDA allocator peak)." if s["device"].startswith("cuda") else
           " (CPU malloc heap, sampled after every operator).")
        + (" Quick run: small shapes, not the paper's." if s.get("quick") else "")
        + (" **Measured under load** (other jobs shared the CPU): the interleaved ratios mean more than "
           "the absolute times." if under_load(data) else ""),
        "",
        "### Inference",
        "",
    ]
    rows = []
    for pair in data["pairs"]:
        for option, e in pair["inference"].items():
            head = [pair["model"], pair["baseline"], _shape(pair["inference_shape"]), option]
            if "error" in e:
                rows.append(head + [f"failed: {e['error']}"] + [""] * 6)
                continue
            m, b = e["model"], e["baseline"]
            rows.append(head + [_fmt(m["median_ms"]), _fmt(b["median_ms"]), _fmt_ratio(e["ratio"]),
                                _fmt(m["images_per_s"], 2), _fmt(b["images_per_s"], 2),
                                f"{_fmt(m.get('peak_mib'))} / {_fmt(b.get('peak_mib'))}"])
    lines.append(markdown_table(["Model", "Baseline", "Input", "Option", "Model ms", "Baseline ms", "Ratio",
                         "Model img/s", "Baseline img/s", "Peak MiB (model / baseline)"], rows, left=4))
    rows = []
    for pair in data["pairs"]:
        training = pair.get("training") or {}
        if "error" in training:
            rows.append([pair["model"], pair["baseline"], _shape(pair["training_shape"]), "",
                         f"failed: {training['error']}"] + [""] * 5)
            continue
        for option, e in training.items():
            m, b = e["model"], e["baseline"]
            rows.append([pair["model"], pair["baseline"], _shape(pair["training_shape"]), option,
                         _fmt(m["median_ms"]), _fmt(b["median_ms"]), _fmt_ratio(e["ratio"]),
                         _fmt(m.get("peak_mib")), _fmt(b.get("peak_mib")), _fmt_ratio(e["peak_ratio"])])
    if rows:
        lines += ["", "### Training step (forward, loss, backward, SGD step)", "",
                  ("Kernel map: `recompute` regenerates each involution's kernel map in backward (the default, "
                   "less memory); `keep` stores it (more memory, no second kernel generation)."), "",
                  markdown_table(["Model", "Baseline", "Input", "Kernel map", "Model ms", "Baseline ms", "Ratio",
                          "Model peak MiB", "Baseline peak MiB", "Peak ratio"], rows, left=4)]
    targets = target_lines(data)
    if targets:
        lines += ["", "Targets (ratios as measured above):", "", *(f"- {line}" for line in targets)]
    return "\n".join(lines) + "\n"


# (model, what, option, key, bound, label): benchmark figures to report against, never asserted
TARGETS = (
    ("RedNet-50", "inference", "eager", "ratio", 0.8, "RedNet-50 forward <= 0.8x ResNet-50's"),
    ("retinanet_red50_fpn_1x_coco", "inference", "eager", "ratio", 0.95,
     "RetinaNet RedNet-50 forward <= 0.95x RetinaNet ResNet-50's"),
)


def target_lines(data: dict) -> list[str]:
    """Each target whose pair was measured, with its ratio and whether it was met; and for every
    pair the training-step peak memory (kernel map recomputed, the default) against <= 1.0x."""
    pairs = {p["model"]: p for p in data["pairs"]}
    checks = [t for t in TARGETS if t[0] in pairs]
    checks += [(name, "training", "recompute", "peak_ratio", 1.0,
                f"{name} training-step peak memory <= {pairs[name]['baseline']}'s") for name in pairs]
    lines = []
    for name, what, option, key, bound, label in checks:
        value = (pairs[name].get(what) or {}).get(option, {}).get(key)
        verdict = "not measured" if value is None else ("met" if value <= bound else "NOT met")
        lines.append(f"{label}: {_fmt_ratio(value)} ({verdict})")
    return lines


# --------------------------------------------------------------------------- the run

def run(models: Sequence[PaperModel], device: str | torch.device = "cpu", repeats: int = 5, warmup: int = 2,
        quick: bool = False, inference_options: Sequence[str] = INFERENCE_OPTIONS, train: bool = True,
        timer: Timer | None = None, log: Callable[[str], None] = print,
        builder: Callable[..., Subject] = build_subject,
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
    info["load_start"] = _loadavg()
    cpu_start, wall_start = _cpu_seconds(), time.perf_counter()
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "machine": info,
        "settings": {"device": str(device), "repeats": repeats, "warmup": warmup, "quick": quick,
                     "train_batch": train_batch,
                     "inference_options": list(inference_options), "train": train},
        "pairs": [],
    }
    baselines: dict[tuple[str, tuple], Subject] = {}
    for entry in models:
        shapes = QUICK_SHAPES[entry.suite] if quick else entry.shapes
        if train_batch:
            shapes = (shapes[0], (train_batch, *shapes[1][1:]))
        log(f"{entry.name} vs {entry.baseline}: inference {_shape(shapes[0])}, training {_shape(shapes[1])}, "
            f"{device}, {torch.get_num_threads()} threads, load {_loadavg()}")
        key = (entry.baseline_config, tuple(map(tuple, shapes)))
        if key not in baselines:
            baselines.clear()  # one baseline alive at a time: memory
            gc.collect()
            baselines[key] = builder(entry.baseline, entry.baseline_config, entry.suite, shapes, device)
        subject = builder(entry.name, entry.config, entry.suite, shapes, device)
        pair = {"model": entry.name, "baseline": entry.baseline, "suite": entry.suite,
                "config": entry.config, "baseline_config": entry.baseline_config,
                "inference_shape": list(shapes[0]), "training_shape": list(shapes[1]),
                "params_m": {"model": sum(p.numel() for p in subject.model.parameters()) / 1e6,
                             "baseline": sum(p.numel() for p in baselines[key].model.parameters()) / 1e6}}
        pair.update(measure_pair(subject, baselines[key], device, repeats, warmup, inference_options,
                                 train, timer, log))
        data["pairs"].append(pair)
        if on_pair is not None:
            on_pair(data)
        del subject
        gc.collect()
    info["load_end"] = _loadavg()
    info["other_load"] = other_load(cpu_start, _cpu_seconds(), time.perf_counter() - wall_start)
    return data


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", help="model names (or unique parts of them); default all")
    parser.add_argument("--suite", nargs="+", choices=SUITES, help="only these suites")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per model (default 50 CUDA, 5 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 5 CUDA, 1 CPU)")
    parser.add_argument("--options", nargs="+", default=list(INFERENCE_OPTIONS), choices=INFERENCE_OPTIONS,
                        help="inference options to measure")
    parser.add_argument("--no-train", action="store_true", help="inference only")
    parser.add_argument("--train-batch", type=int, help="images per training step (default: 8 ImageNet, "
                        "2 detectors and segmentors, the papers' per-GPU batch)")
    parser.add_argument("--quick", action="store_true", help="small shapes (a smoke test, not the paper's sizes)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, help="results file (default results/speed.json, with --quick "
                        "results/speed-quick.json); an earlier one is kept under <its folder>/<its stem>/<date>.json")
    parser.add_argument("--table", type=Path, help="where the markdown table goes (default: next to --out, .md); "
                        "with --render: write it there instead of printing it")
    parser.add_argument("--list", action="store_true", help="list the models and exit")
    parser.add_argument("--render", type=Path, metavar="SPEED_JSON",
                        help="measure nothing: print (or with --table write) the table of an earlier results file")
    args = parser.parse_args(argv)
    if args.render:
        try:
            table = render_markdown(args.render)
        except (OSError, ValueError, KeyError) as error:
            parser.error(f"--render {args.render}: {error}")
        if args.table:
            args.table.write_text(table, encoding="utf-8")
        else:
            print(table, end="")
        return 0
    try:
        models = select(paper_models(), args.models, args.suite)
    except ValueError as error:
        parser.error(str(error))
    if args.list:
        for m in models:
            print(f"{m.suite:10s} {m.name:40s} vs {m.baseline}")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    repeats = args.repeats if args.repeats is not None else (50 if cuda else 5)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    out = args.out or REPO_ROOT / "results" / ("speed-quick.json" if args.quick else "speed.json")
    progress: list[Path] = []  # this run's own file (named by its start), replaced after each pair

    def save_progress(partial: dict) -> None:
        if not progress:
            stamp = "".join(c if c.isalnum() else "-" for c in partial["machine"]["date"])
            progress.append(out.with_name(f"{out.stem}.in-progress-{stamp}.json"))
            print(f"progress after each pair: {progress[0]} (removed at the end)")
        progress[0].parent.mkdir(parents=True, exist_ok=True)
        progress[0].write_text(json.dumps(dict(partial, in_progress=True), indent=1), encoding="utf-8")

    if args.train_batch is not None and args.train_batch < 1:
        parser.error(f"--train-batch {args.train_batch}: give at least 1")
    data = run(models, args.device, repeats, warmup, args.quick, args.options, not args.no_train,
               on_pair=save_progress, train_batch=args.train_batch)
    kept = save_results(data, out)
    for path in progress:
        path.unlink(missing_ok=True)
    print(f"wrote {out}" + (f" (the earlier one kept as {kept})" if kept else ""))
    if under_load(data):
        print(f"WARNING: {machine_label(data)}: other jobs shared the CPU; the interleaved ratios mean more "
              "than the absolute times", file=sys.stderr)
    table = render_markdown(data)
    table_path = args.table or out.with_suffix(".md")  # derived from the .json: --render remakes it
    table_path.parent.mkdir(parents=True, exist_ok=True)
    table_path.write_text(table, encoding="utf-8")
    print(f"wrote {table_path}")
    print()
    print(table)
    return 0
