# Mask R-CNN, RedNet-50, convolution FPN and heads: paper 34.2 M, 224.2 GFLOPs, 39.9 box / 35.7 mask AP.
_base_ = [
    './_base_/models/mask_rcnn_red50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    './_base_/schedule_1x_paper.py',
    'mmdet::_base_/default_runtime.py',
]

# ImageNet RedNet-50 (convert PaddleClas weights with scripts/convert_checkpoint.py);
# `make ... PRETRAINED=path` points it elsewhere.
model = dict(backbone=dict(
    init_cfg=dict(_delete_=True, type='Pretrained', checkpoint='checkpoints/rednet50_imagenet.pth')))
