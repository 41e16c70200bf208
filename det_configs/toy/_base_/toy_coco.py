# Built-in toy COCO (scripts/make_toy_data.py: 3 shape classes, 256x192 images) and a short
# CPU schedule, shared by the toy variants as `{{_base_.toy_*}}` references: mmengine does not
# allow one key in two bases, so these pieces carry a `toy_` prefix and each toy config
# merges them into the keys of the full config it inherits.
toy_data_root = 'data/toy/coco/'
toy_metainfo = dict(classes=('circle', 'square', 'triangle'))
toy_num_classes = 3
toy_scale = (256, 192)
toy_max_iters = 80

_loader = dict(num_workers=0, persistent_workers=False)  # 2 CPU cores: no worker processes

_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=toy_scale, keep_ratio=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]


def _train_loader(with_mask):
    return dict(
        batch_size=2, **_loader,
        dataset=dict(
            data_root=toy_data_root, metainfo=toy_metainfo,
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True, with_mask=with_mask),
                dict(type='Resize', scale=toy_scale, keep_ratio=True),
                dict(type='RandomFlip', prob=0.5),
                dict(type='PackDetInputs'),
            ]))


toy_train_dataloader_bbox = _train_loader(with_mask=False)
toy_train_dataloader_segm = _train_loader(with_mask=True)
toy_test_dataloader = dict(
    batch_size=1, **_loader,
    dataset=dict(data_root=toy_data_root, metainfo=toy_metainfo, pipeline=_test_pipeline))
toy_test_evaluator = dict(ann_file=toy_data_root + 'annotations/instances_val2017.json')

# Iteration-based, without validation (IterBasedTrainLoop would validate at the last iteration,
# and scripts/train.py tests once after training anyway).
toy_train_cfg = dict(_delete_=True, type='IterBasedTrainLoop',
                     max_iters=toy_max_iters, val_interval=toy_max_iters + 1)
toy_param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=10),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=toy_max_iters,
         milestones=[int(toy_max_iters * 0.75)], gamma=0.1),
]
toy_default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(by_epoch=False, interval=toy_max_iters // 2, max_keep_ckpts=2))
toy_log_processor = dict(by_epoch=False, window_size=5)

# From scratch (no ImageNet weights on the toy run): nothing is worth freezing, and the BN
# statistics must be learned, so every stage trains and BN stays in training mode.
toy_backbone = dict(frozen_stages=-1, norm_eval=False, init_cfg=None)

# A few dozen iterations leave most scores below mmdet's 0.05 threshold; keeping every
# prediction gives an AP (small, but comparable between variants) instead of an empty result.
toy_score_thr = 0.0
