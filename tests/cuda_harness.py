"""The CUDA half of the per-op tests (tests/test_<op>.py): cnnfast's CUDA kernels against torch.

Without a GPU: every kernel (csrc/cuda/*.cuh) runs on the CPU through the CUDA-on-CPU harness
(tests/cuda_kernels/entry_points.cpp, built with g++; fixture ``lib``), in every dtype and storage
order it has, over shapes that cross every tile edge; each launch runs under three thread orders and
must give bit-identical results (``run_orders``). Results are compared with torch in float64 on the
dtype-rounded inputs, within a bound derived from the reduction length:
|err| <= eps_acc * Kr * sum|a*b| + eps_out * |ref| (``assert_within``). This differs from the
project's rule (cnnfast.testing.compare, a multiple of torch's own error) because without a GPU there
is no torch CUDA result in the same dtype to measure against: the bound is the a-priori rounding bound
of a float32-accumulated sum of Kr terms, plus one rounding of the output to its dtype. The real-device
tests below use cnnfast.testing's rule against torch on the GPU.

With a GPU (marker ``cuda`` and ``needs_cuda``): the real ops against torch.nn.functional on CUDA;
skipped where there is none. The machine code of a CUDA build is checked in tests/test_cuda_kernels.py.
"""
import ctypes
from pathlib import Path

import pytest
import torch

from harness import coc, missing as _missing, needs_harness as harness  # noqa: F401  (harness: a marker)

ROOT = Path(__file__).resolve().parent.parent


ORDERS = [("forward", 0), ("reversed", 0), ("shuffled", 7)]
DTYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
# Unit roundoff of the storage types (outputs are rounded once to these).
EPS = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
EPS_ACC = 2.0**-24  # every kernel accumulates in float32
P = coc.ptr
LL = ctypes.c_longlong


@pytest.fixture(scope="module")
def lib():
    if _missing is not None:
        pytest.skip(_missing)
    lib = coc.load([ROOT / "tests" / "cuda_kernels" / "entry_points.cpp"], name="cnnfast_cuda_kernels")
    lib.cnnfast_conv2d_wgrad_workspace.restype = ctypes.c_longlong
    lib.cnnfast_conv2d_bias_workspace.restype = ctypes.c_longlong
    return lib


def sizes_arg(values):
    return (LL * len(values))(*values)


def run_orders(lib, fn):
    """fn() fills and returns output tensors; run it under every order, require identical bits."""
    outs = []
    for order, seed in ORDERS:
        lib.set_order(order, seed)
        outs.append([t.clone() for t in fn()])
    lib.set_order("forward")
    for (order, seed), out in zip(ORDERS[1:], outs[1:]):
        for a, b in zip(outs[0], out):
            assert torch.equal(a.view(torch.uint8), b.view(torch.uint8)), f"order {order} (seed {seed}) differs"
    return outs[0]


def nhwc(t):
    """[N, C, H, W] -> contiguous NHWC storage (as a [N, H, W, C] tensor)."""
    return t.permute(0, 2, 3, 1).contiguous()


def from_nhwc(t):
    return t.permute(0, 3, 1, 2)


def assert_within(out, ref, bound, what):
    err = (out.double() - ref).abs()
    worst = (err - bound).max().item()
    assert worst <= 0, f"{what}: max error {err.max().item():.3g} exceeds the bound by {worst:.3g}"


# ---- real CUDA (skipped without a GPU) ----------------------------------------------------------

def _cuda_ready():
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        from cnnfast import _build_config as build
    except ImportError:
        return "cnnfast is not built"
    return None if build.cuda else "cnnfast was built without CUDA kernels"


needs_cuda = pytest.mark.skipif(_cuda_ready() is not None, reason=f"{_cuda_ready()}")


def float64_twins(*tensors):
    """CPU float64 copies of device tensors (the same values), requiring grad: the truth's leaves."""
    return [t.detach().double().cpu().requires_grad_() for t in tensors]


def assert_device_result(got, torch_got, truth, lengths, dtype, what, torch_truth=None):
    """cnnfast's tensors `got` and torch's `torch_got` (both on the device, in `dtype`) against the float64
    truth by the project's rule (cnnfast.testing.compare); `torch_truth`, when given, is the truth that
    torch's side is measured against (the one that takes torch's own ReLU branches)."""
    from cnnfast.testing import compare

    res = compare(list(got), list(torch_got), list(truth), list(lengths), dtype, ref_truth=torch_truth)
    assert res["passed"], f"{what}: {res['message']} (torch's own error {res['ref_max_abs']:.3e})"
