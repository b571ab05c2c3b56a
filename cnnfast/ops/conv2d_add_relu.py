"""cnnfast::conv2d_add_relu and cnnfast::conv2d_add_relu_backward: fake kernels (autograd: csrc/autograd/)."""
import torch

from ._common import check_same_device, empty_in_format_of
from .conv2d import conv2d_backward_fake

_OP = "cnnfast::conv2d_add_relu"


@torch.library.register_fake(_OP)
def _conv2d_add_relu_fake(input, weight, bias, residual, stride, padding, dilation, groups):
    check_same_device(_OP, "input", input, weight=weight, bias=bias, residual=residual)
    out = torch.ops.aten.convolution(input, weight, bias, stride, padding, dilation, False, [0, 0], groups)
    # The C++ checks' rule and words (csrc/checks.cpp: make_conv2d_add_relu_problem).
    if residual.dtype != input.dtype:
        raise RuntimeError(
            f"{_OP}: expected residual and input to have the same dtype, but got "
            f"residual.dtype={residual.dtype} and input.dtype={input.dtype}"
        )
    if residual.shape != out.shape:
        raise RuntimeError(
            f"{_OP}: expected residual to have the size of the convolution's output, {list(out.shape)}, "
            f"but got residual of size {list(residual.shape)}"
        )
    return out


@torch.library.register_fake("cnnfast::conv2d_add_relu_backward")
def _conv2d_add_relu_backward_fake(grad_output, output, input, weight, stride, padding, dilation, groups, output_mask):
    grad_input, grad_weight, grad_bias = conv2d_backward_fake(input, weight, output_mask[:3])
    grad_residual = empty_in_format_of(output) if output_mask[3] else None
    return grad_input, grad_weight, grad_bias, grad_residual
