"""Converters from the official RedNet checkpoints to this project's layouts.

Sources (all read without unpickling arbitrary objects, see `safe_load`):

* ``imagenet``: official mmcls ImageNet checkpoint (``backbone.*``, ``head.fc.*``).
* ``paddleclas``: PaddleClas ``RedNet*_pretrained.pdparams`` (the same tensors under
  Paddle names: BN ``_mean``/``_variance``, ``fc.weight`` stored (in, out), no
  ``num_batches_tracked``).
* ``mmdet`` / ``mmseg``: official mmdet 2.x / mmseg 0.x RedNet detectors and
  segmentors. mmdet 3.x and mmseg 1.x kept the state-dict keys of these models
  (FPN, RPN/RetinaNet heads, RoI heads, FPN/UPer heads) and our involution neck
  and heads keep the official names, so tensors pass unchanged; what changed is
  the metadata: ``meta['CLASSES']`` / ``meta['PALETTE']`` became
  ``meta['dataset_meta'] = {'classes': ..., 'palette': ...}``. The 2.x config
  text, optimizer state and anything not a tensor are dropped.

Output files are ``{'state_dict': ..., 'meta': ...}``. An ImageNet backbone file has
*no prefix* (``stem.0.conv.weight``...): mmengine's ``Pretrained`` init loads
``state_dict`` into the module that carries the ``init_cfg`` (the backbone) and
strips nothing, and the same file loads with ``RedNet(depth).load_state_dict``.
Detector/segmentor files keep the full-model keys (``backbone.*``, ``neck.*``...)
for ``load_from`` / ``--ckpt``.

Every conversion is checked against the target layout; a missing, unexpected or
mis-shaped tensor raises `CheckpointMismatchError` naming the keys.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .rednet import STAGE_BLOCKS, RedNet

__all__ = [
    "CheckpointMismatchError",
    "rednet_shapes",
    "infer_rednet_arch",
    "StateDictDiff",
    "state_dict_diff",
    "check_state_dict",
    "convert_imagenet",
    "convert_paddleclas",
    "convert_legacy_openmmlab",
    "model_shapes_from_config",
    "same_file",
    "save_checkpoint",
]

Shapes = Mapping[str, Sequence[int]]  # key -> shape (torch.Size or a tuple)
_LISTED = 12
# Top-level modules of the official models (mmdet 2.x / mmseg 0.x names, unchanged in 3.x / 1.x).
_MM_MODULES = {
    "mmdet": ("backbone", "neck", "rpn_head", "roi_head", "bbox_head"),
    "mmseg": ("backbone", "neck", "decode_head", "auxiliary_head"),
}


class CheckpointMismatchError(ValueError):
    """The tensors of a checkpoint do not fit the target model layout."""


def _listing(names: list[str], listed: int = _LISTED) -> str:
    shown = ", ".join(names[:listed])
    return shown + (f" ... ({len(names) - listed} more)" if len(names) > listed else "")


@dataclass(frozen=True)
class StateDictDiff:
    """How a state dict differs from a model's key -> shape layout (each list sorted)."""

    missing: list[str]
    unexpected: list[str]
    misshaped: list[str]  # the keys whose shapes differ
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]  # mis-shaped key -> (found, expected)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.misshaped)

    @property
    def count(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.misshaped)

    def describe(self, listed: int = _LISTED) -> str:
        """``missing N: a, b ...; unexpected M: ...; mis-shaped K: key (found) (expected ...)``."""
        problems = []
        if self.missing:
            problems.append(f"missing {len(self.missing)}: {_listing(self.missing, listed)}")
        if self.unexpected:
            problems.append(f"unexpected {len(self.unexpected)}: {_listing(self.unexpected, listed)}")
        if self.misshaped:
            shown = [f"{k} {self.shapes[k][0]} (expected {self.shapes[k][1]})" for k in self.misshaped]
            problems.append(f"mis-shaped {len(shown)}: {_listing(shown, listed)}")
        return "; ".join(problems)


