"""Registers the paper's models into mmseg 1.x's MODELS; load with

    custom_imports = dict(imports=['involution_ops.mmseg'], allow_failed_imports=False)

Types: ``RedNet`` (backbone) and ``InvolutionFPN`` (FPN whose output convs are
7x7 involutions; official parameter names of ``FPN_involution``). Nothing is
written into mmseg's installation.
"""
from __future__ import annotations

from mmseg.models.necks import FPN
from mmseg.registry import MODELS

from . import mmengine_compat  # noqa: F401  (mmengine checkpoint loading on torch >= 2.6)
from .mmcommon import InvolutionFPNMixin, RedNet

__all__ = ["RedNet", "InvolutionFPN"]

MODELS.register_module("RedNet", module=RedNet)


@MODELS.register_module()
class InvolutionFPN(InvolutionFPNMixin, FPN):
    """mmseg's FPN with 7x7 involutions as the output convs of the backbone levels."""
