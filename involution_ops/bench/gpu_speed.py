"""`make gpu-check`'s timings, in one run on one device: the involution at the RedNet-50 stage
shapes, forward and backward, for every implementation side by side (the fast CUDA kernels, the
generic fallback kernels, an official-style baseline with the shapes compiled in, the unfold
formula and torch's depthwise conv2d of the same K as a yardstick), each against the
memory-bandwidth bound of the bytes it must move; then a RedNet-50 training step against
torchvision's ResNet-50 (time and torch.cuda.max_memory_allocated, float32 and bfloat16
autocast). `gpu_report` writes the markdown (results/gpu.md).

An implementation this checkout or machine lacks (no CUDA device, no CuPy, kernels not yet in
`involution_ops.ops.cuda`, no `involution_ops.ops.cuda_baseline`, no torchvision) gives a row
saying so instead of stopping the run. On the CPU the same code runs the rows that can (tests).
"""
from __future__ import annotations

import importlib
import inspect
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from involution_ops import involution_reference
from involution_ops.ops.unfold import involution_unfold

from .cells import error_summary

KERNEL = 7
GROUP_CHANNELS = 16


@dataclass(frozen=True)
class Layer:
    """One involution shape of RedNet-50 and how many of its 16 involutions have it."""

    name: str
    channels: int
    size: int  # input height = width
    stride: int
    count: int

    @property
    def out_size(self) -> int:
        return (self.size + 2 * (KERNEL // 2) - KERNEL) // self.stride + 1


# RedNet-50: blocks (3, 4, 6, 3), the stride on the first involution of stages 2-4 (ImageNet, 224x224)
REDNET50_LAYERS = (
    Layer("stage 1", 64, 56, 1, 3),
    Layer("stage 2, first", 128, 56, 2, 1),
    Layer("stage 2", 128, 28, 1, 3),
    Layer("stage 3, first", 256, 28, 2, 1),
    Layer("stage 3", 256, 14, 1, 5),
    Layer("stage 4, first", 512, 14, 2, 1),
    Layer("stage 4", 512, 7, 1, 2),
)

# vendor figures (bytes/s), used when the device does not report its memory clock and bus width
STATED_BANDWIDTH = (("H200", 4.8e12), ("H100 PCIe", 2.0e12), ("H100", 3.35e12), ("A100-SXM4-80GB", 2.039e12),
                    ("A100", 1.555e12))


# --------------------------------------------------------------------------- the implementations

@dataclass
class Implementation:
    """forward(x, weight, layer) and backward(grad, x, weight, out, layer) -> anything (the grads), or
    why it cannot run here (`missing`)."""

    name: str
    forward: Callable[..., torch.Tensor] | None = None
    backward: Callable[..., Any] | None = None
    missing: str = ""
    is_involution: bool = True  # False: depthwise conv (its own weights and bytes, no reference check)


def _pairs(layer: Layer) -> dict[str, tuple[int, int]]:
    return {"stride": (layer.stride,) * 2, "padding": (KERNEL // 2,) * 2, "dilation": (1, 1)}


def _kernel_module(name: str, device: torch.device) -> tuple[Any, str]:
    """(module, "") or (None, why it is not available)."""
    if device.type != "cuda":
        return None, "not available: needs a CUDA device"
    try:
        module = importlib.import_module(f"involution_ops.ops.{name}")
    except ImportError as error:
        return None, f"not available: involution_ops.ops.{name} cannot be imported ({error})"
    load_error = getattr(module, "load_error", lambda: None)()
    if load_error:
        return None, f"not available: {load_error}"
    missing = [f for f in ("forward", "backward_input", "backward_weight") if not hasattr(module, f)]
    if missing:
        return None, f"not available: involution_ops.ops.{name} has no {', '.join(missing)}"
    return module, ""


def kernel_implementation(label: str, module: Any, kernels: str | None) -> Implementation:
    """An implementation over a module with the kernel interface of involution_ops.ops.cuda:
    forward(x, weight, stride, padding, dilation[, kernels]), backward_input(grad_out, weight,
    input_size, ...), backward_weight(grad_out, x, kernel_size, groups, ...), (h, w) pairs.
    `kernels` ("fast", "generic") is passed when the module takes it."""
    extra: dict[str, str] = {}
    if kernels is not None:
        if "kernels" in inspect.signature(module.forward).parameters:
            extra = {"kernels": kernels}
        elif kernels == "fast":
            return Implementation(label, missing=f"not available: {module.__name__}.forward has no kernels= "
                                                 "selection (the fast kernels are not in this checkout)")
        # without a kernels= selection every call runs today's kernels, the generic ones

    def forward(x, weight, layer):
        return module.forward(x, weight, **_pairs(layer), **extra)

    def backward(grad, x, weight, out, layer):
        return (module.backward_input(grad, weight, tuple(x.shape[-2:]), **_pairs(layer), **extra),
                module.backward_weight(grad, x, (KERNEL, KERNEL), weight.shape[1], **_pairs(layer), **extra))

    return Implementation(label, forward, backward)


def _kernels(label: str, module_name: str, device: torch.device, kernels: str | None) -> Implementation:
    module, why = _kernel_module(module_name, device)
    return Implementation(label, missing=why) if module is None else kernel_implementation(label, module, kernels)


def _autograd_backward(grad, x, weight, out, layer):
    return torch.autograd.grad(out, (x, weight), grad, retain_graph=True)


def implementations(device: torch.device) -> list[Implementation]:
    """Every implementation compared, in the table's order."""
    return [
        _kernels("fast kernels", "cuda", device, "fast"),
        _kernels("generic kernels (fallback)", "cuda", device, "generic"),
        _kernels("official-style baseline (shapes compiled in)", "cuda_baseline", device, None),
        Implementation("unfold formula", lambda x, w, layer: involution_unfold(x, w, **_pairs(layer)),
                       _autograd_backward),
        Implementation(f"depthwise conv2d (groups=C, {KERNEL}x{KERNEL})",
                       lambda x, w, layer: F.conv2d(x, w, None, layer.stride, KERNEL // 2, 1, x.shape[1]),
                       _autograd_backward, is_involution=False),
    ]


# --------------------------------------------------------------------------- timing and bounds

def median_seconds(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of `repeats` calls after `warmup` untimed ones; CUDA events on a GPU."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            begin = time.perf_counter()
            fn()
            times.append(time.perf_counter() - begin)
    return statistics.median(times)


def bytes_moved(layer: Layer, batch: int, element_size: int, involution: bool = True) -> tuple[int, int]:
    """(forward, backward) bytes each op must read and write at least once: forward reads x and the
    weights and writes the output; backward reads the output gradient, the weights and x and
    writes both gradients (grad-input and grad-weight as two passes, as the kernels run them)."""
    x = batch * layer.channels * layer.size ** 2
    out = batch * layer.channels * layer.out_size ** 2
    weight = (batch * layer.channels // GROUP_CHANNELS * KERNEL ** 2 * layer.out_size ** 2 if involution
              else layer.channels * KERNEL ** 2)
    forward = x + weight + out
    backward = (out + weight + x) + (out + x + weight)
    return forward * element_size, backward * element_size


def peak_bandwidth(device: torch.device, stated: float | None = None) -> tuple[float | None, str]:
    """(bytes/s, where the figure comes from): `stated` if given, else the device's memory clock
    and bus width (double data rate), else the vendor figure for its name."""
    if stated:
        return stated, "stated with --bandwidth"
    if device.type != "cuda":
        return None, "no GPU: no bound"
    props = torch.cuda.get_device_properties(device)
    clock_khz, bus_bits = getattr(props, "memory_clock_rate", None), getattr(props, "memory_bus_width", None)
    source = "torch.cuda.get_device_properties"
    if not (clock_khz and bus_bits):
        try:
            import cupy

            index = device.index or 0
            clock_khz = cupy.cuda.runtime.deviceGetAttribute(36, index)  # cudaDevAttrMemoryClockRate (kHz)
            bus_bits = cupy.cuda.runtime.deviceGetAttribute(37, index)  # cudaDevAttrGlobalMemoryBusWidth
            source = "cudaDeviceGetAttribute"
        except Exception:  # noqa: BLE001 - any failure means: fall back to the stated figures
            clock_khz = bus_bits = None
    if clock_khz and bus_bits:
        return 2 * clock_khz * 1e3 * bus_bits / 8, f"{source}: memory clock {clock_khz / 1e3:.0f} MHz x " \
                                                     f"{bus_bits}-bit bus x 2"
    name = torch.cuda.get_device_name(device)
    for part, value in STATED_BANDWIDTH:
        if part in name:
            return value, f"vendor figure for {part} (the device reports no memory clock)"
    return None, f"unknown for {name}: pass --bandwidth"


# --------------------------------------------------------------------------- the operator table

def measure_operators(device: torch.device | str, layers: Sequence[Layer] = REDNET50_LAYERS, batch: int = 8,
                      dtype: torch.dtype = torch.float32, warmup: int = 3, repeats: int = 20,
                      impls: Sequence[Implementation] | None = None,
                      log: Callable[[str], None] = print) -> list[dict]:
    """One row per (layer, implementation): median forward and backward seconds, bytes moved, the
    largest difference of its forward output from the reference op relative to the output's
    largest value, or the reason it has no figures."""
    device = torch.device(device)
    impls = implementations(device) if impls is None else impls
    element = torch.empty(0, dtype=dtype).element_size()
    rows = []
    for layer in layers:
        gen = torch.Generator(device=device).manual_seed(0)
        x = torch.randn(batch, layer.channels, layer.size, layer.size, device=device, dtype=dtype, generator=gen)
        weight = torch.randn(batch, layer.channels // GROUP_CHANNELS, KERNEL, KERNEL, layer.out_size,
                             layer.out_size, device=device, dtype=dtype, generator=gen)
        depthwise = torch.randn(layer.channels, 1, KERNEL, KERNEL, device=device, dtype=dtype, generator=gen)
        grad = torch.randn(batch, layer.channels, layer.out_size, layer.out_size, device=device, dtype=dtype,
                           generator=gen)
        expected = involution_reference(x, weight, layer.stride, KERNEL // 2, 1)
        for impl in impls:
            forward_bytes, backward_bytes = bytes_moved(layer, batch, element, impl.is_involution)
            row: dict[str, Any] = {"layer": layer.name, "channels": layer.channels, "size": layer.size,
                                   "stride": layer.stride, "count": layer.count, "implementation": impl.name,
                                   "forward_bytes": forward_bytes, "backward_bytes": backward_bytes}
            if impl.missing:
                rows.append(dict(row, note=impl.missing))
                continue
            w = (weight if impl.is_involution else depthwise).detach().requires_grad_(True)
            xs = x.detach().requires_grad_(True)
            try:
                with torch.no_grad():
                    out = impl.forward(x, w.detach(), layer)
                if impl.is_involution:
                    scale = float(expected.abs().max()) or 1.0
                    row["max_rel_diff"] = float((out.float() - expected.float()).abs().max()) / scale
                row["forward_s"] = median_seconds(lambda: impl.forward(x, w.detach(), layer), device, warmup,
                                                  repeats)
                out = impl.forward(xs, w, layer)  # with a graph, for the autograd implementations
                row["backward_s"] = median_seconds(lambda: impl.backward(grad, xs, w, out, layer), device,
                                                   warmup, repeats)
                row["note"] = ""
            except Exception as error:  # noqa: BLE001 - a failing implementation is a row, not the end of the run
                row["note"] = f"failed: {error_summary(error)}"
            log(f"  {layer.name:15s} {impl.name:48s} " + (row["note"] or
                f"forward {row['forward_s'] * 1e6:9.1f} us, backward {row['backward_s'] * 1e6:9.1f} us"))
            rows.append(row)
            out = None
    return rows


# --------------------------------------------------------------------------- the training step

def _rednet50() -> torch.nn.Module:
    from involution_ops import RedNet

    return RedNet(50, num_classes=1000)


def _resnet50() -> torch.nn.Module:
    import torchvision

    return torchvision.models.resnet50()


TRAINING_MODELS: tuple[tuple[str, Callable[[], torch.nn.Module]], ...] = (
    ("RedNet-50 (involution_ops)", _rednet50), ("ResNet-50 (torchvision)", _resnet50))


def training_step(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                  bfloat16: bool) -> Callable[[], None]:
    """One call: forward (under bfloat16 autocast if asked), cross-entropy, backward, SGD with momentum."""
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bfloat16):
            loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimiser.step()

    return step


def measure_training(device: torch.device | str, batch: int = 32, size: int = 224, warmup: int = 3,
                     repeats: int = 10, models: Sequence[tuple[str, Callable[[], torch.nn.Module]]] = TRAINING_MODELS,
                     precisions: Sequence[str] = ("float32", "bfloat16 autocast"), classes: int = 1000,
                     log: Callable[[str], None] = print) -> list[dict]:
    """One row per (model, precision): median seconds of a training step (forward, cross-entropy,
    backward, SGD with momentum) and, on CUDA, torch.cuda.max_memory_allocated over one step."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=gen).to(device)
    labels = torch.randint(0, classes, (batch,), generator=gen).to(device)
    rows = []
    for name, build in models:
        for precision in precisions:
            row: dict[str, Any] = {"model": name, "precision": precision, "batch": batch, "size": size, "note": ""}
            step = None
            try:
                torch.manual_seed(0)
                step = training_step(build().to(device).train(), images, labels, precision != "float32")
                row["step_s"] = median_seconds(step, device, warmup, repeats)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                    torch.cuda.reset_peak_memory_stats(device)
                    step()
                    torch.cuda.synchronize(device)
                    row["peak_bytes"] = torch.cuda.max_memory_allocated(device)
            except ImportError as error:
                row["note"] = f"not available: {error}"
            except Exception as error:  # noqa: BLE001 - one model failing is a row
                row["note"] = f"failed: {error_summary(error)}"
            log(f"  {name:28s} {precision:18s} " + (row["note"] or f"{row['step_s'] * 1e3:8.1f} ms"))
            rows.append(row)
            step = None  # frees the model before the next one is built
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows
