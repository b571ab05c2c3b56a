"""Functional API, argument for argument the same as ``torch.nn.functional``'s.

Everything torch accepts here is accepted the same way: unbatched ``(C, H, W)`` inputs, int or
tuple arguments, ``padding='same'`` / ``'valid'``, groups, dilation, ``ceil_mode``,
``return_indices`` and empty batches. The work is done by the ``torch.ops.cnnfast`` ops; the
argument checks live with the ops (csrc/checks.cpp), so a direct op call is checked the same way.
"""
from numbers import Integral

import torch

__all__ = ["conv2d", "conv2d_add_relu", "conv2d_relu", "conv2d_relu_max_pool2d", "max_pool2d", "relu", "relu_"]

# The ops' overloads themselves: an OpOverload call skips the packet's overload resolution (about 0.4 µs
# of a 3 µs ReLU call on a small tensor).
_ops = torch.ops.cnnfast
_CONV2D, _CONV2D_RELU = _ops.conv2d.default, _ops.conv2d_relu.default
_CONV2D_ADD_RELU = _ops.conv2d_add_relu.default
_CONV2D_RELU_MAX_POOL2D, _MAX_POOL2D = _ops.conv2d_relu_max_pool2d.default, _ops.max_pool2d.default
_RELU, _RELU_ = _ops.relu.default, _ops.relu_.default


def _pair(value, name):
    """int, or a sequence of 1 or 2 ints (torch broadcasts a single element) -> [h, w]."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        return [int(value), int(value)]
    if isinstance(value, (tuple, list, torch.Size)) and len(value) in (1, 2) and all(
        isinstance(v, Integral) and not isinstance(v, bool) for v in value
    ):
        return [int(v) for v in value] * (3 - len(value)) if len(value) == 1 else [int(v) for v in value]
    raise TypeError(f"{name} must be an int or a tuple of 2 ints, but got {name}={value!r}")


def _batched(input, op, what):
    """Add a batch dimension to an unbatched (C, H, W) input; returns (input, was_unbatched)."""
    if input.dim() == 3:
        return input.unsqueeze(0), True
    if input.dim() == 4:
        return input, False
    raise RuntimeError(
        f"{op}: expected 3D (unbatched) or 4D (batched) input to {what}, but got input of size: {list(input.shape)}"
    )


def _conv_padding(input, weight, stride, padding, dilation, op):
    """Resolve ``padding`` (int, tuple, 'same' or 'valid') into symmetric padding for the op, padding
    the input first where 'same' needs one more row or column at the end (as torch does)."""
    if not isinstance(padding, str):
        return input, _pair(padding, "padding")
    if padding == "valid":
        return input, [0, 0]
    if padding != "same":
        raise ValueError(f"{op}: invalid padding string {padding!r}, should be one of {{'valid', 'same'}}")
    if stride != [1, 1]:
        raise ValueError(f"{op}: padding='same' is not supported for strided convolutions, but got stride={stride}")
    left, extra = [], []
    for d, k in zip(dilation, weight.shape[-2:]):
        total = d * (k - 1)
        left.append(total // 2)
        extra.append(total - 2 * (total // 2))
    if extra != [0, 0]:
        # torch.nn.functional.pad takes (w_left, w_right, h_top, h_bottom).
        input = torch.nn.functional.pad(input, [0, extra[1], 0, extra[0]])
    return input, left


def _conv(op, name, input, weight, bias, stride, padding, dilation, groups):
    input, unbatched = _batched(input, f"cnnfast.{name}", name)
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    if weight.dim() == 4:  # a wrong rank is reported by the op, with the rest of the checks
        input, padding = _conv_padding(input, weight, stride, padding, dilation, f"cnnfast.{name}")
    else:
        padding = _pair(padding, "padding") if not isinstance(padding, str) else [0, 0]
    out = op(input, weight, bias, stride, padding, dilation, int(groups))
    if not unbatched:
        return out
    return tuple(t.squeeze(0) for t in out) if isinstance(out, tuple) else out.squeeze(0)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution; same arguments and results as :func:`torch.nn.functional.conv2d`."""
    return _conv(_CONV2D, "conv2d", input, weight, bias, stride, padding, dilation, groups)


