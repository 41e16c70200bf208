# The RedNet-50 backbone of the paper's segmentors, shared as `{{_base_.rednet50_backbone}}`
# (mmengine allows a key in one base only, hence the name). SyncBN as the paper trained
# (4 GPUs); non-distributed runs get plain BN: mmengine's Runner reverts SyncBN itself.
rednet50_backbone = dict(
    _delete_=True,
    type='RedNet',
    depth=50,
    stem_kernel_size=7,  # official det/seg RedNet stem (the ImageNet model has 3)
    num_stages=4,
    out_indices=(0, 1, 2, 3),
    strides=(1, 2, 2, 2),
    dilations=(1, 1, 1, 1),
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    norm_eval=False,
    style='pytorch',
    # the runnable configs point this at the ImageNet RedNet-50 checkpoint
    init_cfg=None)
