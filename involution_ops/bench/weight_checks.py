"""Checks of user-given weights against the model a config builds, before anything trains.

* `read_checkpoint`: a weights-only load (involution_ops.safe_load) whose every failure is one
  `WeightsError` naming the file and the fix: missing, unreadable (text, truncated) or unsafe.
* `pretrained_problem`: PRETRAINED / a config's ``Pretrained`` init_cfg against the module it
  initialises, after the key handling of mmengine's ``Pretrained`` init (`pretrained_targets`).
* `fit_diff` / `fit_message`: a checkpoint to evaluate (CKPT) against every tensor of a whole model,
  and what its own meta says it was trained as (`named_config`); callers use them through
  involution_ops.bench.preflight.checkpoint_fit, the one checkpoint-fits-model check.

Model layouts come from building the model on the meta device (no memory, no initialisation:
involution_ops.bench.mmconfig.model_shapes).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from involution_ops.conversion import StateDictDiff, state_dict_diff

from .mmconfig import PretrainedInit, pretrained_inits
from .preflight.errors import PreflightError

# Tensors an ImageNet RedNet (3x3 stem involution) cannot give the 7x7-stem detection and
# segmentation backbones: the stem's kernel-generating conv keeps its initialisation, as in the
# official runs (README, "Real COCO and Cityscapes").
STEM_GENERATOR = ("stem.1.conv2.conv.weight", "stem.1.conv2.conv.bias")
CONVERT_COMMANDS = ("`python scripts/convert_checkpoint.py paddleclas RedNet50_pretrained.pdparams OUT.pth` "
                    "(PaddleClas weights) or `python scripts/convert_checkpoint.py imagenet MMCLS.pth OUT.pth` "
                    "(an official mmcls checkpoint)")
_LISTED = 5


class WeightsError(PreflightError, ValueError):
    """A weights file that cannot be used; the message names the file and the fix."""


@dataclass
class Checkpoint:
    path: str
    raw: dict[str, Any]  # the tensors of its state dict, keys as stored
    meta: dict[str, Any]

    @property
    def state(self) -> dict[str, Any]:
        """The tensors as mmengine's loader sees them: a DataParallel ``module.`` prefix stripped."""
        return {re.sub(r"^module\.", "", k): v for k, v in self.raw.items()}


def read_checkpoint(path: str, what: str) -> Checkpoint:
    """Load ``path`` weights-only; ``what`` names it in messages (e.g. ``PRETRAINED=...``)."""
    from involution_ops.safe_load import load_torch_file

    if not Path(path).is_file():
        raise WeightsError(f"{what}: no such file. Fix: check the path")
    try:
        loaded = load_torch_file(path)
    except (ValueError, OSError) as error:  # UnsafeFileError, UnreadableFileError, permissions
        raise WeightsError(f"{what}: {error}") from None
    if not isinstance(loaded, dict):
        raise WeightsError(f"{what}: holds a {type(loaded).__name__}, not a checkpoint dict. Fix: save the "
                           f"model's state_dict (torch.save(model.state_dict(), path))")
    state = loaded.get("state_dict", loaded)
    if not isinstance(state, dict):
        raise WeightsError(f"{what}: its 'state_dict' is a {type(state).__name__}, not a dict of tensors")
    import torch

    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsError(f"{what}: holds no tensors (keys: {', '.join(map(str, list(state)[:5]))}). "
                           f"Fix: give a checkpoint file, e.g. one written by scripts/convert_checkpoint.py")
    meta = loaded.get("meta") if isinstance(loaded.get("meta"), dict) else {}
    return Checkpoint(path, tensors, meta)


# ---------------------------------------------------------------- model layouts



def _ignorable(diff: StateDictDiff) -> StateDictDiff:
    """The diff without missing BN step counters, which no evaluation or fine-tuning reads."""
    missing = [k for k in diff.missing if not k.endswith("num_batches_tracked")]
    return StateDictDiff(missing, diff.unexpected, diff.misshaped, diff.shapes)


# ---------------------------------------------------------------- PRETRAINED

PretrainedTarget = PretrainedInit  # a module that a Pretrained init loads, and from which file


def pretrained_targets(model_cfg: Any, pretrained: str | None) -> list[PretrainedTarget]:
    """The modules that a ``Pretrained`` init_cfg loads, as the run's config sets them up:
    PRETRAINED replaces the init_cfg of a RedNet backbone; otherwise the config's own ones count."""
    backbone = model_cfg.get("backbone") or {}
    if pretrained and backbone.get("type") == "RedNet":
        return [PretrainedTarget("model.backbone", backbone, pretrained, None)]
    return pretrained_inits(model_cfg)


def state_for_prefix(checkpoint: Checkpoint, prefix: str | None) -> dict[str, Any]:
    """What mmengine's ``Pretrained`` init loads: with a prefix the stored keys under ``prefix.``
    without it (``_load_checkpoint_with_prefix``), else every key, ``module.`` stripped."""
    if not prefix:
        return checkpoint.state
    prefix = prefix if prefix.endswith(".") else prefix + "."
    return {k[len(prefix):]: v for k, v in checkpoint.raw.items() if k.startswith(prefix)}


