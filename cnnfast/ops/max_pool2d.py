"""cnnfast::max_pool2d and cnnfast::max_pool2d_backward: fake kernels (autograd: csrc/autograd/)."""
import torch

from ._common import empty_in_format_of


@torch.library.register_fake("cnnfast::max_pool2d")
def _max_pool2d_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    # torch's meta kernel: output size and memory format of torch's own max_pool2d.
    return torch.ops.aten.max_pool2d_with_indices(input, kernel_size, stride, padding, dilation, ceil_mode)


@torch.library.register_fake("cnnfast::max_pool2d_backward")
def _max_pool2d_backward_fake(grad_output, input, indices, kernel_size, stride, padding, dilation, ceil_mode):
    return empty_in_format_of(input)
