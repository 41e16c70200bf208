"""The name configs load to register the paper's models with mmdet 3.x:

    custom_imports = dict(imports=['involution_ops.mmdet'], allow_failed_imports=False)

The registrations live in involution_ops/openmmlab/mmdet.py.
"""
from .openmmlab.mmdet import InvolutionFCNMaskHead, InvolutionFPN, InvolutionRPNHead, RedNet

__all__ = ["RedNet", "InvolutionFPN", "InvolutionRPNHead", "InvolutionFCNMaskHead"]
