"""TEMPORARY stub: the operator issue replaces this with validation, torch.library
registration and backend dispatch. Public signature is fixed."""
from __future__ import annotations

import torch

from .reference import involution_reference


def involution(x: torch.Tensor, weight: torch.Tensor, stride=1, padding=0, dilation=1, backend: str | None = None) -> torch.Tensor:
    return involution_reference(x, weight, stride, padding, dilation)
