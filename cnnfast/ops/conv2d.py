"""cnnfast::conv2d and cnnfast::conv2d_backward: fake kernels (autograd: csrc/autograd/)."""
import torch

from ._common import check_same_device, empty_in_format_of


@torch.library.register_fake("cnnfast::conv2d")
def _conv2d_fake(input, weight, bias, stride, padding, dilation, groups):
    check_same_device("cnnfast::conv2d", "input", input, weight=weight, bias=bias)
    # torch's own meta kernel gives the output size and torch's memory-format rule for this call,
    # which is the rule the C++ kernels follow (csrc/checks.cpp: conv2d_memory_format).
    return torch.ops.aten.convolution(input, weight, bias, stride, padding, dilation, False, [0, 0], groups)


@torch.library.register_fake("cnnfast::conv2d_backward")
def _conv2d_backward_fake(grad_output, input, weight, stride, padding, dilation, groups, output_mask):
    return conv2d_backward_fake(input, weight, output_mask)


def conv2d_backward_fake(input, weight, output_mask):
    grad_input = empty_in_format_of(input) if output_mask[0] else None
    grad_weight = empty_in_format_of(weight) if output_mask[1] else None
    grad_bias = weight.new_empty(weight.shape[0]) if output_mask[2] else None
    return grad_input, grad_weight, grad_bias
