"""cnnfast.functional.relu (cnnfast::relu, relu_, relu_backward) against torch: exact, no arithmetic."""
import pytest
import torch
import torch.nn.functional as F

import cnnfast
from reference import to_format
from test_cpu_capability import PATHS


@pytest.mark.parametrize("fmt", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relu_matches_torch(fmt, dtype):
    x0 = to_format(torch.randn(3, 5, 7, 6, dtype=dtype), fmt)
    xo, xt = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    yo, yt = cnnfast.functional.relu(xo), F.relu(xt)
    assert torch.equal(yo, yt)
    assert yo.stride() == yt.stride() or not x0.is_non_overlapping_and_dense()
    gy = torch.randn_like(yt)
    assert torch.equal(torch.autograd.grad(yo, xo, gy)[0], torch.autograd.grad(yt, xt, gy)[0])


def test_relu_special_values():
    x = torch.tensor([float("nan"), -0.0, 0.0, -1.0, 2.0, float("inf"), -float("inf")])
    y = cnnfast.functional.relu(x)
    assert torch.equal(y.isnan(), F.relu(x).isnan())
    assert torch.equal(y[1:], F.relu(x)[1:])
    assert torch.equal(torch.signbit(y[1:]), torch.signbit(F.relu(x)[1:]))


SPECIAL = [float("nan"), -0.0, 0.0, -1.0, 2.0, float("inf"), -float("inf"), 1e-45, -1e-45]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n", [9, 45, 100])  # tails of every vector width, and whole vectors
def test_relu_gradient_at_special_values_matches_torch(monkeypatch, path, n):
    # torch's ReLU gradient passes where the output is not <= 0: at NaN it passes, at +-0 it does not.
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    x = torch.tensor((SPECIAL * 12)[:n], dtype=torch.float32)
    gy = torch.arange(1.0, n + 1.0)
    xo, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    (go,) = torch.autograd.grad(cnnfast.functional.relu(xo), xo, gy)
    (gt,) = torch.autograd.grad(F.relu(xt), xt, gy)
    assert torch.equal(go, gt)


def test_relu_inplace_without_grad_writes_the_input():
    x = torch.randn(4, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    expected = F.relu(x)
    ptr = x.data_ptr()
    y = cnnfast.functional.relu(x, inplace=True)
    assert y is x and x.data_ptr() == ptr
    assert torch.equal(x, expected)
    strided = to_format(torch.randn(2, 3, 4, 5), "strided")
    expected = F.relu(strided)
    cnnfast.functional.relu_(strided)
    assert torch.equal(strided, expected)


def test_relu_inplace_under_autograd_matches_torch():
    a0 = torch.randn(2, 3, 4, 4)
    grads = []
    for relu in (lambda t: cnnfast.functional.relu(t, inplace=True), lambda t: F.relu(t, inplace=True)):
        a = a0.clone().requires_grad_()
        h = a * 2  # not a leaf: in-place is allowed
        out = relu(h)
        assert out is h
        (out * torch.arange(h.numel()).reshape(h.shape)).sum().backward()
        grads.append(a.grad)
    assert torch.equal(grads[0], grads[1])


def test_relu_inplace_on_leaf_requiring_grad_is_refused_like_torch():
    x = torch.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        cnnfast.functional.relu(x, inplace=True)


def test_relu_opcheck_and_gradcheck():
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    torch.library.opcheck(torch.ops.cnnfast.relu, (x,))
    torch.library.opcheck(torch.ops.cnnfast.relu_, (x.detach().clone(),))
    torch.library.opcheck(torch.ops.cnnfast.relu_backward, (torch.randn(2, 3, 4, 5), F.relu(x.detach())))
    xd = (torch.rand(3, 4, dtype=torch.float64) + 0.1) * torch.tensor([1.0, -1.0]).repeat(6).reshape(3, 4).double()
    assert torch.autograd.gradcheck(cnnfast.functional.relu, (xd.requires_grad_(),))


def test_relu_empty():
    x = torch.randn(0, 3, 4, 4)
    assert cnnfast.functional.relu(x).shape == x.shape


# ---- CUDA kernels through the CUDA-on-CPU harness, and on a real device --------------------------
# The relu kernels (csrc/cuda/relu_kernel.cuh) run on the CPU through the harness; the helpers are
# tests/cuda_harness.py's. The real-device test of relu runs with max_pool2d's, on its shapes
# (tests/test_max_pool2d.py, test_cuda_max_pool2d_and_relu).

import ctypes  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from cuda_harness import DTYPES, LL, P, harness, lib, run_orders  # noqa: E402,F401  (lib: a fixture)


@harness
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("n, offset", [(1, 0), (37, 0), (4096 + 13, 0), (100, 1)])
def test_cuda_kernel_relu(lib, dtype, n, offset):
    base = torch.randn(n + offset, dtype=torch.float32).to(dtype)
    base[::7] = 0.0
    base[3::11] = float("nan")  # relu(NaN) = NaN, and its gradient passes (torch's threshold_backward)
    base[5::13] = -0.0
    xs = base[offset:]  # offset 1: a misaligned pointer, the scalar path
    y = torch.empty(n + offset, dtype=dtype)[offset:]

    def fwd():
        lib.call("cnnfast_relu", DTYPES[dtype], ctypes.c_void_p(xs.data_ptr()), ctypes.c_void_p(y.data_ptr()), LL(n))
        return [y]

    exact = dict(rtol=0, atol=0, equal_nan=True)
    (out,) = run_orders(lib, fwd)
    torch.testing.assert_close(out, torch.relu(xs), **exact)
    # In place (y == x).
    z = xs.clone()
    lib.call("cnnfast_relu", DTYPES[dtype], P(z), P(z), LL(n))
    torch.testing.assert_close(z, torch.relu(xs), **exact)
    # Backward: dy where y is not <= 0 (NaN passes), as torch's own.
    dy = torch.randn(n, dtype=torch.float32).to(dtype)
    yr = torch.relu(xs).contiguous()
    dx = torch.empty(n, dtype=dtype)

    def bwd():
        lib.call("cnnfast_relu_backward", DTYPES[dtype], P(dy), P(yr), P(dx), LL(n))
        return [dx]

    (out,) = run_orders(lib, bwd)
    assert torch.equal(out, torch.ops.aten.threshold_backward(dy, yr, 0))
