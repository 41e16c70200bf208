# Mask R-CNN, RedNet-50, convolution FPN and heads: paper 34.2 M, 224.2 GFLOPs, 39.9 box / 35.7 mask AP.
# Recipe as the official config (d-li14/involution det/configs/involution/mask_rcnn_red50_fpn_1x_coco.py):
# mmdet's schedule_1x.py, i.e. a 500-iteration linear warm-up; 8 GPUs x 2 images = batch 16.
_base_ = [
    './_base_/models/mask_rcnn_red50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

# ImageNet RedNet-50 (convert PaddleClas weights with scripts/convert_checkpoint.py);
# `make ... PRETRAINED=path` points it elsewhere.
model = dict(backbone=dict(
    init_cfg=dict(_delete_=True, type='Pretrained', checkpoint='checkpoints/rednet50_imagenet.pth')))
