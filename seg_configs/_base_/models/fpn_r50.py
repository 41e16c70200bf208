# Baseline: mmseg's Semantic FPN with its ResNet-50 (v1c) backbone, as the paper's
# comparison. The import only makes checkpoint loading work on torch >= 2.6.
_base_ = 'mmseg::_base_/models/fpn_r50.py'

custom_imports = dict(imports=['involution_ops.mmseg'], allow_failed_imports=False)

# The neck initialised as the published runs effectively had it. mmseg 0.x (mmseg's own FPN R-50
# result, and the official RedNet runs on mmseg 0.11) never called the neck's init_weights, so
# every neck conv kept mmcv ConvModule's construction-time Kaiming init (normal, fan_out, ReLU
# gain, zero bias), the involutions' internal convs included; mmseg 1.x would apply FPN's
# Xavier-uniform init_cfg to every Conv2d of the neck instead. mmengine's Kaiming defaults are
# those of mmcv's kaiming_init. Inherited by the RedNet FPN rows; mmseg 1.x's behaviour is
# `--cfg-options model.neck.init_cfg.type=Xavier model.neck.init_cfg.distribution=uniform`.
model = dict(neck=dict(init_cfg=dict(type='Kaiming', layer='Conv2d')))
