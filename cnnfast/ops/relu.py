"""cnnfast::relu, cnnfast::relu_ and cnnfast::relu_backward: fake kernels (autograd: csrc/autograd/).

relu_ mutates its input and so carries no autograd formula (the dispatcher allows none on a mutable
op); cnnfast.functional.relu_ routes autograd-tracked calls through relu and an in-place copy."""
import torch


@torch.library.register_fake("cnnfast::relu")
def _relu_fake(input):
    return torch.empty_like(input)


@torch.library.register_fake("cnnfast::relu_")
def _relu__fake(input):
    return None


@torch.library.register_fake("cnnfast::relu_backward")
def _relu_backward_fake(grad_output, output):
    return torch.empty_like(output)
