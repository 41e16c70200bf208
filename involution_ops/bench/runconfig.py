"""The one place a run's config is built: the benchmark's settings applied to a model config.

`build_run_config` turns a model config into the config a run trains with (data root,
ImageNet RedNet init, seed, launcher, CPU distributed settings, AMP, CFG_OPTIONS, then the
batch plan) and stores the run's own facts under ``cfg.involution_run``. The launcher checks that
very config, `place_in_run_dir` points it at the run folder and dumps it there as
``config.py``; the training process (involution_ops.bench.run_process) loads that file and
nothing else. `reload_run_config` reads such a file back for RESUME=1 and CKPT evaluation.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .paper_batch import DEFAULT_MODE, BatchPlan, apply_batch_plan, plan_batch
from .config_checks import ConfigOptionError, check_cfg_options
from .manifest import Model
from .output import REPO_ROOT
from .mmconfig import config_dicts, merge_options, parse_options, pretrained_inits, wrapped_datasets
from .preflight.errors import PreflightError

RUN_KEY = "involution_run"  # the run's own facts inside its config (suite, name, dataset, ...)
CONFIG_NAME = "config.py"
LAUNCHED_ENV = "INVOLUTION_LAUNCHED"  # set for the processes scripts/benchmark.py starts (it reports Ctrl-C)
GUARD_IMPORT = "involution_ops.bench.image_guard"


class RunConfigError(PreflightError, ValueError):
    """A config that cannot be built as asked; the message names the problem and the fix."""


@dataclass
class RunSpec:
    """What the launcher asks of one run."""

    model: Model  # the manifest's model; its name (the official config stem) names records and work dirs
    config: Path  # the config it trains with: the model's, or its toy variant on toy data
    dataset: str  # toy | coco | cityscapes
    data_root: Path
    runs_dir: str = "results/runs"
    launcher: str = "none"  # none | pytorch | slurm
    device: str = "cpu"  # where the training processes run: cuda | cpu
    world_size: int = 1
    seed: int = 0
    deterministic: bool = False
    amp: bool = False
    pretrained: str | None = None
    cfg_options: list[str] = field(default_factory=list)
    batch: str = DEFAULT_MODE  # how a run on fewer processes reaches the paper's total batch (bench.paper_batch)


def relative(path: str | Path) -> str:
    """A path as records show it: relative to the checkout when inside it, else absolute."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(REPO_ROOT.resolve()).as_posix()
    except ValueError:
        return str(resolved)


def load_model_config(path: str | Path) -> Any:
    from mmengine.config import Config

    if not Path(path).is_file():
        raise RunConfigError(f"config {relative(path)}: no such file. Fix: give the path of a config .py file")
    try:
        return Config.fromfile(str(path))
    except Exception as error:  # a config that does not parse or import stops the run before it starts
        raise RunConfigError(f"config {relative(path)} does not load: {load_problem(path, error)}") from None


def load_problem(path: str | Path, error: BaseException) -> str:
    """One line naming what is wrong: for a syntax error the file (this one or a _base_ it reads), the
    line and its text; else the error's own message with its lines joined."""
    syntax = _syntax_error(error)
    if syntax is None or not Path(syntax.filename or "").is_file():  # mmengine parses the text without its
        syntax = _first_syntax_error(Path(path)) or syntax           # file name: find the file (or _base_)
    if syntax is not None:
        where = relative(syntax.filename) if Path(syntax.filename or "").is_file() else relative(path)
        text = (syntax.text or "").strip()
        return (f"syntax error in {where} line {syntax.lineno}: {syntax.msg}"
                + (f": {text}" if text else "") + ". Fix: correct that line")
    return " ".join(f"{type(error).__name__}: {error}".split())


def _syntax_error(error: BaseException | None) -> SyntaxError | None:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, SyntaxError) and error.lineno:
            return error
        error = error.__cause__ or error.__context__
    return None


