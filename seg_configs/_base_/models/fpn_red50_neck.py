# Semantic FPN, RedNet-50 backbone, FPN neck whose 3x3 output convs are 7x7 involutions.
_base_ = './fpn_red50.py'

model = dict(neck=dict(type='InvolutionFPN', involution_kernel_size=7))
