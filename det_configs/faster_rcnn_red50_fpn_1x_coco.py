# Faster R-CNN, RedNet-50, convolution FPN and heads: paper 31.6 M, 177.9 GFLOPs, 39.5 box AP.
# Recipe as the official config (d-li14/involution det/configs/involution/faster_rcnn_red50_fpn_1x_coco.py):
# mmdet's schedule_1x.py, i.e. a 500-iteration linear warm-up; 8 GPUs x 2 images = batch 16.
_base_ = [
    './_base_/models/faster_rcnn_red50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

# ImageNet RedNet-50 (convert PaddleClas weights with scripts/convert_checkpoint.py);
# `make ... PRETRAINED=path` points it elsewhere.
model = dict(backbone=dict(
    init_cfg=dict(_delete_=True, type='Pretrained', checkpoint='checkpoints/rednet50_imagenet.pth')))
