"""Drop-in layers: subclasses of the ``torch.nn`` classes with the same constructor arguments,
parameters, buffers and state_dict keys (a checkpoint of either loads into the other), whose
forward runs cnnfast's kernels."""
import torch

from . import functional as F

__all__ = ["Conv2d", "MaxPool2d", "ReLU", "Conv2dReLU", "Conv2dAddReLU", "Conv2dReLUMaxPool2d"]


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


class Conv2dAddReLU(Conv2d):
    """``Conv2d`` whose forward also takes the residual: ``relu(conv2d(input) + residual)`` by the fused
    conv2d_add_relu op (a ResNet block's tail; made by ``cnnfast.convert(model, fuse=True)``). Same
    parameters and state_dict keys as :class:`torch.nn.Conv2d`. A residual that is not of the
    convolution output's shape and dtype (one that broadcasts, or promotes) is added by torch after the
    convolution instead, so the result is always ``relu(conv(input) + residual)``."""

    def forward(self, input, residual):
        if residual.shape != self._output_shape(input) or residual.dtype != input.dtype:
            return torch.relu(super().forward(input) + residual)
        padding = self.padding
        if self.padding_mode != "zeros":
            input = torch.nn.functional.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        return F.conv2d_add_relu(input, self.weight, self.bias, residual, self.stride, padding, self.dilation,
                                 self.groups)

    def _output_shape(self, input):
        size = list(input.shape[-2:])
        if self.padding != "same":
            pad = (0, 0) if self.padding == "valid" else self.padding
            size = [(n + 2 * p - d * (k - 1) - 1) // s + 1
                    for n, p, d, k, s in zip(size, pad, self.dilation, self.kernel_size, self.stride)]
        return torch.Size([*input.shape[:-3], self.out_channels, *size])


class Conv2dReLUMaxPool2d(Conv2d):
    """``Conv2d``, ReLU and ``MaxPool2d`` in one op (conv2d_relu_max_pool2d): the convolution's output is
    pooled as it is produced and never kept. The constructor is :class:`torch.nn.Conv2d`'s, followed by
    the pooling's arguments (``pool_stride`` defaults to ``pool_kernel_size``, as ``MaxPool2d``'s
    ``stride``); same parameters and state_dict keys as :class:`torch.nn.Conv2d`."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", device=None, dtype=None, *, pool_kernel_size=2, pool_stride=None,
                 pool_padding=0, pool_dilation=1, ceil_mode=False):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype)
        self.set_pool(pool_kernel_size, pool_stride, pool_padding, pool_dilation, ceil_mode)

    def set_pool(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        """The pooling's arguments (as ``torch.nn.MaxPool2d``'s)."""
        self.pool_kernel_size = kernel_size
        self.pool_stride = stride if stride is not None else kernel_size
        self.pool_padding, self.pool_dilation, self.ceil_mode = padding, dilation, ceil_mode

    def _conv_forward(self, input, weight, bias):
        pool = dict(kernel_size=self.pool_kernel_size, pool_stride=self.pool_stride, pool_padding=self.pool_padding,
                    pool_dilation=self.pool_dilation, ceil_mode=self.ceil_mode)
        if self.padding_mode != "zeros":
            input = torch.nn.functional.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv2d_relu_max_pool2d(input, weight, bias, self.stride, 0, self.dilation, self.groups, **pool)
        return F.conv2d_relu_max_pool2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups,
                                        **pool)

    def extra_repr(self):
        return (super().extra_repr() + f", pool_kernel_size={self.pool_kernel_size}, pool_stride={self.pool_stride}"
                f", pool_padding={self.pool_padding}, pool_dilation={self.pool_dilation}, ceil_mode={self.ceil_mode}")


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
