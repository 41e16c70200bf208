# UPerNet (+ auxiliary FCN head), RedNet-50 backbone: paper 56.4 M params, 1825.6 GFLOPs, 80.6 mIoU.
# Recipe as fpn_red50_512x1024_80k_cityscapes.py (mmseg's Cityscapes 80k recipe unchanged).
# Official: d-li14/involution seg/configs/involution/upernet_red50_512x1024_80k_cityscapes.py, on mmseg
# 0.x's schedule_80k.py (no warm-up) and cityscapes.py (2 images per GPU); 4 GPUs x 2 = batch 8.
_base_ = [
    './_base_/models/upernet_red50.py',
    'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
]

crop_size = (512, 1024)
# The paper's batch: 4 GPUs x 2 images; `--cfg-options auto_scale_lr.enable=True` scales the lr
# linearly for another GPU count.
auto_scale_lr = dict(enable=False, base_batch_size=8)
# ImageNet RedNet-50 (convert PaddleClas weights with scripts/convert_checkpoint.py);
# `make ... PRETRAINED=path` points it elsewhere.
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(init_cfg=dict(_delete_=True, type='Pretrained', checkpoint='checkpoints/rednet50_imagenet.pth')))

# mmseg's IoU metric that also returns per-class IoU (for the run records)
custom_imports = dict(imports=['involution_ops.mmseg'], allow_failed_imports=False)
val_evaluator = dict(type='PerClassIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
