"""Pre-flight of user-given weights: PRETRAINED and the configs' own Pretrained files against the
modules they initialise, CKPT against the config it will be evaluated with (the checks themselves:
involution_ops.bench.weight_checks). `checkpoint_fit` is the one test that a checkpoint fits a
whole model, used by the launcher, the CKPT matching and the evaluation process."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import weight_checks
from ..output import REPO_ROOT as REPO
from ..mmconfig import DEFAULT_SCOPE, REMOTE_PREFIXES, model_shapes, scope_of
from .cache import PreflightCache
from .errors import PreflightError

if TYPE_CHECKING:
    from ..launch.options import Job

CONVERT_HINT = ("download PaddleClas' RedNet-50 ImageNet weights "
                "(https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/RedNet50_pretrained.pdparams) and "
                "convert them once with `python scripts/convert_checkpoint.py paddleclas "
                "RedNet50_pretrained.pdparams {path}`, or point PRETRAINED=/path/to/rednet50.pth at weights you have")


def local_path(path: str) -> Path:
    """A weights path as the run reads it: relative paths from the checkout."""
    return Path(path) if Path(path).is_absolute() else REPO / path




def require_pretrained_file(path: str, empty_is_missing: bool = True) -> None:
    """PRETRAINED (or a config's Pretrained checkpoint) must be a local file; ``empty_is_missing``
    False leaves an empty one to `read_weights`, whose message says what is wrong with it."""
    full = local_path(path)
    if not full.is_file() or empty_is_missing and full.stat().st_size == 0:
        raise PreflightError(f"pretrained backbone weights {path} not found. Fix: " + CONVERT_HINT.format(path=path))


def require_checkpoint_file(ckpt: str) -> None:
    """CKPT must be a file."""
    if not Path(ckpt).is_file():
        raise PreflightError(f"CKPT={ckpt}: no such checkpoint file. Fix: give the path of a .pth file "
                             f"(e.g. work_dirs/<suite>/<config>/<timestamp>/iter_N.pth)")


def read_weights(path: str, what: str, cache: PreflightCache | dict | None = None) -> weight_checks.Checkpoint:
    """A weights file loaded weights-only, once per launch; a problem is a `WeightsError` (a
    PreflightError) naming it."""
    weights = PreflightCache.of(cache).weights
    key = str(local_path(path))
    if key not in weights:
        weights[key] = weight_checks.read_checkpoint(key, what)
    return weights[key]


@dataclass
class CheckpointFit:
    """A checkpoint against every tensor of a whole model (missing BN step counters aside)."""

    checkpoint: weight_checks.Checkpoint
    config_name: str  # how messages name the model's config
    diff: Any  # involution_ops.conversion.StateDictDiff; empty when it fits

    def problem(self, fix: str, label: str = "CKPT=") -> str | None:
        """None when it fits; else what does not fit, what the checkpoint's meta says it was, and ``fix``."""
        if not self.diff:
            return None
        return weight_checks.fit_message(self.checkpoint, self.config_name, self.diff, label) + " " + fix


def checkpoint_fit(checkpoint: weight_checks.Checkpoint, model: Any, config_name: str,
                   scope: str = DEFAULT_SCOPE) -> CheckpointFit:
    """Whether ``checkpoint`` fits ``model``: a built module (DDP-wrapped or not), or a model config
    (built on the meta device in ``scope``'s registry: nothing is read or initialised)."""
    if hasattr(model, "state_dict"):
        module = getattr(model, "module", model)  # DDP wrapper
        shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    else:
        shapes = model_shapes(model, scope)
    return CheckpointFit(checkpoint, config_name, weight_checks.fit_diff(checkpoint, shapes))


def check_pretrained(cfg: Any, pretrained: str | None, dataset: str, job_name: str = "",
                     cache: PreflightCache | dict | None = None) -> None:
    """Every local Pretrained file the run will load, read and checked against its module."""
    cache = PreflightCache.of(cache)
    if not pretrained and dataset == "toy":
        return  # toy variants train from scratch unless PRETRAINED is given
    targets = weight_checks.pretrained_targets(cfg.model, pretrained)
    paths = [pretrained] if pretrained else []
    paths += [t.checkpoint for t in targets if t.checkpoint not in paths]
    for path in paths:
        if not path.startswith(REMOTE_PREFIXES):
            require_pretrained_file(path)
    for target in targets:
        if target.checkpoint.startswith(REMOTE_PREFIXES):
            continue
        checkpoint = read_weights(target.checkpoint, f"pretrained weights {target.checkpoint}", cache)
        shapes_key = (job_name, target.where)
        if shapes_key not in cache.shapes:
            cache.shapes[shapes_key] = model_shapes(target.module_cfg, scope_of(cfg))
        error, note = weight_checks.pretrained_problem(checkpoint, target, cache.shapes[shapes_key], job_name)
        if error:
            raise PreflightError(error)
        if note:
            print(f"  note: {note}", flush=True)


def _named_jobs(jobs: list[Job], path: Path, meta: dict) -> list[Job]:
    """The configs a checkpoint's folder names, else its recorded experiment name."""
    parts = set(path.resolve().parts)
    hits = [job for job in jobs if job.model.name in parts or job.config.stem in parts]
    if not hits:
        experiment = str(meta.get("experiment_name", ""))
        hits = [job for job in jobs if experiment.startswith((job.model.name + "_", job.config.stem + "_"))]
    return hits


def match_checkpoint(jobs: list[Job], ckpt: str, configs: dict[str, Any],
                     cache: PreflightCache | dict | None = None) -> list[Job]:
    """The one config of the target whose model every tensor of the checkpoint fits.

    The checkpoint's folder (or recorded experiment) must name that config when it names one, and
    --configs may pick it; otherwise the content decides. ``configs``: model name -> loaded config."""
    require_checkpoint_file(ckpt)
    checkpoint = read_weights(ckpt, f"CKPT={ckpt}", cache)
    names = [job.model.name for job in jobs]
    fit = {name: checkpoint_fit(checkpoint, configs[name].model, name, scope_of(configs[name])) for name in names}
    fits = [job for job in jobs if not fit[job.model.name].diff]
    named = jobs if len(jobs) == 1 else _named_jobs(jobs, Path(ckpt), checkpoint.meta)
    if len(named) == 1 and named[0] in fits:
        return named
    where = ("it fits no config of this target. Fix: evaluate it with the target of the model it was "
             "trained as (see its meta above), or with the options it was trained with (CFG_OPTIONS)")
    if fits:
        where = (f"its tensors fit {', '.join(j.model.name for j in fits)} of this target. Fix: keep it under "
                 f"work_dirs/<suite>/<config name>/ of that config, or pick it with --configs")
    if len(named) == 1:
        raise PreflightError(fit[named[0].model.name].problem(where))
    if len(fits) == 1:
        return fits
    closest = min(jobs, key=lambda job: fit[job.model.name].diff.count)
    raise PreflightError(f"CKPT={ckpt} cannot be matched to exactly one config of this target "
                         f"({', '.join(names)}): " + fit[closest.model.name].problem(where))
