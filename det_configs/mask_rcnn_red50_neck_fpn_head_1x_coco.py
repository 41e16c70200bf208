# Mask R-CNN, RedNet-50, involution FPN, RPN and mask heads: paper 29.5 M, 104.6 GFLOPs,
# 39.6 box / 35.1 mask AP.
# Recipe as the official config (d-li14/involution det/configs/involution/mask_rcnn_red50_neck_fpn_head_1x_coco.py):
# schedule_1x_warmup, i.e. a 2000-iteration linear warm-up; 8 GPUs x 2 images = batch 16.
_base_ = [
    './_base_/models/mask_rcnn_red50_neck_fpn_head.py',
    'mmdet::_base_/datasets/coco_instance.py',
    './_base_/schedule_1x_warmup.py',
    'mmdet::_base_/default_runtime.py',
]

# ImageNet RedNet-50 (convert PaddleClas weights with scripts/convert_checkpoint.py);
# `make ... PRETRAINED=path` points it elsewhere.
model = dict(backbone=dict(
    init_cfg=dict(_delete_=True, type='Pretrained', checkpoint='checkpoints/rednet50_imagenet.pth')))

# Gradient clipping as in the official config of this row (max_norm 5).
optim_wrapper = dict(clip_grad=dict(max_norm=5, norm_type=2))
