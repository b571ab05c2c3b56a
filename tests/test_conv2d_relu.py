"""cnnfast.functional.conv2d_relu (the fused op) against torch's relu(conv2d(...))."""
import pytest
import torch
import torch.nn.functional as F

import cnnfast
from reference import assert_close_to_reference
from test_conv2d import GRID, run_conv_case


def fused(x, w, b, **kw):
    return cnnfast.functional.conv2d_relu(x, w, b, **kw)


def reference(x, w, b, **kw):
    return F.relu(F.conv2d(x, w, b, **kw))


@pytest.mark.parametrize("fmt", ["nchw", "channels_last"])
@pytest.mark.parametrize("case", GRID, ids=[str(i) for i in range(len(GRID))])
def test_conv2d_relu_matches_torch(case, fmt):
    n, c, h, w, k, kernel, stride, padding, dilation, groups = case
    run_conv_case(fused, reference, n, c, h, w, k, kernel, stride, padding, dilation, groups, fmt=fmt)


def test_conv2d_relu_float64_gradcheck():
    # Inputs away from the ReLU kink at 0 (finite differences across it are meaningless).
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    pre = F.conv2d(x, w, b, padding=1)
    assert pre.abs().min() > 1e-3
    assert torch.autograd.gradcheck(lambda x, w, b: cnnfast.functional.conv2d_relu(x, w, b, padding=1), (x, w, b))


def test_conv2d_relu_output_is_the_mask_and_nan_propagates():
    x = torch.randn(1, 2, 6, 6)
    x[0, 0, 3, 3] = float("nan")
    w = torch.randn(4, 2, 3, 3)
    ours, theirs = cnnfast.functional.conv2d_relu(x, w, padding=1), reference(x, w, None, padding=1)
    assert torch.equal(ours.isnan(), theirs.isnan())
    assert (ours[~ours.isnan()] >= 0).all()


@pytest.mark.parametrize("n", [2, 16])  # 16: the sixteen-images-per-vector path, where it applies
@pytest.mark.parametrize("pool", [False, True], ids=["conv2d_relu", "conv2d_relu_max_pool2d"])
def test_nan_output_passes_its_gradient_like_torch(n, pool):
    # A NaN input pixel makes NaN outputs; torch's ReLU backward passes the gradient there (the output is
    # not <= 0), so grad-bias and grad-input stay finite and must match, and grad-weight is NaN where
    # torch's is.
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(n, 4, 10, 10, generator=g, dtype=torch.float64)
    x0[0, 1, 4, 5] = float("nan")
    w0, b0 = torch.randn(6, 4, 3, 3, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    pool_kw = dict(kernel_size=2)

    def ours(x, w, b):
        if pool:
            return cnnfast.functional.conv2d_relu_max_pool2d(x, w, b, padding=1, **pool_kw)
        return cnnfast.functional.conv2d_relu(x, w, b, padding=1)

    def theirs(x, w, b):
        y = F.relu(F.conv2d(x, w, b, padding=1))
        return F.max_pool2d(y, **pool_kw) if pool else y

    grads = {}
    for name, fn, dtype in (("ours", ours, torch.float32), ("torch", theirs, torch.float32), ("ref", theirs, torch.float64)):
        leaves = [t.to(dtype).requires_grad_() for t in (x0, w0, b0)]
        y = fn(*leaves)
        gy = torch.linspace(-1, 2, y.numel(), dtype=torch.float64).reshape(y.shape).to(dtype)
        grads[name] = torch.autograd.grad(y, leaves, gy)
    for i, what, k in ((0, "grad_input", 6 * 9), (2, "grad_bias", n * 100)):  # k: the reduction length
        assert torch.isfinite(grads["ref"][i]).all()
        assert_close_to_reference(grads["ours"][i], grads["torch"][i], grads["ref"][i], k, f"{what}, n={n}")
    assert torch.equal(grads["ours"][1].isnan(), grads["ref"][1].isnan())


# ---- CUDA: torch.autocast on a real device -------------------------------------------------------
# The conv2d_relu kernel itself runs through the CUDA-on-CPU harness with conv2d's
# (tests/test_conv2d.py, relu=True); here its autocast registration, where there is a CUDA device.

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from cuda_harness import assert_device_result, needs_cuda  # noqa: E402


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast_casts_like_torch(dtype):
    import cnnfast  # noqa: F401

    x = torch.randn(2, 3, 9, 9, device="cuda", requires_grad=True)
    w = torch.randn(4, 3, 3, 3, device="cuda", requires_grad=True)
    b = torch.randn(4, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=dtype):
        out = torch.ops.cnnfast.conv2d_relu(x, w, b, [1, 1], [1, 1], [1, 1], 1)
        ref = F.conv2d(x, w, b, 1, 1).relu()
    assert out.dtype == ref.dtype == dtype
    # The truth: the float64 convolution of the inputs as autocast rounds them to `dtype`.
    x64, w64, b64 = (t.detach().to(dtype).double().cpu() for t in (x, w, b))
    truth = F.conv2d(x64, w64, b64, 1, 1).relu()
    assert_device_result([out], [ref], [truth], [3 * 3 * 3], dtype, f"conv2d_relu under autocast {dtype}")
    out.float().sum().backward()
    assert x.grad.dtype == w.grad.dtype == b.grad.dtype == torch.float32
