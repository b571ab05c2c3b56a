"""cnnfast.functional.conv2d (cnnfast::conv2d, cnnfast::conv2d_backward) against torch.nn.functional."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnfast
from reference import assert_close_to_reference, memory_format_of, to_format


def run_conv_case(ours, theirs, n, c, h, w, k, kernel, stride=1, padding=0, dilation=1, groups=1,
                  bias=True, dtype=torch.float32, fmt="nchw", seed=0):
    """Forward and all gradients of `ours` against `theirs` (torch), each against float64."""
    g = torch.Generator().manual_seed(seed)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x0 = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    w0 = torch.randn(k, c // groups, kh, kw, generator=g, dtype=torch.float64)
    b0 = torch.randn(k, generator=g, dtype=torch.float64) if bias else None
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)

    def leaves(d):
        xs = to_format(x0.to(d), fmt).requires_grad_()
        ws = w0.to(d).requires_grad_()
        bs = b0.to(d).requires_grad_() if bias else None
        return xs, ws, bs

    xo, wo, bo = leaves(dtype)
    xt, wt, bt = leaves(dtype)
    xr, wr, br = leaves(torch.float64)
    yo, yt, yr = ours(xo, wo, bo, **args), theirs(xt, wt, bt, **args), theirs(xr, wr, br, **args)
    red = (c // groups) * kh * kw
    what = f"conv n={n} c={c} {h}x{w} k={k} kernel={kernel} {args} {dtype} {fmt}"
    assert_close_to_reference(yo, yt, yr, red, what + " forward")
    assert memory_format_of(yo) == memory_format_of(yt), what + ": output memory format differs from torch's"
    if yo.numel() == 0:
        return
    gy = torch.randn(yr.shape, generator=g, dtype=torch.float64)
    inputs = lambda xs, ws, bs: [xs, ws] + ([bs] if bias else [])  # noqa: E731
    go = torch.autograd.grad(yo, inputs(xo, wo, bo), gy.to(dtype))
    gt = torch.autograd.grad(yt, inputs(xt, wt, bt), gy.to(dtype))
    gr = torch.autograd.grad(yr, inputs(xr, wr, br), gy)
    # Reduction lengths: grad-input sums over (K/groups)*R*S taps, grad-weight and grad-bias over N*P*Q.
    pq = yr.shape[0] * yr.shape[2] * yr.shape[3]
    for name, a, t, r, length in zip(["grad_input", "grad_weight", "grad_bias"], go, gt, gr,
                                     [(k // groups) * kh * kw, pq, pq]):
        assert_close_to_reference(a, t, r, length, f"{what} {name}")


def conv(x, w, b, **kw):
    return cnnfast.functional.conv2d(x, w, b, **kw)


# (n, c, h, w, k, kernel, stride, padding, dilation, groups): each row varies one thing from LeNet/ResNet.
GRID = [
    (2, 1, 28, 28, 6, 5, 1, 2, 1, 1),        # LeNet conv1
    (3, 6, 14, 14, 16, 5, 1, 0, 1, 1),       # LeNet conv2, odd batch
    (2, 16, 9, 9, 16, 3, 1, 1, 1, 1),        # ResNet 3x3
    (2, 16, 9, 9, 32, 3, 2, 1, 1, 1),        # strided 3x3
    (2, 16, 9, 9, 32, 1, 2, 0, 1, 1),        # 1x1 strided shortcut
    (1, 3, 23, 23, 8, 7, 2, 3, 1, 1),        # ResNet stem, batch 1
    (2, 4, 10, 10, 4, 2, 1, 0, 1, 1),        # kernel 2
    (2, 4, 12, 12, 4, 4, 3, 1, 1, 1),        # kernel 4, stride 3
    (2, 3, 13, 13, 5, 6, 1, 2, 1, 1),        # kernel 6
    (2, 4, 11, 12, 6, 3, 1, 2, 2, 1),        # dilation 2, padding 2
    (2, 4, 15, 15, 6, 3, 2, 3, 3, 1),        # dilation 3, stride 2
    (2, 8, 10, 10, 8, 3, 1, 1, 1, 2),        # groups 2
    (2, 8, 10, 10, 8, 3, 1, 1, 1, 8),        # depthwise
    (2, 8, 10, 10, 16, 3, 2, 1, 1, 8),       # depthwise, channel multiplier 2, strided
    (2, 6, 7, 19, 4, (3, 5), (1, 2), (1, 0), (2, 1), 1),   # non-square everything
    (1, 5, 17, 8, 7, (1, 3), 1, (0, 1), 1, 1),            # non-square kernel, odd sizes
    (2, 4, 9, 9, 4, 3, 1, "same", 1, 1),     # 'same'
    (2, 4, 9, 10, 4, (2, 4), 1, "same", (2, 1), 2),       # 'same' with even kernel: asymmetric pad
    (2, 4, 9, 9, 4, 3, 1, "valid", 1, 1),    # 'valid'
    (0, 4, 9, 9, 4, 3, 1, 1, 1, 1),          # empty batch
    (2, 3, 5, 5, 2, 5, 1, 0, 1, 1),          # kernel = input: 1x1 output
    (2, 70, 5, 5, 3, 1, 1, 0, 1, 1),         # more channels than a tile's rows
    (2, 3, 12, 12, 130, 3, 1, 1, 1, 1),      # output channels past a register block
    # Outputs 48 and more wide: each output row is a tile written straight into the output.
    (1, 3, 40, 96, 8, 7, 2, 3, 1, 1),        # ResNet-stem-like, 48 wide
    (2, 4, 6, 64, 6, 3, 1, 1, 2, 2),         # 62 wide (a masked vector), dilation 2, groups 2
    (1, 2, 5, 112, 70, (3, 5), 1, (1, 2), 1, 1),          # 112 wide, past a register block of channels
]


@pytest.mark.parametrize("fmt", ["nchw", "channels_last"])
@pytest.mark.parametrize("case", GRID, ids=[str(i) for i in range(len(GRID))])
def test_conv2d_matches_torch(case, fmt):
    n, c, h, w, k, kernel, stride, padding, dilation, groups = case
    run_conv_case(conv, F.conv2d, n, c, h, w, k, kernel, stride, padding, dilation, groups, fmt=fmt)


@pytest.mark.parametrize("kernel", range(1, 8))
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_conv2d_kernel_and_stride_sweep(kernel, stride):
    run_conv_case(conv, F.conv2d, 2, 3, 13, 11, 5, kernel, stride, kernel // 2, 1, 1)


@pytest.mark.parametrize("dilation", [1, 2, 3])
@pytest.mark.parametrize("padding", [0, 1, "same"])
def test_conv2d_dilation_and_padding_sweep(dilation, padding):
    run_conv_case(conv, F.conv2d, 1, 4, 14, 13, 4, 3, 1, padding, dilation, 2)


def test_conv2d_without_bias_and_float64():
    run_conv_case(conv, F.conv2d, 2, 4, 8, 8, 6, 3, 1, 1, bias=False)
    run_conv_case(conv, F.conv2d, 2, 4, 8, 8, 6, 3, 2, 1, dtype=torch.float64, fmt="channels_last")


def test_conv2d_strided_input():
    run_conv_case(conv, F.conv2d, 2, 4, 10, 9, 6, 3, 1, 1, fmt="strided")


def test_conv2d_channels_last_weight_gives_channels_last_output():
    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3).contiguous(memory_format=torch.channels_last)
    ours, theirs = cnnfast.functional.conv2d(x, w), F.conv2d(x, w)
    assert ours.is_contiguous(memory_format=torch.channels_last) and theirs.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours, theirs)


def test_conv2d_unbatched_and_tuple_arguments():
    x, w, b = torch.randn(3, 10, 12), torch.randn(4, 3, 3, 2), torch.randn(4)
    ours = cnnfast.functional.conv2d(x, w, b, stride=(2, 1), padding=(1,), dilation=[1, 2])
    theirs = F.conv2d(x, w, b, stride=(2, 1), padding=(1,), dilation=[1, 2])
    assert ours.shape == theirs.shape == (4, 5, 12)  # (10+2-3)//2+1, 12+2-3+1
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_conv2d_bit_identical_for_any_thread_count(threads):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 6, 17, 15, generator=g, requires_grad=True)
    w = torch.randn(8, 3, 3, 3, generator=g, requires_grad=True)
    b = torch.randn(8, generator=g, requires_grad=True)

    def run():
        y = cnnfast.functional.conv2d(x, w, b, padding=1, groups=2)
        return (y, *torch.autograd.grad(y, (x, w, b), torch.ones_like(y)))

    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = run()
        torch.set_num_threads(threads)
        parallel = run()
    finally:
        torch.set_num_threads(old)
    for a, b_ in zip(serial, parallel):
        assert torch.equal(a, b_)


def test_conv2d_nan_and_inf_propagate_like_torch():
    x = torch.randn(1, 2, 6, 6)
    x[0, 0, 2, 3] = float("nan")
    x[0, 1, 4, 4] = float("inf")
    w = torch.rand(3, 2, 3, 3) + 0.1  # positive weights: inf stays +inf
    ours, theirs = cnnfast.functional.conv2d(x, w), F.conv2d(x, w)
    assert torch.equal(ours.isnan(), theirs.isnan())
    assert torch.equal(ours.isinf(), theirs.isinf())


def test_conv2d_gradcheck_float64():
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: cnnfast.functional.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2), groups=2),
        (x, w, b),
    )


def conv_op_samples():
    x = torch.randn(2, 4, 7, 6, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, requires_grad=True)
    b = torch.randn(6, requires_grad=True)
    yield (x, w, b, [1, 2], [1, 0], [1, 1], 2)
    yield (x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(), w, None, [2, 1], [0, 1], [2, 1], 2)
    yield (x.double().detach().requires_grad_(), torch.randn(3, 4, 1, 1, dtype=torch.float64, requires_grad=True),
           None, [1, 1], [0, 0], [1, 1], 1)


@pytest.mark.parametrize("op", ["conv2d", "conv2d_relu"])
def test_conv2d_opcheck(op):
    for args in conv_op_samples():
        torch.library.opcheck(getattr(torch.ops.cnnfast, op), args)


def test_conv2d_backward_opcheck_and_output_mask():
    x, w = torch.randn(2, 4, 7, 6), torch.randn(6, 2, 3, 3)
    gy = torch.randn(2, 6, 5, 4)
    for mask in ([True, True, True], [True, False, False], [False, True, True], [False, False, True]):
        args = (gy, x, w, [1, 1], [0, 0], [1, 1], 2, mask)
        torch.library.opcheck(torch.ops.cnnfast.conv2d_backward, args)
        grads = torch.ops.cnnfast.conv2d_backward(*args)
        assert [g is not None for g in grads] == mask
    out = torch.relu(torch.randn(2, 6, 5, 4))
    torch.library.opcheck(torch.ops.cnnfast.conv2d_relu_backward, (gy, out, x, w, [1, 1], [0, 0], [1, 1], 2, [True, True, True]))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 3), cg=st.integers(1, 4), kg=st.integers(1, 4), groups=st.integers(1, 3),
    h=st.integers(1, 12), w=st.integers(1, 12), kh=st.integers(1, 5), kw=st.integers(1, 5),
    sh=st.integers(1, 3), sw=st.integers(1, 3), ph=st.integers(0, 3), pw=st.integers(0, 3),
    dh=st.integers(1, 3), dw=st.integers(1, 3), bias=st.booleans(), fmt=st.sampled_from(["nchw", "channels_last"]),
)
def test_conv2d_random_arguments(n, cg, kg, groups, h, w, kh, kw, sh, sw, ph, pw, dh, dw, bias, fmt):
    # Keep the (dilated) kernel inside the padded input, as torch requires.
    h = max(h, dh * (kh - 1) + 1 - 2 * ph)
    w = max(w, dw * (kw - 1) + 1 - 2 * pw)
    run_conv_case(conv, F.conv2d, n, cg * groups, h, w, kg * groups, (kh, kw), (sh, sw), (ph, pw), (dh, dw), groups,
                  bias=bias, fmt=fmt)