def conv2d_relu(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """``relu(conv2d(input, weight, bias, ...))`` computed in one pass (bias and ReLU applied before the
    single store); the backward uses the stored output as the ReLU mask."""
    return _conv(_CONV2D_RELU, "conv2d_relu", input, weight, bias, stride, padding, dilation, groups)


def conv2d_add_relu(input, weight, bias, residual, stride=1, padding=0, dilation=1, groups=1):
    """``relu(conv2d(input, weight, bias, ...) + residual)`` in one pass: the residual is added and the
    ReLU applied where the convolution writes its output (a ResNet block's tail). ``residual`` has the
    convolution output's shape, dtype and device (unbatched with an unbatched input); the backward uses
    the stored output as the ReLU mask, and the residual's gradient is the masked output gradient."""
    if input.dim() == 3 and residual.dim() == 3:
        residual = residual.unsqueeze(0)

    def op(input, weight, bias, stride, padding, dilation, groups):
        return _CONV2D_ADD_RELU(input, weight, bias, residual, stride, padding, dilation, groups)

    return _conv(op, "conv2d_add_relu", input, weight, bias, stride, padding, dilation, groups)


def _pool_stride(stride, kernel_size):
    """torch's rule: no stride (None or an empty sequence) means the window's size."""
    if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0):
        return kernel_size
    return _pair(stride, "stride")


def conv2d_relu_max_pool2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, kernel_size,
                           pool_stride=None, pool_padding=0, pool_dilation=1, ceil_mode=False, return_indices=False):
    """``max_pool2d(relu(conv2d(input, weight, bias, stride, padding, dilation, groups)), kernel_size,
    pool_stride, pool_padding, pool_dilation, ceil_mode)`` in one op: the convolution's output is
    pooled as it is produced and never returned or kept; the backward works from the pooled output and
    its indices. The convolution's arguments are :func:`conv2d`'s, the pooling's :func:`max_pool2d`'s
    (``pool_stride`` defaults to ``kernel_size``); ``return_indices=True`` also gives the int64 indices
    into each plane of the convolution's output (``h * W + w``); without it none are written (except,
    kept inside autograd's graph, those the backward needs)."""
    kernel_size = _pair(kernel_size, "kernel_size")
    pool_args = (kernel_size, _pool_stride(pool_stride, kernel_size), _pair(pool_padding, "pool_padding"),
                 _pair(pool_dilation, "pool_dilation"), bool(ceil_mode), bool(return_indices))

    def op(*conv_args):
        return _CONV2D_RELU_MAX_POOL2D(*conv_args, *pool_args)

    out, indices = _conv(op, "conv2d_relu_max_pool2d", input, weight, bias, stride, padding, dilation, groups)
    return (out, indices) if return_indices else out


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """2-D max pooling; same arguments and results as :func:`torch.nn.functional.max_pool2d`, with
    ``return_indices=True`` giving int64 indices into each input plane (``h * W + w``)."""
    input, unbatched = _batched(input, "cnnfast.max_pool2d", "max_pool2d")
    kernel_size = _pair(kernel_size, "kernel_size")
    stride = _pool_stride(stride, kernel_size)
    out, indices = _MAX_POOL2D(
        input, kernel_size, stride, _pair(padding, "padding"), _pair(dilation, "dilation"), bool(ceil_mode)
    )
    if unbatched:
        out, indices = out.squeeze(0), indices.squeeze(0)
    return (out, indices) if return_indices else out


def relu(input, inplace=False):
    """ReLU; same as :func:`torch.nn.functional.relu` (NaN stays NaN)."""
    if not inplace:
        return _RELU(input)
    return relu_(input)


def relu_(input):
    """In-place ReLU. Under autograd (an in-place op cannot carry an autograd formula of its own) the
    result is computed out of place and copied back, so autograd records an in-place update of
    ``input`` exactly as it does for torch's ``relu_``."""
    if torch.is_grad_enabled() and input.requires_grad:
        return input.copy_(_RELU(input))
    _RELU_(input)
    return input
