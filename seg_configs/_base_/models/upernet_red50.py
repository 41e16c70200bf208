# UPerNet (with its auxiliary FCN head), RedNet-50 backbone (paper's Cityscapes table).
# Everything but the backbone is mmseg's own upernet_r50 model.
_base_ = ['mmseg::_base_/models/upernet_r50.py', '../rednet50_backbone.py']

custom_imports = dict(imports=['involution_ops.mmseg'], allow_failed_imports=False)

model = dict(
    pretrained=None,  # mmseg would hand the ResNet-50 v1c checkpoint to the backbone
    backbone={{_base_.rednet50_backbone}})
