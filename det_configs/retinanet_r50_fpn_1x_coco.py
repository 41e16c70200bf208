# Baseline: RetinaNet, ResNet-50 (torchvision ImageNet weights), trained with the same recipe
# as the RedNet rows so the comparison is side by side.
_base_ = [
    './_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    './_base_/schedule_1x_paper.py',
    'mmdet::_base_/default_runtime.py',
]

optim_wrapper = dict(optimizer=dict(lr=0.01))
