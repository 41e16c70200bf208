# Semantic FPN, RedNet-50 backbone (paper's Cityscapes table).
# Everything but the backbone is mmseg's own fpn_r50 model (with the neck initialised as the
# official runs had it, see fpn_r50.py).
_base_ = ['./fpn_r50.py', '../rednet50_backbone.py']

model = dict(
    pretrained=None,  # mmseg would hand the ResNet-50 v1c checkpoint to the backbone
    backbone={{_base_.rednet50_backbone}})
