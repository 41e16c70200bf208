# Faster R-CNN, RedNet-50 backbone, involution FPN and an RPN head whose 3x3 conv
# is a 7x7 involution.
_base_ = './faster_rcnn_red50_neck_fpn.py'

model = dict(rpn_head=dict(type='InvolutionRPNHead', involution_kernel_size=7))
