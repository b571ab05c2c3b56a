"""cnnfast.functional.conv2d_add_relu (the fused residual op) against torch's relu(conv2d(...) + residual):
forward and the gradients of input, weight, bias and residual on every CPU output path (direct tiles,
row tiles, 1x1, sixteen images per vector, Winograd) and SIMD capability, float32 and float64, memory
formats, bit-identical for any thread count; gradcheck, opcheck and torch.compile; and its CUDA kernel
through the CUDA-on-CPU harness."""
import math

import pytest
import torch
import torch.nn.functional as F

import cnnfast
from reference import (assert_bit_identical_for_thread_counts, assert_close_to_reference, memory_format_of,
                       to_format)
from test_conv2d import GRID
from test_cpu_capability import PATHS


def fused(x, w, b, r, **kw):
    return cnnfast.functional.conv2d_add_relu(x, w, b, r, **kw)


def reference(x, w, b, r, **kw):
    return F.relu(F.conv2d(x, w, b, **kw) + r)


def run_add_relu_case(n, c, h, w, k, kernel, stride=1, padding=0, dilation=1, groups=1, bias=True,
                      dtype=torch.float32, fmt="nchw", residual_fmt=None, seed=0):
    """Forward and all four gradients of the fused op against torch in `dtype`, each against float64."""
    g = torch.Generator().manual_seed(seed)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    x0 = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    w0 = torch.randn(k, c // groups, kh, kw, generator=g, dtype=torch.float64)
    b0 = torch.randn(k, generator=g, dtype=torch.float64) if bias else None
    red = (c // groups) * kh * kw
    out_shape = F.conv2d(x0, w0, None, **args).shape
    # Of the convolution's scale (sqrt(red)), so that the addition moves the ReLU's mask.
    r0 = torch.randn(out_shape, generator=g, dtype=torch.float64) * math.sqrt(red)
    residual_fmt = residual_fmt or fmt

    def leaves(d):
        return (to_format(x0.to(d), fmt).requires_grad_(), w0.to(d).requires_grad_(),
                b0.to(d).requires_grad_() if bias else None, to_format(r0.to(d), residual_fmt).requires_grad_())

    lo, lt, lr = leaves(dtype), leaves(dtype), leaves(torch.float64)
    yo, yt, yr = fused(*lo, **args), reference(*lt, **args), reference(*lr, **args)
    what = f"conv2d_add_relu n={n} c={c} {h}x{w} k={k} kernel={kernel} {args} {dtype} {fmt}/{residual_fmt}"
    # One more term than the convolution: the residual.
    assert_close_to_reference(yo, yt, yr, red + 1, what + " forward")
    assert memory_format_of(yo) == memory_format_of(yt), what + ": output memory format differs from torch's"
    if yo.numel() == 0:
        return
    gy = torch.randn(yr.shape, generator=g, dtype=torch.float64)
    pick = lambda ls: [t for t in ls if t is not None]  # noqa: E731
    go = torch.autograd.grad(yo, pick(lo), gy.to(dtype))
    gt = torch.autograd.grad(yt, pick(lt), gy.to(dtype))
    gr = torch.autograd.grad(yr, pick(lr), gy)
    pq = yr.shape[0] * yr.shape[2] * yr.shape[3]
    names = ["grad_input", "grad_weight"] + (["grad_bias"] if bias else []) + ["grad_residual"]
    lengths = [(k // groups) * kh * kw, pq] + ([pq] if bias else []) + [1]
    for name, a, t, r, length in zip(names, go, gt, gr, lengths):
        assert_close_to_reference(a, t, r, length, f"{what} {name}")
    # The residual's gradient is grad_output where the output is not <= 0: no arithmetic, torch's bits.
    assert torch.equal(go[-1], torch.where(yo > 0, gy.to(dtype), 0)), what + " grad_residual is not the masked grad"


@pytest.mark.parametrize("fmt", ["nchw", "channels_last"])
@pytest.mark.parametrize("case", GRID, ids=[str(i) for i in range(len(GRID))])
def test_conv2d_add_relu_matches_torch(case, fmt):
    n, c, h, w, k, kernel, stride, padding, dilation, groups = case
    run_add_relu_case(n, c, h, w, k, kernel, stride, padding, dilation, groups, fmt=fmt)


# (n, c, h, w, k, kernel, stride, padding): one of each output path of the direct convolution.
DIRECT_PATHS = [
    (2, 16, 9, 9, 32, 3, 2, 1),     # pixel tiles, copied out (the residual added by the copy)
    (2, 3, 12, 12, 130, 3, 1, 1),   # 130 output channels: past a register block and a work item's rows
    (1, 160, 6, 6, 20, 3, 1, 1),    # a reduction of 1440 (several GEMM slices) on pixel tiles
    (1, 64, 4, 64, 8, 3, 1, 1),     # row tiles with a reduction of 576: the GEMM adds the residual once, at the end
    (2, 70, 5, 5, 13, 1, 1, 0),     # 1x1 stride 1: the GEMM writes the output
    (1, 3, 40, 96, 8, 7, 2, 3),     # 48 wide: row tiles, the GEMM writes the output
    (2, 2, 5, 112, 70, 3, 1, 1),    # 112 wide row tiles, a masked last vector
]


@pytest.mark.parametrize("case", DIRECT_PATHS, ids=[str(c) for c in DIRECT_PATHS])
@pytest.mark.parametrize("path", PATHS)
def test_conv2d_add_relu_direct_paths_on_every_capability(monkeypatch, path, case):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    monkeypatch.setattr(cnnfast.backends.cpu, "images_per_vector", "off")
    monkeypatch.setattr(cnnfast.backends.cpu, "winograd", "off")
    n, c, h, w, k, kernel, stride, padding = case
    run_add_relu_case(n, c, h, w, k, kernel, stride, padding)
    run_add_relu_case(n, c, h, w, k, kernel, stride, padding, bias=False, seed=1)


@pytest.mark.parametrize("case", [(2, 3, 9, 9, 5, 3, 1, 1), (2, 70, 5, 5, 13, 1, 1, 0), (1, 3, 40, 96, 8, 7, 2, 3)])
def test_conv2d_add_relu_float64(case):
    n, c, h, w, k, kernel, stride, padding = case
    run_add_relu_case(n, c, h, w, k, kernel, stride, padding, dtype=torch.float64)
    run_add_relu_case(n, c, h, w, k, kernel, stride, padding, dtype=torch.float64, fmt="channels_last")


# (n, c, h, w, k, kernel, stride, padding) for the images-per-vector layout: blocks of 16 images full
# and partial (the residual added in from_ipv's transposing copy, or its portable loop).
IPV_CASES = [(16, 6, 14, 14, 16, 5, 1, 0), (17, 16, 7, 7, 32, 3, 1, 1), (15, 4, 6, 11, 7, 3, 2, 0)]


@pytest.mark.parametrize("case", IPV_CASES, ids=[str(c) for c in IPV_CASES])
@pytest.mark.parametrize("path", PATHS)
def test_conv2d_add_relu_images_per_vector(monkeypatch, path, case):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    monkeypatch.setattr(cnnfast.backends.cpu, "images_per_vector", "on")
    n, c, h, w, k, kernel, stride, padding = case
    run_add_relu_case(n, c, h, w, k, kernel, stride, padding)


# (n, c, h, w, k, padding, groups) for Winograd: tile-major and channel-major orders, half tiles at odd
# output sizes, tiles across images, groups.
WINOGRAD_CASES = [
    (2, 32, 8, 8, 32, 1, 1),
    (3, 40, 7, 9, 33, 1, 1),
    (2, 33, 13, 11, 35, 2, 1),
    (2, 16, 1, 7, 16, 1, 1),
    (1, 33, 6, 6, 40, 1, 1),     # channel-major
    (2, 64, 4, 4, 128, 1, 2),    # channel-major with groups
]


@pytest.mark.parametrize("case", WINOGRAD_CASES, ids=[str(c) for c in WINOGRAD_CASES])
@pytest.mark.parametrize("path", PATHS)
def test_conv2d_add_relu_winograd(monkeypatch, path, case):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    monkeypatch.setattr(cnnfast.backends.cpu, "winograd", "on")
    n, c, h, w, k, padding, groups = case
    run_add_relu_case(n, c, h, w, k, 3, 1, padding, 1, groups)


def test_conv2d_add_relu_residual_in_another_memory_format():
    run_add_relu_case(2, 8, 9, 9, 8, 3, 1, 1, fmt="nchw", residual_fmt="channels_last")
    run_add_relu_case(2, 8, 9, 9, 8, 3, 1, 1, fmt="channels_last", residual_fmt="nchw")
    run_add_relu_case(2, 8, 9, 9, 8, 3, 1, 1, fmt="nchw", residual_fmt="strided")


def _settings_cases():
    """(settings, shape) pairs that reach every forward path: (n, c, h, w, k, kernel, stride, padding)."""
    yield dict(images_per_vector="off", winograd="off"), (3, 8, 11, 9, 12, 3, 2, 1)   # pixel tiles
    yield dict(images_per_vector="off", winograd="off"), (2, 4, 6, 64, 24, 3, 1, 1)   # row tiles
    yield dict(images_per_vector="off", winograd="off"), (2, 24, 7, 7, 30, 1, 1, 0)   # 1x1
    yield dict(images_per_vector="on", winograd="off"), (17, 6, 10, 10, 12, 3, 1, 1)  # images per vector
    yield dict(images_per_vector="off", winograd="on"), (3, 32, 9, 11, 40, 3, 1, 1)   # Winograd, tile-major
    yield dict(images_per_vector="off", winograd="on"), (1, 64, 3, 3, 40, 3, 1, 1)    # Winograd, channel-major


@pytest.mark.parametrize("flags,shape", list(_settings_cases()))
@pytest.mark.parametrize("path", PATHS)
def test_conv2d_add_relu_bit_identical_for_any_thread_count(monkeypatch, path, flags, shape):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    for name, value in flags.items():
        monkeypatch.setattr(cnnfast.backends.cpu, name, value)
    n, c, h, w_, k, kernel, stride, padding = shape
    g = torch.Generator().manual_seed(3)
    x, w = torch.randn(n, c, h, w_, generator=g), torch.randn(k, c, kernel, kernel, generator=g)
    b = torch.randn(k, generator=g)
    r = torch.randn(F.conv2d(x, w, b, stride=stride, padding=padding).shape, generator=g)
    gy = torch.randn(r.shape, generator=g)

    def run():
        leaves = [t.clone().requires_grad_() for t in (x, w, b, r)]
        y = fused(*leaves, stride=stride, padding=padding)
        return [y, *torch.autograd.grad(y, leaves, gy)]

    assert_bit_identical_for_thread_counts(run)


def test_conv2d_add_relu_float64_gradcheck():
    # Pre-activations away from the ReLU kink at 0 (finite differences across it are meaningless).
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    r = torch.randn(1, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    pre = F.conv2d(x, w, b, padding=1) + r
    assert pre.abs().min() > 1e-3
    assert torch.autograd.gradcheck(lambda x, w, b, r: fused(x, w, b, r, padding=1), (x, w, b, r))
    # Only some arguments requiring grad: the others get none, the residual alone included.
    y = fused(x.detach(), w.detach(), None, r, padding=1)
    (gr,) = torch.autograd.grad(y.sum(), [r])
    assert torch.equal(gr, (y > 0).double())


def test_conv2d_add_relu_nan_and_unbatched():
    x, w, b = torch.randn(2, 6, 6), torch.randn(4, 2, 3, 3), torch.randn(4)
    r = torch.randn(4, 6, 6)
    r[1, 2, 3] = float("nan")
    ours, theirs = fused(x, w, b, r, padding=1), reference(x, w, b, r, padding=1)
    assert ours.shape == theirs.shape == (4, 6, 6)
    assert torch.equal(ours.isnan(), theirs.isnan()) and ours.isnan().sum() == 1
    torch.testing.assert_close(ours, theirs, equal_nan=True)


def _op_samples():
    x = torch.randn(2, 4, 7, 6, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, requires_grad=True)
    b = torch.randn(6, requires_grad=True)
    yield (x, w, b, torch.randn(2, 6, 7, 2, requires_grad=True), [1, 2], [1, 0], [1, 1], 2)
    xc = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    rc = torch.randn(2, 6, 2, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    yield (xc, w, None, rc, [2, 1], [0, 1], [2, 1], 2)
    yield (x.double().detach().requires_grad_(), torch.randn(3, 4, 1, 1, dtype=torch.float64, requires_grad=True),
           None, torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True), [1, 1], [0, 0], [1, 1], 1)


def test_conv2d_add_relu_opcheck():
    for args in _op_samples():
        torch.library.opcheck(torch.ops.cnnfast.conv2d_add_relu, args)


def test_conv2d_add_relu_backward_opcheck_and_output_mask():
    x, w = torch.randn(2, 4, 7, 6), torch.randn(6, 2, 3, 3)
    gy, out = torch.randn(2, 6, 5, 4), torch.relu(torch.randn(2, 6, 5, 4))
    for mask in ([True, True, True, True], [False, False, False, True], [True, False, True, False],
                 [False, True, False, True]):
        args = (gy, out, x, w, [1, 1], [0, 0], [1, 1], 2, mask)
        torch.library.opcheck(torch.ops.cnnfast.conv2d_add_relu_backward, args)
        grads = torch.ops.cnnfast.conv2d_add_relu_backward(*args)
        assert [g is not None for g in grads] == mask
        if mask[3]:
            assert torch.equal(grads[3], torch.where(out > 0, gy, 0))


def test_conv2d_add_relu_compiles_fullgraph():
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    w = torch.randn(4, 4, 3, 3, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    r = torch.randn(2, 4, 8, 8, requires_grad=True)
    compiled = torch.compile(lambda x, w, b, r: fused(x, w, b, r, padding=1), fullgraph=True, backend="aot_eager")
    y = compiled(x, w, b, r)
    assert torch.equal(y, fused(x, w, b, r, padding=1))
    grads = torch.autograd.grad(y.sum(), [x, w, b, r])
    expected = torch.autograd.grad(fused(x, w, b, r, padding=1).sum(), [x, w, b, r])
    assert all(torch.equal(a, e) for a, e in zip(grads, expected))


def test_conv2d_add_relu_second_derivative_raises():
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    r = torch.randn(1, 3, 3, 3, requires_grad=True)
    (gr,) = torch.autograd.grad(fused(x, w, None, r).sum(), [r], create_graph=True)
    with pytest.raises(RuntimeError, match="cnnfast::conv2d_add_relu: second derivatives"):
        gr.sum().backward()


# ---- CUDA kernels through the CUDA-on-CPU harness, and on a real device --------------------------
# The CUDA op is conv2d's forward kernels (bias in their epilogue) followed by the add + ReLU kernel
# (csrc/cuda/conv2d_add_relu_kernel.cuh); here that sequence runs on the CPU through the harness in
# every dtype and storage order, and cnnfast::conv2d_add_relu on a CUDA device where there is one. Its
# backward is relu_backward's and conv2d's kernels, tested in tests/test_relu.py and tests/test_conv2d.py.

from cuda_harness import (  # noqa: E402,F401  (lib: a fixture)
    DTYPES, EPS, EPS_ACC, P, assert_device_result, assert_within, float64_twins, from_nhwc, harness, lib,
    needs_cuda, nhwc, run_orders)
from test_conv2d import CONV_CASES, CONV_IDS, conv_sizes, rounded_inputs  # noqa: E402


@harness
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_cuda_kernel_conv2d_add_relu_forward(lib, dtype, layout, case):
    x, w, b = rounded_inputs(case, dtype, seed=4)
    st, pad, dil, g = case[7:]
    Kr = w.shape[1] * w.shape[2] * w.shape[3]
    is_nhwc = layout == "nhwc"
    conv64 = F.conv2d(x.double(), w.double(), b.double(), st, pad, dil, g)
    mag = F.conv2d(x.double().abs(), w.double().abs(), b.double().abs(), st, pad, dil, g)
    gen = torch.Generator().manual_seed(5)
    r = (torch.randn(conv64.shape, generator=gen) * conv64.abs().mean()).to(dtype)
    expect = (conv64 + r.double()).relu()
    xs, ws, rs = (nhwc(x), nhwc(w), nhwc(r)) if is_nhwc else (x.contiguous(), w.contiguous(), r.contiguous())
    N, K, Pq, Qq = conv64.shape
    y = torch.empty((N, Pq, Qq, K) if is_nhwc else (N, K, Pq, Qq), dtype=dtype)
    for tf32 in (0, 1) if dtype == torch.float32 else (0,):
        def fwd():
            lib.call("cnnfast_conv2d_forward", DTYPES[dtype], conv_sizes(case), int(is_nhwc), P(xs), P(ws), P(b),
                     0, tf32, P(y))
            lib.call("cnnfast_add_relu", DTYPES[dtype], P(rs), P(y), y.numel())
            return [y]

        (out,) = run_orders(lib, fwd)
        out = from_nhwc(out) if is_nhwc else out
        # The convolution's bound (its sum and one rounding to dtype), then the addition's rounding in
        # float and to dtype; the ReLU moves no error.
        input_rounding = 2 * 2.0**-11 * mag if tf32 else 0
        bound = (EPS_ACC * (Kr + 2) * mag + input_rounding + EPS[dtype] * conv64.abs()
                 + (EPS_ACC + EPS[dtype]) * (conv64 + r.double()).abs() + 1e-30)
        assert_within(out, expect, bound, f"conv2d_add_relu forward tf32={tf32}")
        assert (out >= 0).all()


@harness
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_cuda_kernel_add_relu_vector_and_tail(lib, dtype):
    # 16-byte vectors, the scalar tail, a misaligned start (the scalar path), NaN kept, -0.0 as torch.
    for n, offset in ((1000, 0), (37, 0), (64, 1)):
        gen = torch.Generator().manual_seed(n)
        y0 = torch.randn(n + offset, generator=gen).to(dtype)
        r0 = torch.randn(n + offset, generator=gen).to(dtype)
        y0[offset + 3], r0[offset + 5] = float("nan"), float("nan")
        y, r = y0.clone()[offset:], r0[offset:]

        def run():
            y.copy_(y0[offset:])
            lib.call("cnnfast_add_relu", DTYPES[dtype], P(r), P(y), n)
            return [y]

        (out,) = run_orders(lib, run)
        expect = torch.relu(y0[offset:].float() + r.float()).to(dtype)
        assert torch.equal(out.isnan(), expect.isnan())
        assert torch.equal(torch.nan_to_num(out), torch.nan_to_num(expect)), f"n={n} offset={offset}"


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_cuda_conv2d_add_relu_against_torch(dtype, channels_last, case, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    x, w, b = (t.cuda() for t in rounded_inputs(case, dtype))
    if channels_last:
        x, w = x.to(memory_format=torch.channels_last), w.to(memory_format=torch.channels_last)
    N, C, _, _, K, R, S, st, pad, dil, g = case
    r = torch.randn(F.conv2d(x, w, b, st, pad, dil, g).shape, device="cuda").to(dtype)
    if channels_last:
        r = r.contiguous(memory_format=torch.channels_last)
    leaves = [t.requires_grad_() for t in (x, w, b, r)]
    twins = float64_twins(*leaves)
    out = torch.ops.cnnfast.conv2d_add_relu(x, w, b, r, list(st), list(pad), list(dil), g)
    ref = (F.conv2d(x, w, b, st, pad, dil, g) + r).relu()
    truth = (F.conv2d(*twins[:3], st, pad, dil, g) + twins[3]).relu()
    what = f"conv2d_add_relu {case} {dtype} channels_last={channels_last}"
    assert_device_result([out], [ref], [truth], [(C // g) * R * S + 1], dtype, what)
    dy = torch.randn_like(ref)
    got = torch.autograd.grad(out, leaves, dy)
    theirs = torch.autograd.grad(ref, leaves, dy)
    true = torch.autograd.grad(truth, twins, dy.double().cpu())
    pq = truth.shape[0] * truth.shape[2] * truth.shape[3]
    assert_device_result(got, theirs, true, [(K // g) * R * S, pq, pq, 1], dtype, what + " backward",
                         torch_truth=None)
