# The official involution `schedule_1x_warmup.py` (d-li14/involution, det/configs/_base_/schedules/):
# mmdet's 1x recipe (SGD lr 0.02, momentum 0.9, weight decay 1e-4, 12 epochs with steps at 8 and
# 11) with a 2000-iteration linear warm-up from 0.001 instead of mmdet's 500. The six rows whose
# official config inherits it use it; the official conv-neck Faster/Mask R-CNN rows inherit
# mmdet's own schedule_1x.py instead. Paper batch: 8 GPUs x 2 images = 16.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=2000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]

# With `--cfg-options auto_scale_lr.enable=True` other batch sizes scale the lr linearly.
auto_scale_lr = dict(enable=False, base_batch_size=16)
