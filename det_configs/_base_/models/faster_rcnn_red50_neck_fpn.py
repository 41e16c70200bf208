# Faster R-CNN, RedNet-50 backbone, FPN whose 3x3 output convs are 7x7 involutions.
_base_ = './faster_rcnn_red50_fpn.py'

model = dict(neck=dict(type='InvolutionFPN', involution_kernel_size=7))
