"""The OpenMMLab adapters: mmdet 3.x / mmseg 1.x registrations of RedNet, the involution
FPN and heads, the per-class IoU metric, and mmengine's checkpoint loading on torch >= 2.6.

Configs reach them through the short names ``involution_ops.mmdet`` and
``involution_ops.mmseg`` in ``custom_imports``. Needs the `mm` extra; nothing here is
imported by ``involution_ops`` itself.
"""
