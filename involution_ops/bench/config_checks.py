"""CFG_OPTIONS keys checked against the config before anything is built.

mmengine merges any ``key=value`` into a config, creating keys the config lacks. Such a key is
judged by what will receive it:

* a dict with a ``type`` (a model part, dataset, loop, hook, metric...) or one the Runner turns
  into a known constructor (the train/val/test loops, the dataloaders): a key that no
  ``__init__`` in the class's hierarchy accepts would end in a ``TypeError`` after minutes of
  model building, so it is refused (`ConfigOptionError`) with the keys it does accept. A new key
  the class does accept (``test_dataloader.dataset.indices``) passes silently. Where the class
  takes ``**kwargs`` that end nowhere we can see, it passes with a warning.
* a plain settings dict (``model.test_cfg``, ``env_cfg``...) or the top level: mmengine allows
  new keys there and whatever reads them may silently ignore them, so they pass with a warning
  naming the key and the nearest existing one.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any

from .mmconfig import parse_options
from .preflight.errors import PreflightError

# Top-level keys the Runner (and the training session) read, besides those a config already has.
RUNNER_KEYS = {"model", "work_dir", "train_dataloader", "val_dataloader", "test_dataloader", "train_cfg", "val_cfg",
               "test_cfg", "auto_scale_lr", "optim_wrapper", "param_scheduler", "val_evaluator", "test_evaluator",
               "default_hooks", "custom_hooks", "data_preprocessor", "load_from", "resume", "launcher", "env_cfg",
               "log_processor", "log_level", "visualizer", "default_scope", "randomness", "experiment_name",
               "model_wrapper_cfg", "find_unused_parameters", "runner_type", "custom_imports", "cfg"}
# Dicts without a `type` that the Runner builds with a known constructor.
_LOOP_DEFAULTS = {"val_cfg": "ValLoop", "test_cfg": "TestLoop"}
_DATALOADER_KEYS = ("train_dataloader", "val_dataloader", "test_dataloader")
_IGNORED_BASES = {object}
# Keys the builders take out of a dict before its class sees them, by the config path they sit under.
_BUILDER_KEYS = {
    "optim_wrapper": {"constructor", "paramwise_cfg", "loss_scale", "dtype"},  # + AmpOptimWrapper's (AMP=1)
    "default_hooks": {"priority"}, "custom_hooks": {"priority"},
    "param_scheduler": {"convert_to_iter_based"},
}


class ConfigOptionError(PreflightError, ValueError):
    """A CFG_OPTIONS key the config does not have and the object built from it would refuse."""


def check_cfg_options(cfg: Any, options: list[str]) -> list[str]:
    """Raise `ConfigOptionError` for a refused key (see the module doc); return the warnings."""
    if not options:
        return []
    if cfg.get("default_scope"):
        from mmengine.registry import init_default_scope

        init_default_scope(cfg.default_scope)  # types resolve in mmdet's / mmseg's registries
    warnings = []
    for key in parse_options(options):
        warning = _check_key(cfg, key)
        if warning:
            warnings.append(warning)
    return warnings


def _check_key(cfg: Any, key: str) -> str | None:
    node: Any = cfg._cfg_dict if hasattr(cfg, "_cfg_dict") else cfg
    parts = key.split(".")
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth])
        if isinstance(node, (list, tuple)):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigOptionError(f"CFG_OPTIONS {key}: {where} is a list of {len(node)} items, so '{part}' "
                                        f"is no index of it. Fix: use an index from 0 to {len(node) - 1}")
            node = node[int(part)]
        elif isinstance(node, dict):
            if part not in node:
                return _judge_new_key(node, part, where, key)
            node = node[part]
        else:
            return None  # replacing a value with a dict: mmengine's own merge decides
    return None


def _judge_new_key(parent: dict, part: str, where: str, key: str) -> str | None:
    near = difflib.get_close_matches(part, [str(k) for k in parent], n=1, cutoff=0.6)
    hint = f" (did you mean {where + '.' if where else ''}{near[0]}?)" if near else ""
    if not where:
        if part in RUNNER_KEYS:
            return None
        return (f"CFG_OPTIONS {key}: the config has no top-level key '{part}'{hint}; mmengine adds it, but "
                f"nothing reads it unless it is one of the Runner's keys")
    target = _constructor(parent, where)
    if target is None:
        return (f"CFG_OPTIONS {key}: {where} has no key '{part}'{hint}; mmengine adds it, but whatever reads "
                f"{where} may ignore it. Check the spelling")
    name, accepted, open_ended = target
    if part in accepted or part in _BUILDER_KEYS.get(where.split(".")[0], ()):
        return None
    if open_ended:
        return (f"CFG_OPTIONS {key}: {where} ({name}) has no key '{part}'{hint}; {name} takes **kwargs, so it may "
                f"be accepted or ignored. Check the spelling")
    near = _nearest(part, accepted)
    raise ConfigOptionError(
        f"CFG_OPTIONS {key}: {where} ({name}) has no option '{part}' and {name} would stop with a TypeError "
        f"when it is built; it takes {', '.join(sorted(accepted))}. Fix: "
        + (f"use {where}.{near[0]}=..." if near else "use one of those keys") + " or drop the option")


def _nearest(part: str, names: set[str]) -> list[str]:
    """The accepted name most like ``part``, preferring one with the same first word (max_iter -> max_epochs)."""
    same_start = sorted(n for n in names if n.split("_")[0] == part.split("_")[0])
    return (difflib.get_close_matches(part, same_start, n=1, cutoff=0.3)
            or difflib.get_close_matches(part, sorted(names), n=1, cutoff=0.5))


def _constructor(parent: dict, where: str) -> tuple[str, set[str], bool] | None:
    """(name, accepted keyword names, takes open-ended **kwargs) of what ``parent`` is built into."""
    kind = parent.get("type")
    if where in _DATALOADER_KEYS:
        from torch.utils.data import DataLoader

        accepted, _ = _parameters(DataLoader)
        return "torch DataLoader", accepted | {"sampler", "batch_sampler", "collate_fn", "dataset"}, False
    if kind is None and where == "train_cfg":
        kind = "EpochBasedTrainLoop" if parent.get("by_epoch", False) else "IterBasedTrainLoop"
        found = _resolve(kind)
        if found is None:
            return None
        accepted, open_ended = _parameters(found)
        return kind, (accepted - {"runner", "dataloader"}) | {"by_epoch"}, open_ended
    if kind is None:
        kind = _LOOP_DEFAULTS.get(where)
    if kind is None:
        return None
    found = kind if callable(kind) else _resolve(str(kind))
    if found is None:
        return None
    accepted, open_ended = _parameters(found)
    # Arguments the builders pass themselves: the runner and dataloader of a loop, type itself.
    accepted = (accepted - {"runner", "dataloader"}) | {"type", "_scope_"}
    return getattr(found, "__name__", str(kind)), accepted, open_ended


def _resolve(type_name: str) -> Any:
    """The class or function registered as ``type_name`` in any registry of the current scope."""
    from mmengine.registry import DefaultScope, Registry

    scope = DefaultScope.get_current_instance()
    modules = [f"{scope.scope_name}.registry"] if scope is not None else []
    modules.append("mmengine.registry")
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for registry in vars(module).values():
            if isinstance(registry, Registry):
                try:
                    found = registry.get(type_name)
                except Exception:  # an unknown scope prefix and the like: not this registry
                    found = None
                if found is not None:
                    return found
    return None


def _parameters(target: Any) -> tuple[set[str], bool]:
    """Keyword names any ``__init__`` in a class's hierarchy takes (or a function's), and whether
    the last of them takes **kwargs (then anything may be passed on out of our sight)."""
    import torch

    functions = []
    if inspect.isclass(target):
        for cls in inspect.getmro(target):
            if cls in _IGNORED_BASES or "__init__" not in vars(cls):
                continue
            functions.append(vars(cls)["__init__"])
            if cls is torch.nn.Module:  # takes *args, **kwargs only to refuse them
                break
    else:
        functions.append(target)
    accepted: set[str] = set()
    open_ended = False
    for function in functions:
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            return accepted, True
        accepted |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        open_ended = any(p.kind == p.VAR_KEYWORD for p in parameters)
    if functions and inspect.isclass(target) and vars(torch.nn.Module)["__init__"] is functions[-1]:
        open_ended = False
    accepted.discard("self")
    return accepted, open_ended
