# Mask R-CNN, RedNet-50 backbone, involution FPN, and RPN and mask heads whose 3x3
# convs are 7x7 involutions (the box head has no convs).
_base_ = './mask_rcnn_red50_neck_fpn.py'

model = dict(
    rpn_head=dict(type='InvolutionRPNHead', involution_kernel_size=7),
    roi_head=dict(mask_head=dict(type='InvolutionFCNMaskHead', involution_kernel_size=7)))