def state_dict_diff(state: Mapping[str, Any], expected: Shapes) -> StateDictDiff:
    """Compare the keys and shapes of ``state`` (tensors) with ``expected`` (key -> shape)."""
    both = set(state) & set(expected)
    misshaped = sorted(k for k in both if tuple(state[k].shape) != tuple(expected[k]))
    return StateDictDiff(
        missing=sorted(set(expected) - set(state)),
        unexpected=sorted(set(state) - set(expected)),
        misshaped=misshaped,
        shapes={k: (tuple(state[k].shape), tuple(expected[k])) for k in misshaped},
    )


def check_state_dict(state: Mapping[str, torch.Tensor], expected: Shapes, what: str) -> None:
    """Raise `CheckpointMismatchError` unless ``state`` has exactly the keys and shapes of ``expected``."""
    diff = state_dict_diff(state, expected)
    if diff:
        raise CheckpointMismatchError(
            f"{what} does not match the target layout; " + diff.describe()
            + ". Check that the file is the kind of checkpoint you named and that the model settings agree."
        )


def rednet_shapes(depth: int, stem_kernel_size: int = 3, num_classes: int = 0) -> dict[str, torch.Size]:
    """Key -> shape of our RedNet (= the official mmcls backbone keys), built on the meta device."""
    with torch.device("meta"):
        model = RedNet(depth, num_classes=num_classes, stem_kernel_size=stem_kernel_size)
    return {k: v.shape for k, v in model.state_dict().items()}


