# Baseline: mmseg's UPerNet (with its auxiliary FCN head) with its ResNet-50 (v1c) backbone, as the paper's
# comparison. The import only makes checkpoint loading work on torch >= 2.6.
_base_ = 'mmseg::_base_/models/upernet_r50.py'

custom_imports = dict(imports=['involution_ops.mmseg'], allow_failed_imports=False)
