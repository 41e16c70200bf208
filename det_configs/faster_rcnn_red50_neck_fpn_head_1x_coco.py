# Faster R-CNN, RedNet-50, involution FPN and RPN head: paper 29.0 M, 91.5 GFLOPs, 39.2 box AP.
# Recipe as the official config (d-li14/involution det/configs/involution/faster_rcnn_red50_neck_fpn_head_1x_coco.py):
# schedule_1x_warmup, i.e. a 2000-iteration linear warm-up; 8 GPUs x 2 images = batch 16.
_base_ = [
    './_base_/models/faster_rcnn_red50_neck_fpn_head.py',
    'mmdet::_base_/datasets/coco_detection.py',
    './_base_/schedule_1x_warmup.py',
    'mmdet::_base_/default_runtime.py',
]

# ImageNet RedNet-50 (convert PaddleClas weights with scripts/convert_checkpoint.py);
# `make ... PRETRAINED=path` points it elsewhere.
model = dict(backbone=dict(
    init_cfg=dict(_delete_=True, type='Pretrained', checkpoint='checkpoints/rednet50_imagenet.pth')))

# Gradient clipping as in the official config of this row (max_norm 5).
optim_wrapper = dict(clip_grad=dict(max_norm=5, norm_type=2))
