"""Stop a training run whose loss turns non-finite, at that iteration, with the likely fixes.

mmengine trains on through NaN losses: the weights become NaN, the test then finds nothing and
the run would be recorded like any other. :class:`NonFiniteLossGuard` checks the loss of every
iteration (one scalar, already computed for the log) after the logger and before the checkpoint
hook, so the log shows the iteration and no checkpoint of it is written.
"""
from __future__ import annotations

import math
from typing import Any

from mmengine.hooks import Hook

# after LoggerHook (BELOW_NORMAL), before CheckpointHook (VERY_LOW)
PRIORITY = "LOW"


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; ``iteration`` counts from 1, as mmengine's log does."""

    def __init__(self, message: str, iteration: int):
        super().__init__(message)
        self.iteration = iteration


def _value(value: Any) -> float | None:
    try:
        return float(value.detach().float().mean()) if hasattr(value, "detach") else float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def fix_hint(optim_wrapper: Any = None) -> str:
    """The likely fixes for a diverging run, with the optimizer's learning rate, AMP and clipping."""
    lrs = []
    try:
        lrs = [lr for key, values in optim_wrapper.get_lr().items()
               if key.endswith("lr") and not key.endswith("base_lr") for lr in values]
    except (AttributeError, TypeError):
        pass
    amp = type(optim_wrapper).__name__ == "AmpOptimWrapper"
    clip = getattr(optim_wrapper, "clip_grad_kwargs", None)
    return ("Likely fix: a lower learning rate (optim_wrapper.optimizer.lr"
            + (f"; it was {max(lrs):g} at this iteration" if lrs else "") + ") or a longer linear warm-up "
            "(param_scheduler); "
            + ("with AMP on, dynamic loss scaling (optim_wrapper.loss_scale='dynamic') or AMP off; " if amp
               else "if you train with AMP, dynamic loss scaling or AMP off; ")
            + (f"gradient clipping is on ({clip}): a smaller max_norm" if clip else
               "gradient clipping (CFG_OPTIONS=\"optim_wrapper.clip_grad.max_norm=35 optim_wrapper.clip_grad."
               "norm_type=2\")") + ". Then start a new run")


def non_finite_message(outputs: dict[str, Any], iteration: int, optim_wrapper: Any = None) -> str | None:
    """The error for this iteration's loss outputs, or None when every loss term is finite."""
    values = {key: _value(value) for key, value in outputs.items() if "loss" in key}
    bad = {key: value for key, value in values.items() if value is not None and not math.isfinite(value)}
    if not bad:
        return None
    terms = ", ".join(f"{key}={value}" for key, value in bad.items())
    return (f"the training loss became non-finite at iteration {iteration} ({terms}); the run is stopped, "
            f"its weights are no longer usable. " + fix_hint(optim_wrapper))


class NonFiniteLossGuard(Hook):
    """Raise NonFiniteLoss at the first iteration whose loss (or a loss term) is NaN or infinite."""

    priority = PRIORITY

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if not isinstance(outputs, dict):
            return
        iteration = runner.iter + 1
        message = non_finite_message(outputs, iteration, getattr(runner, "optim_wrapper", None))
        if message:
            raise NonFiniteLoss(message, iteration)


def attach(runner: Any) -> None:
    """Add the guards to a built Runner (before runner.train())."""
    runner.register_hook(NonFiniteLossGuard(), priority=PRIORITY)
