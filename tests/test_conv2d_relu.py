"""cnnfast.functional.conv2d_relu (the fused op) against torch's relu(conv2d(...))."""
import pytest
import torch
import torch.nn.functional as F

import cnnfast
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
