"""OpenMMLab config-tree helpers, in one place: walking a config (its dicts, the datasets behind
dataset wrappers, the ``Pretrained`` init configs), CFG_OPTIONS (mmengine's ``--cfg-options``
syntax) and building a model from a config.

Imports mmengine / mmdet / mmseg only inside the functions that need them.
"""
from __future__ import annotations

import copy
import importlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

SCOPES = ("mmdet", "mmseg")  # the OpenMMLab packages (and registry scopes) the benchmark builds in
DEFAULT_SCOPE = "mmdet"  # a config without default_scope builds in mmdet's registries
SPLITS = ("train", "val", "test")  # the dataloaders of a config: <split>_dataloader
# Checkpoint locations that mmengine downloads itself: nothing on disk to check before a run.
REMOTE_PREFIXES = ("http://", "https://", "torchvision://", "open-mmlab://", "mmcls://", "s3://", "pavi://")


# ---------------------------------------------------------------- walking a config tree

def config_dicts(node: Any, path: str = "model") -> Iterator[tuple[str, dict]]:
    """Every dict in a config tree, depth first, with its dotted path (``model.neck.0.norm_cfg``)."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from config_dicts(value, f"{path}.{key}")
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from config_dicts(value, f"{path}.{index}")


def scope_of(cfg: Any) -> str:
    """The registry scope a config's model builds in."""
    return cfg.get("default_scope", DEFAULT_SCOPE)


def wrapped_datasets(loader_cfg: Any) -> Iterator[dict]:
    """The dataset dicts of a dataloader config, outermost first, through dataset wrappers
    (RepeatDataset, ClassBalancedDataset... hold the real dataset under ``dataset``)."""
    dataset = loader_cfg.get("dataset") if loader_cfg else None
    while dataset is not None:
        yield dataset
        dataset = dataset.get("dataset") if "dataset" in dataset else None


def inner_dataset(loader_cfg: Any) -> dict | None:
    """The dataset a dataloader reads in the end (inside every wrapper), or None."""
    found = None
    for found in wrapped_datasets(loader_cfg):
        pass
    return found


def split_datasets(cfg: Any) -> list[tuple[str, dict]]:
    """(split, inner dataset) of each of the config's train / val / test dataloaders."""
    found = []
    for split in SPLITS:
        dataset = inner_dataset(cfg.get(f"{split}_dataloader"))
        if dataset is not None:
            found.append((split, dataset))
    return found


@dataclass
class PretrainedInit:
    where: str  # config path of the module it initialises, e.g. "model.backbone"
    module_cfg: Any
    checkpoint: str
    prefix: str | None


def pretrained_inits(model_cfg: Any, path: str = "model") -> list[PretrainedInit]:
    """Every ``Pretrained`` init_cfg (with a checkpoint) anywhere in a model config, depth first."""
    found = []
    for where, node in config_dicts(model_cfg, path):
        init = node.get("init_cfg")
        for item in init if isinstance(init, list) else [init]:
            if isinstance(item, dict) and item.get("type") == "Pretrained" and item.get("checkpoint"):
                found.append(PretrainedInit(where, node, item["checkpoint"], item.get("prefix")))
    return found


def without_pretrained(model_cfg: Any) -> Any:
    """A copy of a model config that reads no file when built: every Pretrained init_cfg and string
    ``pretrained`` set to None (the modules keep their own initialisation)."""
    model_cfg = copy.deepcopy(model_cfg)
    for _, node in config_dicts(model_cfg):
        init = node.get("init_cfg")
        if isinstance(init, dict) and init.get("type") == "Pretrained" or isinstance(init, list) and any(
                isinstance(i, dict) and i.get("type") == "Pretrained" for i in init):
            node["init_cfg"] = None
        if "pretrained" in node and isinstance(node["pretrained"], str):
            node["pretrained"] = None
    return model_cfg


# ---------------------------------------------------------------- CFG_OPTIONS

def parse_options(options: list[str]) -> dict[str, Any]:
    """``['a.b=1', ...]`` -> ``{'a.b': 1}`` with mmengine's own parser (what merge_from_dict gets)."""
    from mmengine.config import DictAction

    parsed = SimpleNamespace()  # DictAction only sets the attribute `dest` on it
    DictAction(option_strings=[], dest="cfg_options")(None, parsed, options)
    return parsed.cfg_options


def merge_options(cfg: Any, options: list[str] | dict[str, Any] | None) -> None:
    """Merge ``key=value`` overrides (a list in --cfg-options syntax, or parsed) into cfg."""
    if options:
        cfg.merge_from_dict(parse_options(options) if isinstance(options, list) else options)


# ---------------------------------------------------------------- building

def load_config(path: str | Path, options: list[str] | dict[str, Any] | None = None) -> Any:
    """A config file loaded (its custom_imports run, which registers this package's models), with
    ``options`` merged; mmengine's build-time info logging quietened."""
    from mmengine.config import Config
    from mmengine.logging import MMLogger

    MMLogger.get_current_instance().setLevel(logging.WARNING)  # build-time info is noise here
    cfg = Config.fromfile(str(path))
    merge_options(cfg, options)
    return cfg


def build_model(model_cfg: Any, scope: str) -> Any:
    """The module a model config builds in ``scope``'s registry (mmdet or mmseg); on the current
    torch device, so that ``with torch.device("meta")`` builds it without memory."""
    from mmengine.registry import DefaultScope

    models = importlib.import_module(f"{scope}.registry").MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return models.build(model_cfg)


def model_shapes(model_cfg: Any, scope: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the model a config dict builds, without reading or initialising anything."""
    import torch

    model_cfg = without_pretrained(model_cfg)
    try:
        with torch.device("meta"):
            module = build_model(model_cfg, scope)
    except Exception:  # some constructors compute on CPU tensors; build there then
        module = build_model(model_cfg, scope)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}
