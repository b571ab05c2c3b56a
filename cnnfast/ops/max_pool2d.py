"""cnnfast::max_pool2d and cnnfast::max_pool2d_backward: fake kernels and autograd."""
import torch

from ._common import empty_in_format_of


@torch.library.register_fake("cnnfast::max_pool2d")
def _max_pool2d_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    # torch's meta kernel: output size and memory format of torch's own max_pool2d.
    return torch.ops.aten.max_pool2d_with_indices(input, kernel_size, stride, padding, dilation, ceil_mode)


@torch.library.register_fake("cnnfast::max_pool2d_backward")
def _max_pool2d_backward_fake(grad_output, input, indices, kernel_size, stride, padding, dilation, ceil_mode):
    return empty_in_format_of(input)


def _setup_context(ctx, inputs, output):
    input, *window = inputs  # kernel_size, stride, padding, dilation, ceil_mode
    indices = output[1]
    ctx.mark_non_differentiable(indices)
    ctx.save_for_backward(input, indices)
    ctx.window = window


def _backward(ctx, grad_output, _grad_indices):
    input, indices = ctx.saved_tensors
    grad_input = torch.ops.cnnfast.max_pool2d_backward(grad_output, input, indices, *ctx.window)
    return grad_input, None, None, None, None, None


torch.library.register_autograd("cnnfast::max_pool2d", _backward, setup_context=_setup_context)
