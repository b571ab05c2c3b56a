"""What the tests compare cnnfast with, and how closely.

Tolerance rule (the one flash-attention uses): cnnfast's error against a float64 reference may be at
most a small multiple of torch's own error, in the same dtype, against the same reference. Torch's
error is the yardstick of what rounding a sum of that length in that dtype costs. When torch happens
to be exact (a reduction of one term, small integers), the yardstick gets a floor of
eps * sqrt(n) * max|reference|: sqrt(n) is how the rounding error of an n-term sum grows for
independent roundings, eps the unit roundoff of the dtype.
"""
import math

import torch

# cnnfast may be this many times further from float64 than torch is: the two sum in different orders,
# and blocked (cnnfast) and blocked/Winograd-free (oneDNN) orders differ by a small constant factor.
ERROR_RATIO = 4.0


def yardstick(torch_result, reference, reduction):
    torch_err = (torch_result.double() - reference).abs().max().item() if reference.numel() else 0.0
    eps = torch.finfo(torch_result.dtype).eps
    scale = reference.abs().max().item() if reference.numel() else 0.0
    return max(torch_err, eps * math.sqrt(max(reduction, 1)) * scale)


def assert_close_to_reference(actual, torch_result, reference, reduction, what):
    """actual (cnnfast) and torch_result (torch, same dtype) against reference (float64)."""
    assert actual.shape == torch_result.shape, f"{what}: shape {tuple(actual.shape)} != torch's {tuple(torch_result.shape)}"
    assert actual.dtype == torch_result.dtype, f"{what}: dtype {actual.dtype} != torch's {torch_result.dtype}"
    if actual.numel() == 0:
        return
    err = (actual.double() - reference).abs().max().item()
    bound = ERROR_RATIO * yardstick(torch_result, reference, reduction)
    assert err <= bound, f"{what}: max abs error {err:.3e} against float64 exceeds {bound:.3e} ({ERROR_RATIO} x torch's)"


def memory_format_of(t):
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def to_format(t, fmt):
    """t in `fmt`: 'nchw', 'channels_last' or 'strided' (a non-contiguous view with the same values)."""
    if fmt == "nchw":
        return t.contiguous()
    if fmt == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if fmt == "strided":
        # Every other element of a twice-as-wide tensor: same values, non-unit innermost stride.
        wide = torch.empty(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
        wide[..., ::2] = t
        return wide[..., ::2]
    raise ValueError(fmt)
