# Faster R-CNN, RedNet-50, involution FPN: paper 29.5 M, 135.0 GFLOPs, 40.2 box AP.
# Recipe as the official config (d-li14/involution det/configs/involution/faster_rcnn_red50_neck_fpn_1x_coco.py):
# schedule_1x_warmup, i.e. a 2000-iteration linear warm-up; 8 GPUs x 2 images = batch 16.
_base_ = [
    './_base_/models/faster_rcnn_red50_neck_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    './_base_/schedule_1x_warmup.py',
    'mmdet::_base_/default_runtime.py',
]

# ImageNet RedNet-50 (convert PaddleClas weights with scripts/convert_checkpoint.py);
# `make ... PRETRAINED=path` points it elsewhere.
model = dict(backbone=dict(
    init_cfg=dict(_delete_=True, type='Pretrained', checkpoint='checkpoints/rednet50_imagenet.pth')))
