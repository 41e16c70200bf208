# RetinaNet, RedNet-50, involution FPN: paper 26.3 M params, 199.9 GFLOPs, 38.2 box AP.
# Recipe as the official config (d-li14/involution det/configs/involution/retinanet_red50_neck_fpn_1x_coco.py):
# schedule_1x_warmup_grad_clip (one revision: schedule_1x_warmup plus the same clipping), i.e. a
# 2000-iteration linear warm-up and max_norm 40; 8 GPUs x 2 images = batch 16.
_base_ = [
    './_base_/models/retinanet_red50_neck_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    './_base_/schedule_1x_warmup.py',
    'mmdet::_base_/default_runtime.py',
]

# ImageNet RedNet-50 (convert PaddleClas weights with scripts/convert_checkpoint.py);
# `make ... PRETRAINED=path` points it elsewhere.
model = dict(backbone=dict(
    init_cfg=dict(_delete_=True, type='Pretrained', checkpoint='checkpoints/rednet50_imagenet.pth')))

# Gradient clipping as in the official config of this row (max_norm 40).
optim_wrapper = dict(optimizer=dict(lr=0.01), clip_grad=dict(max_norm=40, norm_type=2))
