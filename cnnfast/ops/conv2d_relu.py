"""cnnfast::conv2d_relu and cnnfast::conv2d_relu_backward: fake kernels (autograd: csrc/autograd/)."""
import torch

from ._common import check_same_device
from .conv2d import conv2d_backward_fake


@torch.library.register_fake("cnnfast::conv2d_relu")
def _conv2d_relu_fake(input, weight, bias, stride, padding, dilation, groups):
    check_same_device("cnnfast::conv2d_relu", "input", input, weight=weight, bias=bias)
    return torch.ops.aten.convolution(input, weight, bias, stride, padding, dilation, False, [0, 0], groups)


@torch.library.register_fake("cnnfast::conv2d_relu_backward")
def _conv2d_relu_backward_fake(grad_output, output, input, weight, stride, padding, dilation, groups, output_mask):
    return conv2d_backward_fake(input, weight, output_mask)