def _first_syntax_error(path: Path, depth: int = 0) -> SyntaxError | None:
    """The first syntax error in a config or the _base_ files it names (read as text, not executed)."""
    import ast

    try:
        source = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as error:
        return error
    if depth > 8:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_base_" for t in node.targets):
            try:
                bases = ast.literal_eval(node.value)
            except ValueError:
                return None
            for base in [bases] if isinstance(bases, str) else bases:
                found = _first_syntax_error(path.parent / base, depth + 1)
                if found is not None:
                    return found
    return None


def build_run_config(spec: RunSpec, warn: Callable[[str], None] = print) -> Any:
    """The config a run of ``spec`` trains with; CFG_OPTIONS are checked, then applied last.

    ``warn`` gets the CFG_OPTIONS warnings (keys mmengine adds that nothing may read)."""
    cfg = load_model_config(spec.config)
    set_data_root(cfg, str(spec.data_root))
    if spec.pretrained and cfg.model.get("backbone", {}).get("type") == "RedNet":
        # ImageNet *RedNet* weights only: the ResNet-50 baselines keep their own init (mmseg would
        # otherwise get both `pretrained` and `init_cfg` and refuse to build)
        cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=spec.pretrained)
    cfg.randomness = dict(seed=spec.seed, deterministic=bool(spec.deterministic))
    apply_launch(cfg, spec.launcher, spec.device)
    if spec.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    apply_options(cfg, spec.cfg_options, spec.config, warn)
    plan = apply_batch(cfg, spec)
    cfg[RUN_KEY] = {**run_facts(spec), "batch": plan.as_record()}
    return cfg


def reload_run_config(path: str | Path, spec: RunSpec, evaluate: bool, warn: Callable[[str], None] = print) -> Any:
    """A run folder's config.py for RESUME=1 (``evaluate`` False) or CKPT evaluation.

    The launch settings of this invocation replace the old ones (GPUS may differ); an evaluation
    reads the data at this invocation's data root; this invocation's CFG_OPTIONS apply last. For a
    resume, options that the checkpoint's state would override are refused (`resume_refusals`); the
    caller writes the result into a new file beside config.py, which stays as it was."""
    cfg = load_model_config(path)
    facts = dict(cfg.get(RUN_KEY) or {})
    refused = [] if evaluate else resume_refusals(spec.cfg_options, cfg, lambda: build_run_config(spec, warn=_quiet))
    if refused:
        raise RunConfigError(
            f"RESUME=1 with CFG_OPTIONS {'; '.join(refused)}: the run would go on with the checkpoint's values "
            f"while its config said otherwise. Fix: drop those options to continue the run as it started, or "
            f"start a new run with them (without RESUME=1)")
    if evaluate:
        set_data_root(cfg, str(spec.data_root))
    apply_launch(cfg, spec.launcher, spec.device)
    apply_options(cfg, spec.cfg_options, Path(path), warn)
    facts.update({k: v for k, v in run_facts(spec).items()
                  if evaluate or k not in ("dataset", "data_root", "source_config")})
    facts.setdefault("source_config", relative(path))
    cfg[RUN_KEY] = facts
    return cfg


def run_facts(spec: RunSpec) -> dict[str, Any]:
    return {"suite": spec.model.suite, "name": spec.model.name, "dataset": spec.dataset,
            "data_root": str(spec.data_root), "source_config": relative(spec.config), "runs_dir": str(spec.runs_dir),
            "world_size": spec.world_size, "device": spec.device}


def apply_options(cfg: Any, options: list[str], source: Path, warn: Callable[[str], None]) -> None:
    try:
        warnings = check_cfg_options(cfg, options)
    except ConfigOptionError as error:
        raise RunConfigError(f"{error} (config {relative(source)})") from None
    for warning in warnings:
        warn(warning)
    try:
        merge_options(cfg, options)
    except Exception as error:
        raise RunConfigError(f"CFG_OPTIONS {' '.join(options)} do not apply: {error}") from error


