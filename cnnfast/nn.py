"""Drop-in layers: subclasses of the ``torch.nn`` classes with the same constructor arguments,
parameters, buffers and state_dict keys (a checkpoint of either loads into the other), whose
forward runs cnnfast's kernels."""
import torch

from . import functional as F

__all__ = ["Conv2d", "MaxPool2d", "ReLU", "Conv2dReLU"]


class Conv2d(torch.nn.Conv2d):
    """:class:`torch.nn.Conv2d` on cnnfast's conv2d. Every ``padding_mode`` works: a non-zero mode
    pads the input with torch's ``pad`` first, as ``torch.nn.Conv2d`` does."""

    def _conv_forward(self, input, weight, bias):
        if self.padding_mode != "zeros":
            input = torch.nn.functional.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv2d(input, weight, bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class Conv2dReLU(Conv2d):
    """``Conv2d`` followed by ReLU, computed by the fused conv2d_relu op (bias and ReLU applied before
    the single store). Same parameters and state_dict keys as :class:`torch.nn.Conv2d`."""

    def _conv_forward(self, input, weight, bias):
        if self.padding_mode != "zeros":
            input = torch.nn.functional.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv2d_relu(input, weight, bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d_relu(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class MaxPool2d(torch.nn.MaxPool2d):
    """:class:`torch.nn.MaxPool2d` on cnnfast's max_pool2d."""

    def forward(self, input):
        return F.max_pool2d(
            input, self.kernel_size, self.stride, self.padding, self.dilation,
            ceil_mode=self.ceil_mode, return_indices=self.return_indices,
        )


class ReLU(torch.nn.ReLU):
    """:class:`torch.nn.ReLU` on cnnfast's relu (``inplace`` included)."""

    def forward(self, input):
        return F.relu(input, inplace=self.inplace)
