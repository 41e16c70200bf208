"""Involution operator and RedNet backbones (CVPR 2021), importable with torch alone.

The OpenMMLab adapters live in `involution_ops.openmmlab` and are loaded by
configs through `custom_imports` (`involution_ops.mmdet` / `involution_ops.mmseg`);
the benchmark suite is `involution_ops.bench`. Neither is imported here. CuPy is
imported only when a CUDA tensor reaches the operator.

The public names load on first use (PEP 562), so that tools of the suite that need
no tensor (`make tables`) do not import torch through this package.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .modules import Involution
    from .ops import involution, involution_reference
    from .rednet import RedNet

_EXPORTS = {
    "Involution": ".modules",
    "RedNet": ".rednet",
    "involution": ".ops",
    "involution_reference": ".ops",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
