# Faster R-CNN, RedNet-50, involution FPN: paper 29.5 M, 135.0 GFLOPs, 40.2 box AP.
_base_ = [
    './_base_/models/faster_rcnn_red50_neck_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    './_base_/schedule_1x_paper.py',
    'mmdet::_base_/default_runtime.py',
]

# ImageNet RedNet-50 (convert PaddleClas weights with scripts/convert_checkpoint.py);
# `make ... PRETRAINED=path` points it elsewhere.
model = dict(backbone=dict(
    init_cfg=dict(_delete_=True, type='Pretrained', checkpoint='checkpoints/rednet50_imagenet.pth')))
