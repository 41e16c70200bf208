# Baseline: mmseg's Semantic FPN ResNet-50 (v1c, ImageNet weights from open-mmlab://resnet50_v1c),
# same recipe as the RedNet rows (mmseg's fpn_r50_4xb2-80k_cityscapes-512x1024).
_base_ = [
    './_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
]

crop_size = (512, 1024)
# The paper's batch: 4 GPUs x 2 images; `--cfg-options auto_scale_lr.enable=True` scales the lr
# linearly for another GPU count.
auto_scale_lr = dict(enable=False, base_batch_size=8)
model = dict(data_preprocessor=dict(size=crop_size))

# mmseg's IoU metric that also returns per-class IoU (for the run records)
custom_imports = dict(imports=['involution_ops.mmseg'], allow_failed_imports=False)
val_evaluator = dict(type='PerClassIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
