"""Registers the paper's models into mmseg 1.x's MODELS, and the per-class IoU metric into
its METRICS; configs load it with

    custom_imports = dict(imports=['involution_ops.mmseg'], allow_failed_imports=False)

Types: ``RedNet`` (backbone), ``InvolutionFPN`` (FPN whose output convs are 7x7
involutions; official parameter names of ``FPN_involution``) and the metric
``PerClassIoUMetric`` (seg_metrics.py). Nothing is written into mmseg's installation.
"""
from __future__ import annotations

from mmseg.models.necks import FPN
from mmseg.registry import MODELS

from . import checkpoint_loading  # noqa: F401  (mmengine checkpoint loading on torch >= 2.6)
from .models import InvolutionFPNMixin, RedNet
from .seg_metrics import PerClassIoUMetric

__all__ = ["RedNet", "InvolutionFPN", "PerClassIoUMetric"]

MODELS.register_module("RedNet", module=RedNet)


@MODELS.register_module()
class InvolutionFPN(InvolutionFPNMixin, FPN):
    """mmseg's FPN with 7x7 involutions as the output convs of the backbone levels."""
