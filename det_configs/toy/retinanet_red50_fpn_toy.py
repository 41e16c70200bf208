# Toy variant of retinanet_red50_fpn_1x_coco.py: the same model on the built-in toy COCO data
# (det_configs/toy/_base_/toy_coco.py), trained for 80 iterations on a CPU.
_base_ = ['../retinanet_red50_fpn_1x_coco.py', './_base_/toy_coco.py']

model = dict(
    backbone={{_base_.toy_backbone}},
    bbox_head=dict(num_classes={{_base_.toy_num_classes}}),
    test_cfg=dict(score_thr={{_base_.toy_score_thr}}))
train_dataloader = {{_base_.toy_train_dataloader_bbox}}
test_dataloader = {{_base_.toy_test_dataloader}}
test_evaluator = {{_base_.toy_test_evaluator}}
val_dataloader = None
val_evaluator = None
val_cfg = None
train_cfg = {{_base_.toy_train_cfg}}
param_scheduler = {{_base_.toy_param_scheduler}}
default_hooks = {{_base_.toy_default_hooks}}
log_processor = {{_base_.toy_log_processor}}