def apply_launch(cfg: Any, launcher: str, device: str) -> None:
    """The launcher, and what distributed processes on CPUs need: gloo, DDP without device ids,
    BN for SyncBN (DDP refuses SyncBN modules off the GPU)."""
    cfg.launcher = launcher
    if launcher == "none" or device == "cuda":
        return
    cfg.setdefault("env_cfg", {}).setdefault("dist_cfg", {})["backend"] = "gloo"
    if "runner_type" not in cfg:
        cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False,
                                     find_unused_parameters=cfg.get("find_unused_parameters", False))
    changed = sync_bn_to_bn(cfg.model)
    if changed:
        print(f"  no CUDA: SyncBN -> BN in {', '.join(changed)} (each process normalises over its own batch)",
              flush=True)


def sync_bn_to_bn(model_cfg: Any) -> list[str]:
    """Turn every SyncBN norm_cfg into BN in place (SyncBN needs CUDA); the places changed."""
    changed = []
    for path, node in config_dicts(model_cfg):
        if node.get("type") in ("SyncBN", "MMSyncBN"):
            node["type"] = "BN"
            changed.append(path)
    return sorted(set(changed))


def apply_batch(cfg: Any, spec: RunSpec) -> BatchPlan:
    """The paper's total batch on this run's processes (involution_ops.bench.paper_batch), written into
    the config. Planned after CFG_OPTIONS, so that it sees the batch size and lr the run uses;
    iteration counts given there are scaled with the config's (they count the paper's steps)."""
    try:
        plan = plan_batch(cfg, spec.world_size, spec.batch, spec.dataset)
    except ValueError as error:
        raise RunConfigError(f"BATCH={spec.batch}: {error} (config {relative(spec.config)})") from None
    apply_batch_plan(cfg, plan)
    return plan


def batch_plan(cfg: Any) -> BatchPlan | None:
    """The batch plan a run's config was built with, or None (a config from before batch plans)."""
    record = (cfg.get(RUN_KEY) or {}).get("batch")
    return None if BatchPlan.record_problem(record) else BatchPlan.from_record(record)


def place_in_run_dir(cfg: Any, run_dir: str | Path, file_name: str = CONFIG_NAME) -> Path:
    """Point the config at its run folder and dump it there as ``file_name`` (config.py, or a
    resumed session's own file, see `resume_config_name`); the file's path. An existing file is
    never written over.

    The training pipeline's image loader becomes the guard that skips (and logs into the run
    folder) an image that turned unreadable after the pre-flight; `custom_imports` brings the
    guard into any process that loads the file."""
    from .image_guard import guard_train_pipeline

    run_dir = Path(run_dir).resolve()
    cfg.work_dir = str(run_dir)
    stem = Path(cfg[RUN_KEY].get("source_config", cfg[RUN_KEY]["name"])).stem
    cfg.experiment_name = f"{stem}_{time.strftime('%Y%m%d_%H%M%S')}"
    if guard_train_pipeline(cfg, str(run_dir)):
        imports = cfg.setdefault("custom_imports", dict(imports=[], allow_failed_imports=False))
        if GUARD_IMPORT not in imports["imports"]:
            imports["imports"] = [*imports["imports"], GUARD_IMPORT]
    cfg[RUN_KEY]["run_dir"] = relative(run_dir)
    path = run_dir / file_name
    if path.exists():
        raise RunConfigError(f"{relative(path)} exists already; a run's config file is never written over")
    cfg[RUN_KEY]["run_config"] = relative(path)
    cfg.dump(str(path))
    return path


