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


# ---- CUDA kernels through the CUDA-on-CPU harness, and on a real device --------------------------
# The conv2d kernels (csrc/cuda/conv2d_kernel.cuh, conv2d_wmma_kernel.cuh, conv2d_depthwise_kernel.cuh:
# forward with the bias + ReLU epilogue, grad-input, grad-weight, grad-bias) run on the CPU through the
# harness, and cnnfast::conv2d / conv2d_relu on a CUDA device where there is one; the helpers are
# tests/cuda_harness.py's.

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from cuda_harness import (  # noqa: E402,F401  (lib: a fixture)
    DTYPES, assert_device_result, float64_twins, EPS, EPS_ACC, P, assert_within, from_nhwc, harness, lib, needs_cuda, nhwc, run_orders, sizes_arg)


CONV_CASES = [
    # N, C, H, W, K, R, S, stride, padding, dilation, groups
    (1, 1, 5, 5, 1, 3, 3, (1, 1), (1, 1), (1, 1), 1),
    (3, 3, 9, 7, 5, 3, 3, (2, 2), (1, 1), (1, 1), 1),
    (2, 8, 6, 6, 8, 3, 3, (1, 1), (2, 2), (2, 2), 2),
    (2, 6, 7, 7, 6, 3, 3, (1, 1), (1, 1), (1, 1), 6),
    (1, 4, 12, 12, 70, 1, 1, (1, 1), (0, 0), (1, 1), 1),
    (2, 16, 5, 9, 12, 2, 3, (2, 1), (0, 2), (1, 2), 4),
    (2, 4, 12, 12, 8, 3, 3, (1, 1), (1, 1), (1, 1), 1),
    (1, 5, 9, 8, 5, 3, 3, (2, 2), (1, 1), (2, 1), 5),
    (2, 3, 48, 48, 3, 3, 3, (1, 1), (1, 1), (1, 1), 3),
]
CONV_IDS = ["1x1x5x5k1", "3x3x9x7k5s2", "2x8x6x6g2d2", "dw6", "k70-1x1", "g4-asym", "wgrad-splits", "dw5-s2d2",
            "dw3-splits"]


def conv_sizes(case):
    N, C, H, W, K, R, S, st, pad, dil, g = case
    return sizes_arg([N, C, H, W, K, R, S, *st, *pad, *dil, g])


