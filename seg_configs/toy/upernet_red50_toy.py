# Toy variant of upernet_red50_512x1024_80k_cityscapes.py: the same model on the built-in toy Cityscapes
# layout (seg_configs/toy/_base_/toy_cityscapes.py), trained from scratch for a few dozen iterations on a CPU.
_base_ = ['../upernet_red50_512x1024_80k_cityscapes.py', './_base_/toy_cityscapes.py']

model = dict(
    pretrained=None,
    data_preprocessor=dict(size={{_base_.toy_crop_size}}),
    backbone={{_base_.toy_backbone}})
train_dataloader = {{_base_.toy_train_dataloader}}
test_dataloader = {{_base_.toy_test_dataloader}}
val_dataloader = None
val_evaluator = None
val_cfg = None
train_cfg = {{_base_.toy_train_cfg}}
param_scheduler = {{_base_.toy_param_scheduler}}
default_hooks = {{_base_.toy_default_hooks}}
log_processor = {{_base_.toy_log_processor}}
