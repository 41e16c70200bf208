# UPerNet (with its auxiliary FCN head), RedNet-50 backbone (paper's Cityscapes table).
# Everything but the backbone is mmseg's own upernet_r50 model. SyncBN as the paper
# trained (4 GPUs); non-distributed runs get plain BN: mmengine's Runner reverts
# SyncBN layers itself when it is not distributed.
_base_ = 'mmseg::_base_/models/upernet_r50.py'

custom_imports = dict(imports=['involution_ops.mmseg'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,  # mmseg would hand the ResNet-50 v1c checkpoint to the backbone
    backbone=dict(
        _delete_=True,
        type='RedNet',
        depth=50,
        stem_kernel_size=7,  # official det/seg RedNet stem (the ImageNet model has 3)
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        strides=(1, 2, 2, 2),
        dilations=(1, 1, 1, 1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        # the runnable configs point this at the ImageNet RedNet-50 checkpoint
        init_cfg=None))