def rounded_inputs(case, dtype, seed=0):
    N, C, H, W, K, R, S, st, pad, dil, g = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, C, H, W, generator=gen).to(dtype)
    w = torch.randn(K, C // g, R, S, generator=gen).to(dtype)
    b = torch.randn(K, generator=gen).to(dtype)
    return x, w, b


def conv_ref(x, w, b, case):
    _, _, _, _, _, _, _, st, pad, dil, g = case
    return F.conv2d(x, w, b, st, pad, dil, g)


@harness
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_cuda_kernel_conv2d_forward(lib, dtype, layout, case):
    x, w, b = rounded_inputs(case, dtype)
    st, pad, dil, g = case[7:]
    Kr = w.shape[1] * w.shape[2] * w.shape[3]
    is_nhwc = layout == "nhwc"
    ref = conv_ref(x.double(), w.double(), b.double(), case)
    mag = F.conv2d(x.double().abs(), w.double().abs(), b.double().abs(), st, pad, dil, g)
    xs, ws = (nhwc(x), nhwc(w)) if is_nhwc else (x.contiguous(), w.contiguous())
    N, K, Pq, Qq = ref.shape
    y = torch.empty((N, Pq, Qq, K) if is_nhwc else (N, K, Pq, Qq), dtype=dtype)
    # float: FFMA, and TF32 tensor cores (inputs rounded to 10 mantissa bits); half types: tensor cores.
    for tf32 in (0, 1) if dtype == torch.float32 else (0,):
        for relu, bias in ((False, None), (True, b)):
            def fwd():
                lib.call("cnnfast_conv2d_forward", DTYPES[dtype], conv_sizes(case), int(is_nhwc), P(xs), P(ws),
                         P(bias) if bias is not None else None, int(relu), tf32, P(y))
                return [y]

            (out,) = run_orders(lib, fwd)
            out = from_nhwc(out) if is_nhwc else out
            expect = conv_ref(x.double(), w.double(), None if bias is None else b.double(), case)
            if relu:
                expect = expect.relu()
            input_rounding = 2 * 2.0**-11 * mag if tf32 else 0
            bound = EPS_ACC * (Kr + 2) * mag + input_rounding + EPS[dtype] * expect.abs() + 1e-30
            assert_within(out, expect, bound, f"conv2d forward relu={relu} tf32={tf32}")


@harness
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_cuda_kernel_conv2d_backward(lib, dtype, layout, case):
    x, w, b = rounded_inputs(case, dtype, seed=1)
    st, pad, dil, g = case[7:]
    is_nhwc = layout == "nhwc"
    sizes = conv_sizes(case)
    out_ref = conv_ref(x.double(), w.double(), b.double(), case)
    gen = torch.Generator().manual_seed(2)
    dy = torch.randn(out_ref.shape, generator=gen).to(dtype)
    relu_out = out_ref.relu().to(dtype)
    conv = lambda a: a.permute(0, 2, 3, 1).contiguous() if is_nhwc else a.contiguous()  # noqa: E731
    back = lambda a: from_nhwc(a) if is_nhwc else a  # noqa: E731
    xs, ws, dys, ros = conv(x), conv(w), conv(dy), conv(relu_out)
    # float: FFMA and TF32 tensor cores; half types: tensor cores.
    for tf32, masked in [(t, m) for t in ((0, 1) if dtype == torch.float32 else (0,)) for m in (False, True)]:
        rounding = 2 * 2.0**-11 if tf32 else 0.0  # TF32 inputs: 10 mantissa bits
        dyr = dy.double() * (relu_out.double() > 0) if masked else dy.double()
        mask_ptr = P(ros) if masked else None
        # grad_input
        ref = torch.nn.grad.conv2d_input(x.shape, w.double(), dyr, st, pad, dil, g)
        mag = torch.nn.grad.conv2d_input(x.shape, w.double().abs(), dyr.abs(), st, pad, dil, g)
        Kr = w.shape[0] // g * w.shape[2] * w.shape[3]
        dx = torch.empty(xs.shape, dtype=dtype)

        def dgrad():
            lib.call("cnnfast_conv2d_grad_input", DTYPES[dtype], sizes, int(is_nhwc), P(dys), mask_ptr, P(ws), tf32,
                     P(dx))
            return [dx]

        (out,) = run_orders(lib, dgrad)
        assert_within(back(out), ref, (EPS_ACC * (Kr + 2) + rounding) * mag + EPS[dtype] * ref.abs() + 1e-30,
                      f"conv2d grad_input masked={masked} tf32={tf32}")
        # grad_weight (split-K)
        ref = torch.nn.grad.conv2d_weight(x.double(), w.shape, dyr, st, pad, dil, g)
        mag = torch.nn.grad.conv2d_weight(x.double().abs(), w.shape, dyr.abs(), st, pad, dil, g)
        Kr = x.shape[0] * dy.shape[2] * dy.shape[3]
        dw = torch.empty(ws.shape, dtype=dtype)
        work = torch.empty(lib.cnnfast_conv2d_wgrad_workspace(sizes), dtype=torch.float32)

        def wgrad():
            lib.call("cnnfast_conv2d_grad_weight", DTYPES[dtype], sizes, int(is_nhwc), P(dys), mask_ptr, P(xs), tf32,
                     P(dw), P(work))
            return [dw]

        (out,) = run_orders(lib, wgrad)
        assert_within(back(out), ref, (EPS_ACC * (Kr + 2) + rounding) * mag + EPS[dtype] * ref.abs() + 1e-30,
                      f"conv2d grad_weight masked={masked} tf32={tf32}")
        if tf32:
            continue  # grad-bias has no GEMM
        # grad_bias
        ref = dyr.sum((0, 2, 3))
        mag = dyr.abs().sum((0, 2, 3))
        db = torch.empty(w.shape[0], dtype=dtype)
        work = torch.empty(lib.cnnfast_conv2d_bias_workspace(sizes), dtype=torch.float32)

        def bgrad():
            lib.call("cnnfast_conv2d_grad_bias", DTYPES[dtype], sizes, int(is_nhwc), P(dys), mask_ptr, P(db), P(work))
            return [db]

        (out,) = run_orders(lib, bgrad)
        assert_within(out, ref, EPS_ACC * (Kr + 2) * mag + EPS[dtype] * ref.abs() + 1e-30,
                      f"conv2d grad_bias masked={masked}")


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_cuda_conv2d_against_cudnn(dtype, channels_last, case, monkeypatch):
    import cnnfast  # noqa: F401  (registers the ops)

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # float32 on FFMA, cuDNN without TF32
    x, w, b = (t.cuda() for t in rounded_inputs(case, dtype))
    if channels_last:
        x, w = x.to(memory_format=torch.channels_last), w.to(memory_format=torch.channels_last)
    N, C, _, _, K, R, S, st, pad, dil, g = case
    x.requires_grad_()
    w.requires_grad_()
    b.requires_grad_()
    x64, w64, b64 = float64_twins(x, w, b)
    y64 = F.conv2d(x64, w64, b64, st, pad, dil, g)
    pq = y64.shape[0] * y64.shape[2] * y64.shape[3]
    grad_lengths = [(K // g) * R * S, pq, pq]  # grad-input, grad-weight, grad-bias
    for op, relu in ((torch.ops.cnnfast.conv2d, False), (torch.ops.cnnfast.conv2d_relu, True)):
        out = op(x, w, b, list(st), list(pad), list(dil), g)
        ref = F.conv2d(x, w, b, st, pad, dil, g)
        ref = ref.relu() if relu else ref
        what = f"{op} {case} {dtype} channels_last={channels_last}"
        assert_device_result([out], [ref], [y64.relu() if relu else y64], [(C // g) * R * S], dtype, what)
        dy = torch.randn_like(ref)
        got = torch.autograd.grad(out, (x, w, b), dy)
        exp = torch.autograd.grad(ref, (x, w, b), dy)

        def truth(side):  # the float64 gradients, through the ReLU branches that `side`'s output took
            up = dy.double().cpu() * ((side.detach().double().cpu() > 0) if relu else 1)
            return torch.autograd.grad(y64, (x64, w64, b64), up, retain_graph=True)

        assert_device_result(got, exp, truth(out), grad_lengths, dtype, what + " gradients", truth(ref))
        again = torch.autograd.grad(op(x, w, b, list(st), list(pad), list(dil), g), (x, w, b), dy)
        for a, e in zip(got, again):
            assert torch.equal(a, e), "repeated backward differs (must be deterministic)"


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("tf32", [False, True])
def test_cuda_tf32_switch(tf32):
    """float32 runs on tensor cores (TF32) only when torch.backends.cudnn.allow_tf32 is on."""
    import cnnfast  # noqa: F401

    x = torch.randn(2, 16, 12, 12, device="cuda")
    w = torch.randn(32, 16, 3, 3, device="cuda")
    old = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = tf32
        out = torch.ops.cnnfast.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 1)
    finally:
        torch.backends.cudnn.allow_tf32 = old
    ref = F.conv2d(x.double(), w.double(), None, 1, 1)
    err = (out.double() - ref).abs().max().item()
    assert err < (5e-2 if tf32 else 1e-3)
