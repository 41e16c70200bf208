# Faster R-CNN, RedNet-50 backbone, convolution FPN neck and heads (paper's detection table).
# Everything but the backbone is mmdet's own faster-rcnn_r50_fpn model.
_base_ = ['mmdet::_base_/models/faster-rcnn_r50_fpn.py', '../rednet50_backbone.py']

custom_imports = dict(imports=['involution_ops.mmdet'], allow_failed_imports=False)

model = dict(backbone={{_base_.rednet50_backbone}})
