# The detection RedNet-50 backbone of the paper's detectors, shared as `{{_base_.rednet50_backbone}}`
# (mmengine allows a key in one base only, hence the name): pytorch style, stem and stage 1
# frozen, batch norm in eval mode, as the official detection configs.
rednet50_backbone = dict(
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
    init_cfg=None)
