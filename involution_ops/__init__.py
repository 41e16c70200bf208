"""Involution operator and RedNet backbones (CVPR 2021), importable with torch alone.

The OpenMMLab adapters live in `involution_ops.openmmlab` and are loaded by
configs through `custom_imports` (`involution_ops.mmdet` / `involution_ops.mmseg`);
the benchmark suite is `involution_ops.bench`. Neither is imported here. CuPy is
imported only when a CUDA tensor reaches the operator.
"""
from .modules import Involution
from .ops import involution, involution_reference
from .rednet import RedNet

__all__ = ["Involution", "RedNet", "involution", "involution_reference"]
__version__ = "0.1.0"