def _layout_hint(state: dict[str, Any]) -> str:
    keys = list(state)
    if keys and all(k.startswith("backbone.") for k in keys):
        return (" Its keys start with 'backbone.': a whole classifier or detector checkpoint, not a "
                "backbone file.")
    if any(k.endswith(("._mean", "._variance")) for k in keys):
        return " Its keys have Paddle names (_mean, _variance): a PaddleClas file that was not converted."
    if "conv1.weight" in state and "layer1.0.conv2.weight" in state:
        return " It looks like a ResNet state dict (conv1, layer1.0.conv2), not RedNet."
    return ""


def pretrained_problem(checkpoint: Checkpoint, target: PretrainedTarget, shapes: dict[str, tuple],
                       config_name: str) -> tuple[str | None, str | None]:
    """(error, note) for loading ``checkpoint`` into the module ``target`` describes.

    Refused: any missing or mis-shaped tensor, except the stem's kernel generator when an
    ImageNet RedNet (3x3 stem) initialises a 7x7-stem backbone; that one is a note, as are
    tensors the module does not have (mmengine ignores them).
    """
    state = state_for_prefix(checkpoint, target.prefix)
    what = f"pretrained weights {checkpoint.path} (for {target.where} of {config_name}"
    what += f", prefix '{target.prefix}')" if target.prefix else ")"
    if not state:
        return (f"{what} hold no tensor under the prefix '{target.prefix}'. Fix: set the init_cfg prefix to the "
                f"one the file uses or convert it with {CONVERT_COMMANDS}"), None
    diff = _ignorable(state_dict_diff(state, shapes))
    # the documented exception only: a smaller (3x3) stem kernel generator than the backbone's (7x7)
    stem_only = set(diff.misshaped) <= set(STEM_GENERATOR) and all(
        diff.shapes[k][0][0] < diff.shapes[k][1][0] for k in diff.misshaped)
    if diff.missing or not stem_only:
        refused = StateDictDiff(diff.missing, diff.unexpected, diff.misshaped, diff.shapes)
        return (f"{what} do not fit that {target.module_cfg.get('type', 'module')}: {refused.describe(_LISTED)}."
                f"{_layout_hint(state)} Training would start from a partly random backbone. Fix: give ImageNet "
                f"RedNet weights of the backbone's depth, converted with {CONVERT_COMMANDS}"), None
    notes = []
    if diff.misshaped:
        found, expected = diff.shapes[diff.misshaped[0]]
        notes.append(f"{', '.join(diff.misshaped)} keep their initialisation: the file's stem kernel generator "
                     f"has {found[0]} outputs, the backbone's {expected[0]} (an ImageNet RedNet's 3x3 stem "
                     f"involution into the 7x7 detection/segmentation stem, as in the official runs; CFG_OPTIONS="
                     f"model.backbone.stem_kernel_size=3 loads it fully)")
    if diff.unexpected:
        notes.append(f"{len(diff.unexpected)} tensors the module does not have are ignored "
                     f"({', '.join(diff.unexpected[:_LISTED])}{' ...' if len(diff.unexpected) > _LISTED else ''})")
    return None, (f"{what}: " + "; ".join(notes)) if notes else None


# ---------------------------------------------------------------- CKPT

_TIMESTAMP = re.compile(r"_\d{8}_\d{6}$")
_MODULES = ("backbone", "neck", "rpn_head", "bbox_head", "mask_head", "decode_head")
_TYPE = re.compile(r"\btype\s*=\s*'([\w.]+)'")


def _module_type(text: str, module: str) -> str | None:
    """The ``type`` of the first ``<module>=dict(...)`` in a config text, at that dict's own level
    (mmengine's pretty text sorts keys, so ``type`` may come after nested dicts)."""
    match = re.search(rf"\b{module}\s*=\s*dict\(", text)
    if not match:
        return None
    depth, start = 1, match.end()
    for index in range(start, len(text)):
        char = text[index]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return None
        elif depth == 1 and text.startswith("type", index):
            found = _TYPE.match(text, index)
            if found and (index == 0 or not (text[index - 1].isalnum() or text[index - 1] == "_")):
                return found.group(1)
    return None


def named_config(meta: dict[str, Any]) -> str:
    """What a checkpoint's own meta says about its config, e.g. "experiment 'x' (config x; neck InvolutionFPN)".

    The config text in the meta is only searched, never executed."""
    parts = []
    experiment = meta.get("experiment_name")
    if isinstance(experiment, str) and experiment:
        parts.append(f"config {_TIMESTAMP.sub('', experiment)} (experiment {experiment})")
    text = meta.get("cfg")
    if isinstance(text, str):
        seen = {m: kind for m in _MODULES if (kind := _module_type(text, m))}
        if seen:
            parts.append("its config text builds " + ", ".join(f"{m} {k}" for m, k in seen.items()))
    return "; ".join(parts) if parts else "its meta names no config"


def fit_diff(checkpoint: Checkpoint, shapes: dict[str, tuple]) -> StateDictDiff:
    """Every tensor of the checkpoint against a whole model (missing BN counters aside)."""
    return _ignorable(state_dict_diff(checkpoint.state, shapes))


def fit_message(checkpoint: Checkpoint, config_name: str, diff: StateDictDiff, label: str = "CKPT=") -> str:
    return (f"{label}{checkpoint.path} does not fit {config_name}: {diff.describe(_LISTED)}. "
            f"The checkpoint's meta: {named_config(checkpoint.meta)}.")
