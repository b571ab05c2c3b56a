"""What the tests compare cnnfast with, and how closely.

One tolerance rule for the whole project, cnnfast.testing.compare (also the pass mark of
`cnnfast check` and `cnnfast bench`): cnnfast's error against a float64 reference may be at most a
small multiple of torch's own error, in the same dtype, against the same reference; torch's error
is the yardstick of what rounding a sum of that length in that dtype costs. When torch happens to
be exact (a reduction of one term, small integers), the yardstick has a floor of a few
eps * sqrt(n) * max|reference|: sqrt(n) is how the rounding error of an n-term sum grows for
independent roundings, eps the unit roundoff of the dtype.
"""
import torch

from cnnfast.testing import compare


def assert_close_to_reference(actual, torch_result, reference, reduction, what):
    """actual (cnnfast) and torch_result (torch, same dtype) against reference (float64)."""
    assert actual.shape == torch_result.shape, f"{what}: shape {tuple(actual.shape)} != torch's {tuple(torch_result.shape)}"
    assert actual.dtype == torch_result.dtype, f"{what}: dtype {actual.dtype} != torch's {torch_result.dtype}"
    result = compare([actual], [torch_result], [reference], [reduction], actual.dtype)
    assert result["passed"], f"{what}: {result['message']} (torch's own error {result['ref_max_abs']:.3e})"


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


def assert_bit_identical_for_thread_counts(run, threads=(2, 3)):
    """run() gives the same bits (every tensor it returns) on 1 thread and on each count of threads:
    cnnfast's CPU kernels give every sum one order, whichever thread computes it."""
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = run()
        for n in threads:
            torch.set_num_threads(n)
            again = run()
            assert len(again) == len(serial)
            for i, (a, b) in enumerate(zip(serial, again)):
                assert torch.equal(a, b), f"output {i} differs between 1 and {n} threads"
    finally:
        torch.set_num_threads(old)
