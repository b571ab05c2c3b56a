"""cnnfast::conv2d_relu and cnnfast::conv2d_relu_backward: fake kernels and autograd."""
import torch

from ._common import check_same_device, conv2d_output_mask
from .conv2d import conv2d_backward_fake


@torch.library.register_fake("cnnfast::conv2d_relu")
def _conv2d_relu_fake(input, weight, bias, stride, padding, dilation, groups):
    check_same_device("cnnfast::conv2d_relu", "input", input, weight=weight, bias=bias)
    return torch.ops.aten.convolution(input, weight, bias, stride, padding, dilation, False, [0, 0], groups)


@torch.library.register_fake("cnnfast::conv2d_relu_backward")
def _conv2d_relu_backward_fake(grad_output, output, input, weight, stride, padding, dilation, groups, output_mask):
    return conv2d_backward_fake(input, weight, output_mask)


def _setup_context(ctx, inputs, output):
    input, weight, bias, stride, padding, dilation, groups = inputs
    # The output is the ReLU mask of the backward, so the pre-activation need not be kept.
    ctx.save_for_backward(output, input, weight)
    ctx.conv_args = (stride, padding, dilation, groups)
    ctx.has_bias = bias is not None


def _backward(ctx, grad_output):
    output, input, weight = ctx.saved_tensors
    grads = torch.ops.cnnfast.conv2d_relu_backward(
        grad_output, output, input, weight, *ctx.conv_args, conv2d_output_mask(ctx, ctx.has_bias)
    )
    return (*grads, None, None, None, None)


torch.library.register_autograd("cnnfast::conv2d_relu", _backward, setup_context=_setup_context)
