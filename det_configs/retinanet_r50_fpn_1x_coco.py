# Baseline: RetinaNet, ResNet-50 (torchvision ImageNet weights), trained with mmdet's own R-50
# recipe (mmdet's retinanet_r50_fpn_1x_coco: schedule_1x.py with lr 0.01, 500-iteration linear
# warm-up, 8 GPUs x 2 images), the reference ResNet-50 result. The RedNet RetinaNet rows warm up
# for 2000 iterations (their official configs); mmdet's recipe is kept here on purpose.
_base_ = [
    './_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

optim_wrapper = dict(optimizer=dict(lr=0.01))
