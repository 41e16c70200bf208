"""One pair measured: inference per option and training steps with the involution kernel map
recomputed and kept, the two models interleaved, each option checked against eager first;
then one untimed call each under the peak-memory probe."""
from __future__ import annotations

import copy
import gc
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..cells import error_summary, fmt_ratio
from .builders import BuiltModel
from .memory import PeakMemory
from .timing import Timer, interleave, ratio, summarise, wall_and_cpu_timer

INFERENCE_OPTIONS = ("eager", "fuse_conv_bn", "channels_last", "compile")
TRAINING_OPTIONS = ("recompute", "keep")  # the involution kernel map: regenerated in backward / kept


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


def inference_variant(built: BuiltModel, option: str) -> tuple[nn.Module, Any]:
    """(model, batch) of an inference option; the model in eval mode."""
    model = built.model.eval()
    batch = built.infer_batch
    if option == "eager":
        return model, batch
    if option == "fuse_conv_bn":
        return fuse_conv_bn(model).eval(), batch
    if option == "channels_last":
        return copy.deepcopy(model).to(memory_format=torch.channels_last).eval(), built.to_channels_last(batch)
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


def measure_pair(model: BuiltModel, baseline: BuiltModel, device: torch.device, repeats: int, warmup: int,
                 inference_options: Sequence[str] = INFERENCE_OPTIONS, train: bool = True,
                 timer: Timer | None = None, log: Callable[[str], None] = print) -> dict:
    """Inference per option and training with the kernel map recomputed / kept, the two
    models interleaved; then one untimed call each under the peak-memory probe."""
    timer = timer or wall_and_cpu_timer(device)
    result: dict[str, Any] = {"inference": {}, "training": {}}
    references = {}
    with torch.no_grad():
        for built in (model, baseline):
            references[built.name] = (built.check or built.forward)(built.model.eval(), built.infer_batch)
    for option in inference_options:
        entry: dict[str, Any] = {}
        try:
            variants = {s.name: (s, *inference_variant(s, option)) for s in (model, baseline)}
            with torch.no_grad():
                for name, (built, net, batch) in variants.items():  # first call: compiles, and is checked
                    output = built.forward(net, batch)
                    if built.check is not None:
                        output = built.check(net, batch)
                    difference = max_relative_difference(references[name], output)
                    if not difference < 1e-3:
                        raise RuntimeError(f"{name}: output differs from eager by {difference:.2e} (relative)")
                tasks = {name: (lambda s=built, n=net, b=batch: s.forward(n, b))
                         for name, (built, net, batch) in variants.items()}
                samples = interleave(tasks, repeats, warmup, timer)
                for key, built in (("model", model), ("baseline", baseline)):
                    entry[key] = summarise(samples[built.name], built.images["infer"])
                    if option != "compile" or device.type == "cuda":  # the CPU probe does not trace compiled code
                        net, batch = variants[built.name][1:]
                        with PeakMemory(device) as memory:
                            built.forward(net, batch)
                        entry[key]["peak_mib"] = memory.mib
            entry["ratio"] = ratio(entry["model"]["median_ms"], entry["baseline"]["median_ms"])
        except Exception as exc:  # one option failing (e.g. compile on this platform) is a result, not a crash
            entry = {"error": error_summary(exc)}
        log(f"  inference {option:14s} {_describe(entry)}")
        result["inference"][option] = entry
        variants = None
        gc.collect()
    if train:
        result["training"] = _measure_training(model, baseline, device, repeats, warmup, timer, log)
    return result


def _measure_training(model: BuiltModel, baseline: BuiltModel, device: torch.device, repeats: int, warmup: int,
                      timer: Timer, log: Callable[[str], None]) -> dict:
    optimisers = {}
    for built in (model, baseline):
        built.model.train()
        params = [p for p in built.model.parameters() if p.requires_grad]
        optimisers[built.name] = torch.optim.SGD(params, lr=1e-6, momentum=0.9)

    def step(built: BuiltModel, recompute: bool | None) -> None:
        if recompute is not None:
            _set_recompute(built.model, recompute)
        optimiser = optimisers[built.name]
        optimiser.zero_grad(set_to_none=True)
        built.loss(built.model, built.train_batch).backward()
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
        entry = {"error": error_summary(exc)}
        log(f"  training  {_describe(entry)}")
    finally:
        _set_recompute(model.model, True)
        for built in (model, baseline):
            built.model.zero_grad(set_to_none=True)
            built.model.eval()
    return entry


def _describe(entry: dict) -> str:
    if "error" in entry:
        return f"failed: {entry['error']}"
    m, b = entry["model"], entry["baseline"]
    text = f"{m['median_ms']:9.1f} ms vs {b['median_ms']:9.1f} ms  ratio {fmt_ratio(entry['ratio'])}"
    if m.get("peak_mib") is not None and b.get("peak_mib") is not None:
        text += f" | peak {m['peak_mib']:8.1f} vs {b['peak_mib']:8.1f} MiB"
    return text
