"""Let mmengine 0.10.7 load checkpoints on torch >= 2.6 with ``weights_only`` kept on.

mmengine calls ``torch.load`` without ``weights_only``; since torch 2.6 that means
``weights_only=True``, which rejects the ``HistoryBuffer`` and numpy arrays in the
message hub of every checkpoint mmengine saves, so ``resume`` fails. Instead of
turning the protection off, every checkpoint loader registered with mmengine's
``CheckpointLoader`` (local files, http, ...) runs inside
:func:`involution_ops.safe_load.checkpoint_safe_globals`: the same weights-only
load, with exactly those classes allowed. Anything else is still refused.

Imported by the mmdet and mmseg registrations, so configs that load
``involution_ops.mmdet`` or ``involution_ops.mmseg`` through ``custom_imports`` get it;
:func:`apply` is idempotent.
"""
from __future__ import annotations

import functools
import pickle
from collections.abc import Callable
from typing import Any

from mmengine.runner.checkpoint import CheckpointLoader

from ..safe_load import explain_refusal, checkpoint_safe_globals

_MARK = "_involution_ops_allow_list"


def _with_allow_list(loader: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(loader)
    def load(filename: str, *args: Any, **kwargs: Any) -> Any:
        with checkpoint_safe_globals():
            try:
                return loader(filename, *args, **kwargs)
            except pickle.UnpicklingError as error:
                raise explain_refusal(filename, error) from None

    setattr(load, _MARK, True)
    return load


def apply() -> None:
    """Wrap every registered mmengine checkpoint loader once."""
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if not getattr(loader, _MARK, False):
            CheckpointLoader._schemes[prefix] = _with_allow_list(loader)


apply()
