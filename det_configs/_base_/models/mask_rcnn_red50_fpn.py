# Mask R-CNN, RedNet-50 backbone, convolution FPN neck and heads (paper's detection table).
# Everything but the backbone is mmdet's own mask-rcnn_r50_fpn model.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'

custom_imports = dict(imports=['involution_ops.mmdet'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='RedNet',
        depth=50,
        stem_kernel_size=7,  # official det/seg RedNet stem (the ImageNet model has 3)
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        # the runnable configs point this at the ImageNet RedNet-50 checkpoint
        init_cfg=None))
