# Baseline: Mask R-CNN, ResNet-50 (torchvision ImageNet weights), same recipe as the RedNet rows.
_base_ = [
    './_base_/models/mask_rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    './_base_/schedule_1x_paper.py',
    'mmdet::_base_/default_runtime.py',
]
