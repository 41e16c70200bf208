# Baseline: mmdet's Faster R-CNN with a ResNet-50 backbone (frozen_stages=1, norm_eval=True),
# as the paper's comparison. The import only makes checkpoint loading work on torch >= 2.6.
_base_ = 'mmdet::_base_/models/faster-rcnn_r50_fpn.py'

custom_imports = dict(imports=['involution_ops.mmdet'], allow_failed_imports=False)
