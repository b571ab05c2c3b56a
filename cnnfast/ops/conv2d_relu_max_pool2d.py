"""cnnfast::conv2d_relu_max_pool2d and its backward: fake kernels (autograd: csrc/autograd/)."""
import torch

from ._common import check_same_device
from .conv2d import conv2d_backward_fake


@torch.library.register_fake("cnnfast::conv2d_relu_max_pool2d")
def _conv2d_relu_max_pool2d_fake(input, weight, bias, stride, padding, dilation, groups, kernel_size, pool_stride,
                                 pool_padding, pool_dilation, ceil_mode, return_indices=True):
    check_same_device("cnnfast::conv2d_relu_max_pool2d", "input", input, weight=weight, bias=bias)
    conv = torch.ops.aten.convolution(input, weight, bias, stride, padding, dilation, False, [0, 0], groups)
    out, indices = torch.ops.aten.max_pool2d_with_indices(conv, kernel_size, pool_stride, pool_padding,
                                                          pool_dilation, ceil_mode)
    return out, indices if return_indices else indices.new_empty((0,))


@torch.library.register_fake("cnnfast::conv2d_relu_max_pool2d_backward")
def _conv2d_relu_max_pool2d_backward_fake(grad_output, output, indices, input, weight, stride, padding, dilation,
                                          groups, kernel_size, pool_stride, pool_padding, pool_dilation, ceil_mode,
                                          output_mask):
    return conv2d_backward_fake(input, weight, output_mask)