def infer_rednet_arch(state: Mapping[str, torch.Tensor], what: str = "the checkpoint") -> tuple[int, int]:
    """(depth, stem involution kernel size) of a RedNet state dict without prefix."""
    blocks = []
    for stage in range(1, 5):
        pattern = re.compile(rf"layer{stage}\.(\d+)\.")
        blocks.append(len({m.group(1) for k in state if (m := pattern.match(k))}))
    depth = next((d for d, counts in STAGE_BLOCKS.items() if tuple(blocks) == counts), None)
    if depth is None:
        known = ", ".join(f"{d}: {c}" for d, c in STAGE_BLOCKS.items())
        raise CheckpointMismatchError(
            f"{what}: blocks per stage {tuple(blocks)} match no RedNet depth ({known}); "
            "is it a RedNet checkpoint of the kind you named?"
        )
    generator, reducer = state.get("stem.1.conv2.conv.weight"), state.get("stem.1.conv1.conv.weight")
    if generator is None or reducer is None:
        raise CheckpointMismatchError(f"{what}: missing the stem involution (stem.1.conv1/conv2.conv.weight)")
    groups = max(reducer.shape[1] // 16, 1)
    kernel = math.isqrt(generator.shape[0] // groups)
    if kernel * kernel * groups != generator.shape[0]:
        raise CheckpointMismatchError(
            f"{what}: stem.1.conv2.conv.weight has {generator.shape[0]} outputs, not K*K*{groups} for any K"
        )
    return depth, kernel


def _state_dict_of(checkpoint: Mapping[str, Any], what: str) -> dict[str, torch.Tensor]:
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping):
        raise CheckpointMismatchError(f"{what}: 'state_dict' is a {type(state).__name__}, not a mapping")
    not_tensors = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise CheckpointMismatchError(f"{what}: entries that are not tensors: {_listing(not_tensors)}")
    # Checkpoints saved from DataParallel/DistributedDataParallel prefix every key.
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _plain_meta(meta: Any) -> dict[str, Any]:
    """Keep only str/int/float/bool entries: loadable with weights_only, no 2.x objects."""
    if not isinstance(meta, Mapping):
        return {}
    return {k: v for k, v in meta.items() if isinstance(k, str) and isinstance(v, (str, int, float, bool))}


def _rednet_result(state: dict[str, torch.Tensor], keep_head: bool, what: str, source: str) -> dict[str, Any]:
    depth, stem_kernel = infer_rednet_arch(state, what)
    head = {k for k in state if k.startswith("fc.")}
    if keep_head and not head:
        raise CheckpointMismatchError(f"{what}: --keep-head asked for the classifier, but it has no fc weights")
    classes_from = state.get("fc.bias", state.get("fc.weight"))
    num_classes = classes_from.shape[0] if keep_head and classes_from is not None else 0
    if not keep_head:
        state = {k: v for k, v in state.items() if k not in head}
    check_state_dict(state, rednet_shapes(depth, stem_kernel, num_classes), what)
    meta = {
        "source": source,
        "arch": {"depth": depth, "stem_kernel_size": stem_kernel, "num_classes": num_classes},
        "note": "RedNet backbone without prefix; use as init_cfg=dict(type='Pretrained', checkpoint=...) "
        "or RedNet(depth, ...).load_state_dict(file['state_dict'])",
    }
    return {"state_dict": OrderedDict(sorted(state.items())), "meta": meta}


def convert_imagenet(checkpoint: Mapping[str, Any], keep_head: bool = False, what: str = "the checkpoint") -> dict[str, Any]:
    """Official mmcls ImageNet checkpoint -> backbone file (``fc`` too with ``keep_head``)."""
    state = _state_dict_of(checkpoint, what)
    converted, unexpected = {}, []
    for key, value in state.items():
        if key.startswith("backbone."):
            converted[key[len("backbone."):]] = value
        elif key.startswith("head.fc."):
            converted["fc." + key[len("head.fc."):]] = value
        else:
            unexpected.append(key)
    if not any(k.startswith("stem.") for k in converted):
        raise CheckpointMismatchError(
            f"{what} has no 'backbone.*' tensors, so it is not an mmcls RedNet checkpoint "
            f"(first keys: {_listing(sorted(state)[:5])}); for a PaddleClas file use the 'paddleclas' source"
        )
    if unexpected:
        raise CheckpointMismatchError(f"{what}: unexpected {len(unexpected)} outside backbone/head.fc: {_listing(sorted(unexpected))}")
    return _rednet_result(converted, keep_head, what, "official mmcls ImageNet checkpoint")


def convert_paddleclas(params: Mapping[str, Any], keep_head: bool = False, what: str = "the .pdparams file") -> dict[str, Any]:
    """PaddleClas RedNet parameters (name -> numpy array) -> backbone file."""
    import numpy as np

    # Some Paddle versions pickle a tensor as (parameter name, array).
    params = {
        k: v[1] if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) else v for k, v in params.items()
    }
    not_arrays = sorted(k for k, v in params.items() if not isinstance(v, np.ndarray))
    if not_arrays:
        raise CheckpointMismatchError(f"{what}: entries that are not arrays: {_listing(not_arrays)}")
    state: dict[str, torch.Tensor] = {}
    for key, array in params.items():
        name = re.sub(r"\._mean$", ".running_mean", re.sub(r"\._variance$", ".running_var", key))
        tensor = torch.from_numpy(np.ascontiguousarray(array)).clone()
        if name == "fc.weight":
            if tensor.dim() != 2:
                raise CheckpointMismatchError(f"{what}: fc.weight has shape {tuple(tensor.shape)}, expected 2-D")
            tensor = tensor.t().contiguous()  # Paddle's Linear stores (in, out)
        state[name] = tensor
    for key in [k for k in state if k.endswith(".running_mean")]:
        state[key[: -len("running_mean")] + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return _rednet_result(state, keep_head, what, "PaddleClas RedNet .pdparams")


def convert_legacy_openmmlab(
    checkpoint: Mapping[str, Any],
    framework: str,
    reference: Shapes | None = None,
    what: str = "the checkpoint",
) -> dict[str, Any]:
    """Official mmdet 2.x / mmseg 0.x RedNet model -> mmdet 3.x / mmseg 1.x checkpoint.

    The backbone is always checked against RedNet's layout; ``reference`` (the
    target model's key -> shape, see `model_shapes_from_config`) checks the rest.
    """
    if framework not in ("mmdet", "mmseg"):
        raise ValueError(f"framework must be 'mmdet' or 'mmseg', got {framework!r}")
    state = _state_dict_of(checkpoint, what)
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    if not backbone:
        raise CheckpointMismatchError(
            f"{what} has no 'backbone.*' tensors, so it is not an {framework} model checkpoint "
            f"(first keys: {_listing(sorted(state)[:5])})"
        )
    foreign = sorted(k for k in state if k.split(".", 1)[0] not in _MM_MODULES[framework])
    if foreign:
        raise CheckpointMismatchError(
            f"{what}: unexpected {len(foreign)} outside the modules of an {framework} model "
            f"({', '.join(_MM_MODULES[framework])}): {_listing(foreign)}"
        )
    depth, stem_kernel = infer_rednet_arch(backbone, f"{what} (backbone)")
    check_state_dict(backbone, rednet_shapes(depth, stem_kernel), f"{what} (backbone)")
    if reference is not None:
        check_state_dict(state, reference, what)

    old_meta = checkpoint.get("meta", {}) if isinstance(checkpoint.get("meta", {}), Mapping) else {}
    meta: dict[str, Any] = {
        "source": f"official {'mmdet 2.x' if framework == 'mmdet' else 'mmseg 0.x'} RedNet checkpoint",
        "arch": {"depth": depth, "stem_kernel_size": stem_kernel},
        "source_meta": _plain_meta(old_meta),
    }
    dataset_meta = {}
    if old_meta.get("CLASSES") is not None:
        dataset_meta["classes"] = tuple(str(c) for c in old_meta["CLASSES"])
    if old_meta.get("PALETTE") is not None:
        dataset_meta["palette"] = [[int(v) for v in colour] for colour in old_meta["PALETTE"]]
    if dataset_meta:
        meta["dataset_meta"] = dataset_meta
    return {"state_dict": OrderedDict(state), "meta": meta}


def model_shapes_from_config(config_path: str, framework: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the mmdet 3.x / mmseg 1.x model a config builds (needs OpenMMLab); shapes
    only, so no pretrained file is ever read."""
    from .bench.mmconfig import load_config, model_shapes

    return model_shapes(load_config(config_path).model, framework)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same path, a symbolic link to it, or a hard link (inode)."""
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


def save_checkpoint(converted: Mapping[str, Any], out: str | os.PathLike, force: bool = False,
                    inputs: tuple[str | os.PathLike, ...] = ()) -> None:
    """Write atomically; an existing file is kept unless ``force``, and one of ``inputs`` (the files
    the conversion read) is never written over, ``force`` or not."""
    out = os.fspath(out)
    for source in inputs:
        if same_file(source, out):
            raise FileExistsError(overwrite_input_message(source, out))
    if os.path.exists(out) and not force:
        raise FileExistsError(f"'{out}' already exists; choose another output path or pass --force to replace it")
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".converting-", suffix=".pth")
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's mode
    try:
        torch.save(dict(converted), temporary)
        os.replace(temporary, out)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def overwrite_input_message(source: str | os.PathLike, out: str | os.PathLike) -> str:
    link = "" if os.path.abspath(source) == os.path.abspath(out) else " (through a link)"
    return (f"'{out}' is the input file '{source}' itself{link}; a conversion never writes over its input, "
            f"--force or not. Fix: give another output path, e.g. '{_converted_name(out)}'")


def _converted_name(path: str | os.PathLike) -> str:
    root, ext = os.path.splitext(os.fspath(path))
    return f"{root}_converted{ext or '.pth'}"
