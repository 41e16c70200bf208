# Mask R-CNN, RedNet-50, involution FPN: paper 32.2 M, 181.3 GFLOPs, 40.8 box / 36.4 mask AP.
# Recipe as the official config (d-li14/involution det/configs/involution/mask_rcnn_red50_neck_fpn_1x_coco.py):
# schedule_1x_warmup, i.e. a 2000-iteration linear warm-up; 8 GPUs x 2 images = batch 16.
_base_ = [
    './_base_/models/mask_rcnn_red50_neck_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    './_base_/schedule_1x_warmup.py',
    'mmdet::_base_/default_runtime.py',
]

# ImageNet RedNet-50 (convert PaddleClas weights with scripts/convert_checkpoint.py);
# `make ... PRETRAINED=path` points it elsewhere.
model = dict(backbone=dict(
    init_cfg=dict(_delete_=True, type='Pretrained', checkpoint='checkpoints/rednet50_imagenet.pth')))