def resume_config_name(run_dir: str | Path) -> str:
    """A new file name beside a run's config.py for a resumed session's config (never an existing one)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(100):
        name = f"config.resume-{stamp}{'' if attempt == 0 else f'-{attempt}'}.py"
        if not (Path(run_dir) / name).exists():
            return name
    raise RunConfigError(f"no free config.resume-*.py name in {run_dir}")


# Options whose value a resumed run would not use: mmengine's Runner.resume loads them back from the
# checkpoint (optimizer.load_state_dict restores every param group's hyper-parameters, each scheduler
# its whole state, the AMP loss scaler its scale), so the config would say one thing and the run do
# another. Prefix (a key or a dotted parent) -> what the checkpoint restores instead.
RESUME_STATE_KEYS = {
    "optim_wrapper.optimizer": "the optimizer's state: lr, momentum, weight_decay (and betas, eps, nesterov...) "
                               "of every parameter group",
    "optim_wrapper.paramwise_cfg": "the optimizer's parameter groups, whose per-group lr and weight decay "
                                   "multipliers were applied when the run started",
    "optim_wrapper.type": "the optimizer wrapper's state (AMP loss scale)",
    "optim_wrapper.loss_scale": "the AMP loss scaler's state",
    "param_scheduler": "each lr/momentum scheduler's state (milestones, gamma, begin, end, base values, step)",
    "auto_scale_lr": "the optimizer's lr, scaled when the run started",
    "randomness.seed": "the random seed (Runner.resume takes the checkpoint's)",
}


def resume_refusals(options: list[str], run_cfg: Any = None, fresh_cfg: Callable[[], Any] | None = None) -> list[str]:
    """The reasons CFG_OPTIONS cannot apply to a resumed run (empty: all can).

    An option the checkpoint's state would override is refused unless it asks for what the run
    already has: the same command again (as the Ctrl-C message suggests it) resumes. Whether it
    does is judged on ``fresh_cfg()``, the config these options build for a new run (batch plan
    included), against ``run_cfg``, the run's config.py."""
    restored = {}
    for key in parse_options(options):
        for prefix, state in RESUME_STATE_KEYS.items():
            if key == prefix or key.startswith(prefix + "."):
                restored[key] = state
                break
    if restored and run_cfg is not None and fresh_cfg is not None:
        fresh = fresh_cfg()
        restored = {key: state for key, state in restored.items()
                    if _value_at(fresh, key) != _value_at(run_cfg, key)}
    return [f"{key} (the checkpoint restores {state})" for key, state in restored.items()]


_MISSING = object()


def _value_at(cfg: Any, dotted: str) -> Any:
    """The value at a CFG_OPTIONS key (`a.b.0.c`) of a config, tuples compared as lists; _MISSING if absent."""
    node = cfg
    for part in dotted.split("."):
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif hasattr(node, "get") and part in node:
            node = node[part]
        else:
            return _MISSING
    return _plain(node)


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, "items"):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _quiet(_: str) -> None:
    """Warnings of a config built only to compare values (the run's own build printed them)."""


def prepare_evaluation(cfg: Any, checkpoint: str | Path) -> None:
    """Evaluate ``checkpoint`` only: it holds every weight, so nothing initialises from ImageNet."""
    cfg.load_from = str(Path(checkpoint).resolve())
    cfg.resume = False
    cfg.model.get("backbone", {}).pop("init_cfg", None)


def set_data_root(cfg: Any, root: str) -> None:
    """Point every dataloader and annotation-file evaluator at `root`."""
    root = root.rstrip("/") + "/"
    old_roots = set()
    for split in ("train", "val", "test"):
        for dataset in wrapped_datasets(cfg.get(f"{split}_dataloader")):
            if "data_root" in dataset:
                old_roots.add(dataset["data_root"])
                dataset["data_root"] = root
    for split in ("val", "test"):
        evaluators = cfg.get(f"{split}_evaluator")
        for evaluator in evaluators if isinstance(evaluators, list) else [evaluators]:
            if evaluator and isinstance(evaluator.get("ann_file"), str):
                for old in old_roots:
                    if evaluator["ann_file"].startswith(old):
                        evaluator["ann_file"] = root + evaluator["ann_file"][len(old):]


def backbone_init_checkpoints(model_cfg: Any) -> list[str]:
    """Checkpoint paths of Pretrained init_cfgs anywhere in the model config."""
    return [init.checkpoint for init in pretrained_inits(model_cfg)]
