"""The name configs load to register the paper's models and the per-class IoU metric with mmseg 1.x:

    custom_imports = dict(imports=['involution_ops.mmseg'], allow_failed_imports=False)

The registrations live in involution_ops/openmmlab/mmseg.py.
"""
from .openmmlab.mmseg import InvolutionFPN, PerClassIoUMetric, RedNet

__all__ = ["RedNet", "InvolutionFPN", "PerClassIoUMetric"]
