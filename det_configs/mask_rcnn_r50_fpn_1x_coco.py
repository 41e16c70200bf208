# Baseline: Mask R-CNN, ResNet-50 (torchvision ImageNet weights), trained with mmdet's own R-50
# recipe (mmdet's mask_rcnn_r50_fpn_1x_coco: schedule_1x.py, 500-iteration linear warm-up, lr 0.02,
# 8 GPUs x 2 images), the reference ResNet-50 result; it is also the recipe of the official
# conv-neck RedNet row (mask_rcnn_red50_fpn_1x_coco), so that comparison is like for like.
_base_ = [
    './_base_/models/mask_rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
