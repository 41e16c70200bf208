# Built-in toy Cityscapes layout (scripts/make_toy_data.py: 256x128 street scenes, the 19
# Cityscapes train ids + 255) and a short CPU schedule, shared by the toy variants as
# `{{_base_.toy_*}}` references: mmengine does not allow one key in two bases, so these
# pieces carry a `toy_` prefix and each toy config merges them into the full config's keys.
toy_data_root = 'data/toy/cityscapes/'
toy_scale = (256, 128)  # (w, h) of the toy images
toy_crop_size = (128, 128)  # half a toy image: CPU time per iteration is what limits the toy run
toy_max_iters = 60

_loader = dict(num_workers=0, persistent_workers=False)  # 2 CPU cores: no worker processes

toy_train_dataloader = dict(
    batch_size=2, **_loader,
    dataset=dict(
        data_root=toy_data_root,
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations'),
            dict(type='RandomResize', scale=toy_scale, ratio_range=(1.0, 1.5), keep_ratio=True),
            dict(type='RandomCrop', crop_size=toy_crop_size, cat_max_ratio=0.75),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PackSegInputs'),
        ]))
toy_test_dataloader = dict(
    batch_size=1, **_loader,
    dataset=dict(
        data_root=toy_data_root,
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=toy_scale, keep_ratio=True),
            dict(type='LoadAnnotations'),
            dict(type='PackSegInputs'),
        ]))

# No validation while training: scripts/train.py tests once at the end (a val loop would
# also run at the last iteration, evaluating twice), so the toy configs drop val_* entirely.
toy_train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=toy_max_iters)
toy_param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=toy_max_iters, by_epoch=False),
]
toy_default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(by_epoch=False, interval=toy_max_iters // 2, max_keep_ckpts=2))
toy_log_processor = dict(by_epoch=False, window_size=5)

# From scratch (no ImageNet weights on the toy run): nothing to load.
toy_backbone = dict(init_cfg=None)
