"""cnnfast.functional.max_pool2d (cnnfast::max_pool2d, cnnfast::max_pool2d_backward) against torch.

Max pooling does no arithmetic: outputs, indices and gradients are compared exactly (the backward
sums at most (kernel/stride)^2 gradients per element, exactly as torch's does when windows do not
overlap; with overlap the order of the sum may differ, so there the comparison allows float rounding)."""
from math import ceil, floor

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnfast
from reference import assert_bit_identical_for_thread_counts, memory_format_of, to_format
from test_cpu_capability import PATHS as ALL_PATHS


def assert_same_for_1_and_2_threads(run):
    """run() gives a tuple of tensors (an output and gradients): each bit-identical on 1 and on 2 threads."""
    assert_bit_identical_for_thread_counts(run, threads=(2,))


def run_pool_case(shape, kernel, stride=None, padding=0, dilation=1, ceil_mode=False, fmt="nchw",
                  dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = to_format(torch.randn(*shape, generator=g, dtype=dtype), fmt)
    xo, xt = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    if fmt == "strided":
        xo, xt = to_format(x0, fmt).requires_grad_(), to_format(x0, fmt).requires_grad_()
    args = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode,
                return_indices=True)
    (yo, io), (yt, it) = cnnfast.functional.max_pool2d(xo, **args), F.max_pool2d(xt, **args)
    what = f"max_pool2d {shape} {args} {fmt}"
    assert torch.equal(yo, yt), what
    assert torch.equal(io, it), what
    assert memory_format_of(yo) == memory_format_of(yt), what
    if yo.numel():
        gy = torch.randn(yt.shape, generator=g, dtype=dtype)
        (go,), (gt,) = torch.autograd.grad(yo, xo, gy), torch.autograd.grad(yt, xt, gy)
        torch.testing.assert_close(go, gt, msg=what)


GRID = [
    ((2, 6, 28, 28), 2, None, 0, 1, False),      # LeNet
    ((2, 64, 16, 16), 3, 2, 1, 1, False),        # ResNet stem pool: overlapping windows
    ((3, 4, 15, 13), 3, 2, 1, 1, True),          # ceil_mode, odd sizes
    ((1, 3, 10, 11), (2, 3), (1, 2), (1, 1), 1, False),  # non-square
    ((2, 2, 12, 12), 3, 1, 1, 2, False),         # dilation 2, stride 1
    ((2, 2, 13, 12), 2, 3, 0, 3, True),          # dilation 3, ceil_mode
    ((0, 3, 8, 8), 2, None, 0, 1, False),        # empty batch
    ((2, 3, 5, 5), 5, None, 2, 1, False),        # window bigger than the input, padded
    ((1, 1, 1, 1), 1, None, 0, 1, False),        # 1x1
]


@pytest.mark.parametrize("fmt", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("case", GRID, ids=[str(i) for i in range(len(GRID))])
def test_max_pool2d_matches_torch(case, fmt):
    shape, kernel, stride, padding, dilation, ceil_mode = case
    run_pool_case(shape, kernel, stride, padding, dilation, ceil_mode, fmt=fmt)


def test_max_pool2d_float64_and_unbatched():
    run_pool_case((3, 9, 9), 3, 2, 1, dtype=torch.float64)
    x = torch.randn(3, 9, 9)
    assert torch.equal(cnnfast.functional.max_pool2d(x, 2), F.max_pool2d(x, 2))


def test_max_pool2d_nan_wins_its_window():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = float("nan")
    x[0, 0, 3, 3] = float("nan")
    (yo, io), (yt, it) = [f(x, 2, return_indices=True) for f in (cnnfast.functional.max_pool2d, F.max_pool2d)]
    assert torch.equal(yo.isnan(), yt.isnan()) and yo.isnan().sum() == 2
    assert torch.equal(io, it)
    assert io[0, 0, 0, 0] == 1 and io[0, 0, 1, 1] == 15  # the NaN's position, h * W + w


def test_max_pool2d_ties_keep_the_first_maximum():
    x = torch.zeros(1, 1, 4, 4)
    (_, io), (_, it) = [f(x, 2, return_indices=True) for f in (cnnfast.functional.max_pool2d, F.max_pool2d)]
    assert torch.equal(io, it)


def test_max_pool2d_gradcheck_float64():
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: cnnfast.functional.max_pool2d(x, 3, 2, 1, ceil_mode=True), (x,))


def test_max_pool2d_opcheck():
    x = torch.randn(2, 3, 9, 8, requires_grad=True)
    torch.library.opcheck(torch.ops.cnnfast.max_pool2d, (x, [3, 2], [2, 2], [1, 1], [1, 1], True))
    torch.library.opcheck(torch.ops.cnnfast.max_pool2d,
                          (x.detach().contiguous(memory_format=torch.channels_last), [2, 2], [1, 2], [0, 0], [2, 1], False))
    _, idx = torch.ops.cnnfast.max_pool2d(x.detach(), [3, 2], [2, 2], [1, 1], [1, 1], True)
    torch.library.opcheck(torch.ops.cnnfast.max_pool2d_backward,
                          (torch.randn(idx.shape), x.detach(), idx, [3, 2], [2, 2], [1, 1], [1, 1], True))


def test_max_pool2d_bit_identical_for_any_thread_count():
    x = torch.randn(4, 8, 21, 19, requires_grad=True)

    def run():
        y = cnnfast.functional.max_pool2d(x, 3, 1, 1)
        return y, torch.autograd.grad(y, x, torch.ones_like(y))[0]

    assert_same_for_1_and_2_threads(run)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 2), c=st.integers(1, 3), h=st.integers(1, 12), w=st.integers(1, 12),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       dh=st.integers(1, 2), dw=st.integers(1, 2), ceil_mode=st.booleans(), data=st.data())
def test_max_pool2d_random_arguments(n, c, h, w, kh, kw, sh, sw, dh, dw, ceil_mode, data):
    # torch's return_indices path allows padding up to half the (undilated) kernel; its other path,
    # and cnnfast, up to half the dilated window: draw what both of torch's paths accept.
    ph = data.draw(st.integers(0, kh // 2))
    pw = data.draw(st.integers(0, kw // 2))
    h = max(h, dh * (kh - 1) + 1 - 2 * ph)
    w = max(w, dw * (kw - 1) + 1 - 2 * pw)
    # A dilated window can fall entirely in the padding: torch's backward then writes at an index that
    # may lie outside the plane, so those cases are judged by run_empty_window_case.
    args = ((kh, kw), (sh, sw), (ph, pw), (dh, dw), ceil_mode)
    if empty_window_mask(h, w, *args).any():
        run_empty_window_case((n, c, h, w), *args)
    else:
        run_pool_case((n, c, h, w), *args)


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def window_misses(size, kernel, stride, pad, dilation, o):
    return not any(0 <= o * stride - pad + k * dilation < size for k in range(kernel))


def empty_window_mask(H, W, kernel, stride, padding, dilation, ceil_mode):
    """[P, Q]: the windows that hold no input element (every tap in the padding)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = pair(kernel), pair(stride or kernel), pair(padding), pair(dilation)

    def out(size, k, s, p, d):  # torch's output-size rule

        n = size + 2 * p - d * (k - 1) - 1
        o = (ceil(n / s) if ceil_mode else floor(n / s)) + 1
        return o - 1 if ceil_mode and (o - 1) * s >= size + p else o
    rows = torch.tensor([window_misses(H, kh, sh, ph, dh, o) for o in range(out(H, kh, sh, ph, dh))])
    cols = torch.tensor([window_misses(W, kw, sw, pw, dw, o) for o in range(out(W, kw, sw, pw, dw))])
    return rows[:, None] | cols[None, :]


def grad_dropping_empty_windows(x_shape, idx, gy, empty):
    """dx in float64 by hand: gy added at the indices of the windows that hold input (empty: the [P, Q]
    mask of the others, whose gradient is zero and whose index may lie outside the plane)."""
    N, C, H, W = x_shape
    i = torch.where(empty, 0, idx).reshape(N * C, -1)
    v = torch.where(empty, 0.0, gy.double()).reshape(N * C, -1)
    return torch.zeros(N * C, H * W, dtype=torch.float64).scatter_add_(1, i, v).reshape(N, C, H, W)


def run_empty_window_case(shape, kernel, stride, padding, dilation, ceil_mode, dtype=torch.float32, fmt="nchw",
                          seed=0):
    # Forward: torch's answer exactly (-inf, and torch's index, inside or outside the plane). Backward:
    # against the hand-made float64 gradient, never torch's (it writes at those indices).
    g = torch.Generator().manual_seed(seed)
    x = to_format(torch.randn(*shape, generator=g, dtype=dtype), fmt).requires_grad_()
    args = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode,
                return_indices=True)
    (yo, io), (yt, it) = cnnfast.functional.max_pool2d(x, **args), F.max_pool2d(x.detach(), **args)
    what = f"max_pool2d {shape} {args} {dtype} {fmt}"
    empty = empty_window_mask(shape[2], shape[3], kernel, stride, padding, dilation, ceil_mode)
    assert empty.any() and (yt[..., empty] == float("-inf")).all(), what
    assert torch.equal(yo, yt), what
    assert torch.equal(io, it), what
    assert memory_format_of(yo) == memory_format_of(yt), what
    if yo.numel():
        gy = torch.randn(yt.shape, generator=g, dtype=dtype)
        (go,), ref = torch.autograd.grad(yo, x, gy), grad_dropping_empty_windows(shape, it, gy, empty)
        torch.testing.assert_close(go, ref.to(dtype), msg=what)


# Windows with no input element: torch accepts them (dilation, ceil_mode) and returns -inf with the
# index of the window's first tap at or after (0, 0), which may lie outside the plane or inside it.
EMPTY_GRID = [
    ((2, 3, 2, 5), (2, 2), 1, (1, 0), (3, 1), False),    # dilation in rows only: every row empty
    ((2, 3, 5, 2), (2, 2), 1, (0, 1), (1, 3), False),    # columns only: indices inside the plane
    ((1, 2, 2, 2), 2, 1, 1, 3, False),                   # both: -inf and index 6
    ((2, 2, 1, 6), 2, 2, 1, (3, 1), True),               # ceil_mode: no output without it
    ((3, 5, 2, 40), (2, 2), (4, 2), (1, 0), (3, 1), False),  # rows the SIMD forward and write-once would take
    ((2, 4, 3, 33), (2, 3), (1, 1), (1, 1), (4, 1), True),   # column stride 1, ceil_mode
]


def test_max_pool2d_window_of_padding_only_gives_torch_s_answer():
    # 2x2 input, kernel 2, stride 1, padding 1, dilation 3: the taps are rows and columns -1 and 2.
    x = torch.randn(1, 1, 2, 2)
    y, idx = cnnfast.functional.max_pool2d(x, 2, 1, 1, 3, return_indices=True)
    assert y.item() == float("-inf") and idx.item() == 6
    ty, tidx = F.max_pool2d(x, 2, 1, 1, 3, return_indices=True)
    assert torch.equal(y, ty) and torch.equal(idx, tidx)


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("fmt", ["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", EMPTY_GRID, ids=[str(i) for i in range(len(EMPTY_GRID))])
def test_max_pool2d_empty_windows_match_torch(case, dtype, fmt, path, monkeypatch):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    run_empty_window_case(*case, dtype=dtype, fmt=fmt)


def torch_rule_max_pool2d(x, kernel, stride, padding, dilation, ceil_mode):
    """torch's forward rule written out (value from -inf, index from the first tap at or after (0, 0)),
    for arguments torch itself refuses."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = pair(kernel), pair(stride), pair(padding), pair(dilation)
    N, C, H, W = x.shape
    P, Q = empty_window_mask(H, W, kernel, stride, padding, dilation, ceil_mode).shape
    y, idx = torch.empty(N, C, P, Q, dtype=x.dtype), torch.empty(N, C, P, Q, dtype=torch.long)
    for oh, ow in ((a, b) for a in range(P) for b in range(Q)):
        h0, w0 = oh * sh - ph, ow * sw - pw
        while h0 < 0:
            h0 += dh
        while w0 < 0:
            w0 += dw
        for n, c in ((a, b) for a in range(N) for b in range(C)):
            best, arg = float("-inf"), h0 * W + w0
            for ih in range(oh * sh - ph, oh * sh - ph + kh * dh, dh):
                for iw in range(ow * sw - pw, ow * sw - pw + kw * dw, dw):
                    if 0 <= ih < H and 0 <= iw < W:
                        v = x[n, c, ih, iw].item()
                        if v > best or v != v:
                            best, arg = v, ih * W + iw
            y[n, c, oh, ow], idx[n, c, oh, ow] = best, arg
    return y, idx


@pytest.mark.parametrize("path", ALL_PATHS)
def test_max_pool2d_mix_of_empty_and_full_windows(path, monkeypatch):
    # cnnfast takes padding up to half the dilated window (torch: half the kernel), where empty and
    # full windows mix: row window 0 (taps -2, 1) is empty, row window 1 (taps 0, 3) is not.
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    args = ((2, 2), (2, 2), (2, 0), (3, 1), True)
    x = torch.randn(2, 3, 1, 20, dtype=torch.float64, requires_grad=True)
    y, idx = torch.ops.cnnfast.max_pool2d(x, *map(list, args[:4]), args[4])
    ry, ridx = torch_rule_max_pool2d(x.detach(), *args)
    empty = empty_window_mask(1, 20, *args)
    assert empty.any() and not empty.all()
    assert torch.equal(y, ry) and torch.equal(idx, ridx)
    gy = torch.randn(y.shape, dtype=torch.float64)
    (gx,) = torch.autograd.grad(y, x, gy)
    torch.testing.assert_close(gx, grad_dropping_empty_windows(x.shape, ridx, gy, empty))


# The SIMD paths (csrc/cpu/max_pool2d/max_pool2d_simd.inc, compiled for AVX-512 and for AVX2): the
# forward (window column stride 1 or 2, L outputs per vector: 16 float / 8 double on AVX-512, 8 / 4 on
# AVX2; output rows gathered 4 at a time across planes, float rows of at most L/2 outputs two to a
# vector, loads masked only at the ends of the tensor) and the write-once backward (2-wide, stride-2
# column windows that do not overlap, rows of more than L/2 outputs on AVX-512, of at least 16 for
# AVX2 float, none for AVX2 double; shorter rows and every other window take the zero-and-scatter). Each case runs on every path the CPU has, against torch.
PATHS = ALL_PATHS

FAST_GRID = [
    ((2, 3, 28, 28), 2, 2, 0, 1, False),          # LeNet: 14 outputs a row (a partial vector)
    ((2, 2, 12, 70), 2, 2, 0, 1, False),          # 35 a row: whole vectors and a tail; write-once bwd
    ((2, 2, 29, 37), 2, 2, 0, 1, False),          # odd H, W: last row and column in no window
    ((2, 2, 29, 37), 2, 2, 0, 1, True),           # ceil_mode: last windows hang over
    ((3, 5, 10, 10), 2, 2, 0, 1, False),          # 5x5 planes: row batches cross planes
    ((1, 7, 14, 14), 2, 2, 0, 1, True),           # 7x7 planes, odd plane count
    ((4, 3, 9, 11), 3, 2, 1, 1, True),            # short rows in pairs, with padding
    ((3, 4, 12, 13), 2, 2, 0, 2, False),          # short rows in pairs, column dilation
    ((2, 3, 40, 45), 3, 2, 1, 1, False),          # ResNet stem pool: padding, overlap
    ((1, 2, 33, 50), 3, 2, 1, 1, True),
    ((2, 2, 19, 40), 3, 1, 1, 1, False),          # column stride 1
    ((1, 2, 21, 47), (2, 3), (2, 1), (1, 1), 1, True),
    ((2, 2, 16, 60), 2, 2, 0, 2, False),          # column dilation with stride 2
    ((2, 2, 17, 40), 2, 2, (1, 0), 1, True),      # row padding, write-once bwd
    ((2, 2, 20, 40), (1, 2), (3, 2), 0, 1, False),  # rows between windows: write-once bwd zeroes them
    ((1, 1, 1, 40), (1, 2), (1, 2), 0, 1, False),  # one row
    ((2, 2, 11, 90), 2, (2, 3), 0, 1, False),     # column stride 3: portable path
]


def pool_values(shape, kind, dtype, g):
    if kind == "randn":
        return torch.randn(*shape, generator=g, dtype=dtype)
    if kind == "ties":  # few distinct values: many windows with a tie for the maximum
        return torch.randint(-2, 3, shape, generator=g).to(dtype)
    if kind == "equal":
        return torch.full(shape, 0.5, dtype=dtype)
    if kind == "-inf":  # windows of -inf only (their index is their first element's, as torch)
        x = torch.randn(*shape, generator=g, dtype=dtype)
        return x.masked_fill(torch.rand(*shape, generator=g) < 0.8, float("-inf"))
    if kind == "nan":  # at most one NaN per window
        x = torch.randn(*shape, generator=g, dtype=dtype)
        x[..., ::4, 1::4] = float("nan")
        return x
    if kind == "nans":  # several NaNs in most windows: the index is the last NaN's in window order
        x = torch.randn(*shape, generator=g, dtype=dtype)
        return x.masked_fill(torch.rand(*shape, generator=g) < 0.5, float("nan"))
    raise ValueError(kind)


def run_values_case(case, kind, dtype=torch.float32, fmt="nchw", seed=0):
    shape, kernel, stride, padding, dilation, ceil_mode = case
    g = torch.Generator().manual_seed(seed)
    x0 = to_format(pool_values(shape, kind, dtype, g), fmt)
    xo, xt = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    args = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode,
                return_indices=True)
    (yo, io), (yt, it) = cnnfast.functional.max_pool2d(xo, **args), F.max_pool2d(xt, **args)
    what = f"max_pool2d {shape} {args} {kind} {dtype} {fmt}"
    assert torch.equal(yo, yt) or (kind in ("nan", "nans") and torch.equal(yo.nan_to_num(9.0), yt.nan_to_num(9.0))), what
    assert torch.equal(io, it), what
    assert memory_format_of(yo) == memory_format_of(yt), what
    gy = torch.randn(yt.shape, generator=g, dtype=dtype)
    (go,), (gt,) = torch.autograd.grad(yo, xo, gy), torch.autograd.grad(yt, xt, gy)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    if (kh - 1) * dh + 1 <= sh and (kw - 1) * dw + 1 <= sw:  # no overlap: one gradient per element
        assert torch.equal(go, gt), what
    else:
        torch.testing.assert_close(go, gt, msg=what)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", ["randn", "ties", "equal", "-inf", "nan", "nans"])
@pytest.mark.parametrize("case", FAST_GRID, ids=[str(i) for i in range(len(FAST_GRID))])
def test_max_pool2d_simd_paths_match_torch(case, kind, path, monkeypatch):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    run_values_case(case, kind)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", [FAST_GRID[i] for i in (0, 1, 3, 5, 6, 8, 10, 13)])
def test_max_pool2d_simd_paths_float64_and_channels_last(case, path, monkeypatch):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    run_values_case(case, "ties", dtype=torch.float64)
    run_values_case(case, "nan", dtype=torch.float64)
    run_values_case(case, "nans", dtype=torch.float64)
    run_values_case(case, "randn", fmt="channels_last")


# Rows of Q outputs around the vector widths: 8 (AVX2 float) and 16 (AVX-512 float), 4 and 8 for
# double, the L/2 rule of the row pairs (two rows to a vector up to L/2) and the write-once backward's
# (AVX-512: above L/2; AVX2 float: from 16, in steps of 4 outputs with tails of 1-3). Each
# geometry gives rows of exactly Q outputs: 2x2 stride 2 (W = 2Q, and 2Q + 1 with a column in no
# window), 3x3 stride 2 pad 1 (overlap), 3x3 stride 1 pad 1, 2x2 stride 2 with ceil_mode (W = 2Q - 1).
EDGE_ROWS = [2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 15, 16, 17]


def edge_row_cases(q):
    return [
        ((2, 3, 6, 2 * q), 2, 2, 0, 1, False),
        ((3, 1, 5, 2 * q + 1), 2, 2, 0, 1, False),
        ((2, 3, 7, 2 * q - 1), 3, 2, 1, 1, False),
        ((1, 5, 4, q), 3, 1, 1, 1, False),
        ((2, 2, 5, 2 * q - 1), 2, 2, 0, 1, True),
    ]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("q", EDGE_ROWS)
def test_max_pool2d_simd_paths_rows_around_the_vector_widths(q, path, monkeypatch):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    for case in edge_row_cases(q):
        n, c, h, w = case[0]
        y = F.max_pool2d(torch.zeros(n, c, h, w), *case[1:5], ceil_mode=case[5])
        assert y.shape[-1] == q, (case, y.shape)
        for dtype in (torch.float32, torch.float64):
            for kind in ("randn", "ties", "-inf", "nans"):
                run_values_case(case, kind, dtype=dtype)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
# 35, 17, 15, 5 and 2 outputs a row: write-once rows (AVX-512 more than L/2, AVX2 float at least 16)
# and zero-and-scatter rows on each side of those rules.
@pytest.mark.parametrize("shape", [(2, 3, 12, 70), (2, 3, 8, 34), (2, 3, 8, 30), (2, 3, 10, 10), (2, 3, 6, 4)])
def test_max_pool2d_backward_takes_any_index_in_range(shape, dtype, path, monkeypatch):
    # Indices are the caller's: ones outside their own window (here: a tenth, moved anywhere in the
    # plane) are added where they point, as torch's backward does.
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(*shape, generator=g, dtype=dtype)
    args = ([2, 2], [2, 2], [0, 0], [1, 1], False)
    _, own = torch.ops.cnnfast.max_pool2d(x, *args)
    moved = torch.rand(own.shape, generator=g) < 0.1
    idx = own.masked_scatter(moved, torch.randint(0, shape[2] * shape[3], (int(moved.sum()),), generator=g))
    gy = torch.randn(idx.shape, generator=g, dtype=dtype)
    got = torch.ops.cnnfast.max_pool2d_backward(gy, x, idx, *args)
    torch.testing.assert_close(got, torch.ops.aten.max_pool2d_with_indices_backward(gy, x, *args, idx))
    # One bad index among the plane's own (the others all inside their windows, so the write-once
    # path, where the rows allow it, takes the plane): 2**32 + 5 is 5 in int32; 2**32 + w and
    # w - 2**32 are, in int32, w: a position inside the window.
    w = shape[3] * 4 + 2
    for bad in (-1, shape[2] * shape[3], 2**32, 2**32 + 5, -(2**40), 2**32 + w, w - 2**32):
        wrong = own.clone()
        wrong[1, 2, 2, 1] = bad
        with pytest.raises(RuntimeError, match=r"indices must lie in \[0, H\*W\)"):
            torch.ops.cnnfast.max_pool2d_backward(gy, x, wrong, *args)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("width", [33, 25, 9])  # 17, 13 and 5 outputs a row: write-once rows
def test_max_pool2d_backward_index_just_past_a_row_s_last_window(width, dtype, path, monkeypatch):
    # ceil_mode with an odd width: the last window of a row has one column, and "its" second column
    # is the next row's first element. An index pointing there is outside the window; it is added
    # there, as torch's backward does.
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 2, 6, width, generator=g, dtype=dtype)
    args = ([2, 2], [2, 2], [0, 0], [1, 1], True)
    _, idx = torch.ops.cnnfast.max_pool2d(x, *args)
    q = idx.shape[-1]
    idx[0, 1, 1, q - 1] = 3 * width  # input (3, 0), just past input row 2 of output (1, q - 1)'s window
    gy = torch.randn(idx.shape, generator=g, dtype=dtype)
    got = torch.ops.cnnfast.max_pool2d_backward(gy, x, idx, *args)
    assert torch.equal(got, torch.ops.aten.max_pool2d_with_indices_backward(gy, x, *args, idx))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("args", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_max_pool2d_simd_paths_bit_identical_for_any_thread_count(args, path, monkeypatch):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    x = torch.randn(5, 7, 30, 44, requires_grad=True)

    def run():
        y = cnnfast.functional.max_pool2d(x, *args, ceil_mode=True)
        return y, torch.autograd.grad(y, x, torch.randn(y.shape, generator=torch.Generator().manual_seed(0)))[0]

    assert_same_for_1_and_2_threads(run)


# ---- CUDA kernels through the CUDA-on-CPU harness, and on a real device --------------------------
# The max_pool2d kernels (csrc/cuda/max_pool2d_kernel.cuh) run on the CPU through the harness, and
# the ops on a CUDA device where there is one (with relu's, on the same shapes); the helpers are
# tests/cuda_harness.py's.

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from cuda_harness import (  # noqa: E402,F401  (lib: a fixture)
    DTYPES, EPS, P, assert_within, from_nhwc, harness, lib, needs_cuda, nhwc, run_orders, sizes_arg)


POOL_CASES = [
    # N, C, H, W, kernel, stride, padding, dilation, ceil_mode
    (1, 1, 4, 4, (2, 2), (2, 2), (0, 0), (1, 1), False),
    (3, 3, 9, 7, (3, 3), (2, 2), (1, 1), (1, 1), False),
    (2, 5, 8, 11, (3, 2), (1, 2), (1, 0), (2, 1), True),
    (1, 4, 7, 7, (3, 3), (2, 2), (1, 1), (1, 1), True),
]


# Windows with no input element (EMPTY_GRID): -inf and torch's index forward; a zero gradient
# backward (both kernels), against the hand-made float64 gradient (torch's writes at those indices).
EMPTY_POOL_CASES = [(*shape, pair(k), pair(s), pair(p), pair(d), ceil) for shape, k, s, p, d, ceil in EMPTY_GRID]


@harness
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("case", POOL_CASES + EMPTY_POOL_CASES, ids=lambda c: "x".join(map(str, c[:4])) + f"k{c[4][0]}{c[4][1]}s{c[5][0]}{c[5][1]}")
def test_cuda_kernel_max_pool2d(lib, dtype, layout, case):
    N, C, H, W, k, s, pad, d, ceil = case
    x = torch.randn(N, C, H, W).to(dtype)
    x[0, 0, 0, :2] = float("nan") if N * C > 2 else x[0, 0, 0, :2]
    ref, ref_idx = F.max_pool2d(x.float(), k, s, pad, d, ceil_mode=ceil, return_indices=True)
    Pq, Qq = ref.shape[2:]
    sizes = sizes_arg([N, C, H, W, Pq, Qq, *k, *s, *pad, *d])
    is_nhwc = layout == "nhwc"
    xs = nhwc(x) if is_nhwc else x.contiguous()
    shape = (N, Pq, Qq, C) if is_nhwc else (N, C, Pq, Qq)
    y = torch.empty(shape, dtype=dtype)
    idx = torch.empty(shape, dtype=torch.int64)

    def fwd():
        lib.call("cnnfast_max_pool2d", DTYPES[dtype], sizes, int(is_nhwc), P(xs), P(y), P(idx))
        return [y, idx]

    yo, io = run_orders(lib, fwd)
    if is_nhwc:
        yo, io = from_nhwc(yo), from_nhwc(io)
    torch.testing.assert_close(yo.float(), ref, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(io, ref_idx)

    # Backward, both kernels (gather over windows, per-plane scatter), against torch's, or by hand
    # where windows are empty.
    dy = torch.randn(N, C, Pq, Qq).to(dtype)
    empty = empty_window_mask(H, W, k, s, pad, d, ceil)
    if empty.any():
        ref_dx = grad_dropping_empty_windows(x.shape, ref_idx, dy, empty)
        mag = grad_dropping_empty_windows(x.shape, ref_idx, dy.abs(), empty)
    else:
        xr = x.double().requires_grad_()
        yr, _ = F.max_pool2d(xr, k, s, pad, d, ceil_mode=ceil, return_indices=True)
        yr.backward(dy.double())
        ref_dx = xr.grad
        xm = x.double().requires_grad_()
        F.max_pool2d(xm, k, s, pad, d, ceil_mode=ceil).backward(dy.double().abs())
        mag = xm.grad  # the sum of |dy| each element receives
    dys = nhwc(dy) if is_nhwc else dy.contiguous()
    idxs = nhwc(ref_idx) if is_nhwc else ref_idx.contiguous()
    for gather in (1, 0):
        dx = torch.empty(xs.shape, dtype=dtype)

        def bwd():
            lib.call("cnnfast_max_pool2d_backward", DTYPES[dtype], sizes, int(is_nhwc), gather, P(dys), P(idxs), P(dx))
            return [dx]

        (out,) = run_orders(lib, bwd)
        out = from_nhwc(out) if is_nhwc else out
        # Up to 4 windows overlap here: each sum is rounded once per add in the storage type.
        bound = 4 * EPS[dtype] * mag + 1e-30
        assert_within(out, ref_dx, bound, f"max_pool2d backward (gather={gather})")


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "x".join(map(str, c[:4])))
def test_cuda_max_pool2d_and_relu(dtype, channels_last, case):
    import cnnfast  # noqa: F401

    N, C, H, W, k, s, pad, d, ceil = case
    x = torch.randn(N, C, H, W, device="cuda", dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    y, idx = torch.ops.cnnfast.max_pool2d(x, list(k), list(s), list(pad), list(d), ceil)
    ry, ridx = F.max_pool2d(x, k, s, pad, d, ceil_mode=ceil, return_indices=True)
    assert torch.equal(y, ry) and torch.equal(idx, ridx)
    dy = torch.randn_like(y)
    dx = torch.ops.cnnfast.max_pool2d_backward(dy, x, idx, list(k), list(s), list(pad), list(d), ceil)
    xr = x.detach().requires_grad_()
    F.max_pool2d(xr, k, s, pad, d, ceil_mode=ceil).backward(dy)
    torch.testing.assert_close(dx, xr.grad)
    assert torch.equal(torch.ops.cnnfast.relu(x), torch.relu(x))
    z = x.clone()
    torch.ops.cnnfast.relu_(z)
    assert torch.equal(z, torch.relu(x))
    out = torch.relu(x)
    assert torch.equal(torch.ops.cnnfast.relu_backward(dy.new_ones(x.shape), out), (out > 0).to(dtype))


# ---- the images-per-vector pooling of each ISA, on its own -------------------------------------
# max_pool2d_ipv_* and max_pool2d_backward_ipv_* (the fused conv2d_relu_max_pool2d's pooling in the
# 16-lane layout) are framework-free: tests/cpu_kernels/max_pool2d_ipv.cpp builds them with g++ and
# exposes them to ctypes, so every ISA's is checked even where the fused op does not take it yet.
# Forward against torch exactly; backward against the gradients added by hand, output by output in
# order, in float32 (the kernels' order), into a padded plane.

import ctypes  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT_DIR = Path(__file__).resolve().parent.parent
IPV_ISAS = [pytest.param(isa, code, marks=pytest.mark.skipif(
    ("default", "avx2", "avx512").index(isa) > ("default", "avx2", "avx512").index(
        cnnfast.backends.cpu.supported_capability), reason=f"CPU lacks {isa}")) for isa, code in (("avx2", 2), ("avx512", 3))]
IPV_GRID = [  # H, W, kernel, stride, padding, dilation, ceil_mode
    (28, 28, 2, 2, 0, 1, False),                 # LeNet conv1's pool
    (10, 10, 2, 2, 0, 1, False),
    (9, 11, 3, 2, 1, 1, True),                   # padding, overlap, ceil_mode
    (12, 13, 2, 2, 0, 2, False),                 # dilation
    (7, 7, 3, 1, 1, 1, False),                   # stride 1
    (14, 14, (2, 3), (2, 1), (1, 1), 1, True),
    (12, 12, (9, 8), 1, 4, 1, False),            # 72 taps: every window bounds-checked
]


@pytest.fixture(scope="module")
def ipv_lib(tmp_path_factory):
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("no g++")
    out = tmp_path_factory.mktemp("ipv") / "max_pool2d_ipv.so"
    src = [ROOT_DIR / "tests/cpu_kernels/max_pool2d_ipv.cpp", ROOT_DIR / "csrc/cpu/max_pool2d/max_pool2d_avx2.cpp",
           ROOT_DIR / "csrc/cpu/max_pool2d/max_pool2d_avx512.cpp"]
    subprocess.run([cxx, "-std=c++20", "-O2", "-shared", "-fPIC", f"-I{ROOT_DIR / 'csrc'}", *map(str, src), "-o",
                    str(out)], check=True, capture_output=True)
    return ctypes.CDLL(str(out))


def ipv_args(case):
    H, W, k, s, p, d, ceil_mode = case
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = pair(k), pair(s), pair(p), pair(d)
    return (ctypes.c_int64 * 11)(H, W, kh, kw, sh, sw, ph, pw, dh, dw, int(ceil_mode))


def to_lanes(t):  # [16 B, C, H, W] -> [B * C, H, W, 16]
    n, c, h, w = t.shape
    return t.reshape(n // 16, 16, c, h, w).permute(0, 2, 3, 4, 1).contiguous().reshape(-1, h, w, 16)


def from_lanes(t, c):  # the inverse
    planes, h, w, _ = t.shape
    return t.reshape(planes // c, c, h, w, 16).permute(0, 4, 1, 2, 3).reshape(-1, c, h, w)


def ptr(t):
    return ctypes.c_void_p(t.data_ptr())


@pytest.mark.parametrize("isa,code", IPV_ISAS)
@pytest.mark.parametrize("kind", ["randn", "ties", "-inf", "nans"])
@pytest.mark.parametrize("case", IPV_GRID, ids=[str(i) for i in range(len(IPV_GRID))])
def test_max_pool2d_images_per_vector_pooling(ipv_lib, case, kind, isa, code):
    H, W, k, s, p, d, ceil_mode = case
    C, N = 3, 32
    g = torch.Generator().manual_seed(1)
    x = pool_values((N, C, H, W), kind, torch.float32, g)
    ty, tidx = F.max_pool2d(x, k, s, p, d, ceil_mode, return_indices=True)
    P, Q = ty.shape[-2:]
    assert not empty_window_mask(H, W, k, s, p, d, ceil_mode).any()
    xl, planes, a = to_lanes(x), N // 16 * C, ipv_args(case)
    outs = []
    for order in (0, 1):  # planes in either order: the same bits
        ipv_lib.set_order(order)
        y, idx = torch.full((planes, P, Q, 16), 7.0), torch.full((planes, P, Q, 16), -5, dtype=torch.int32)
        assert ipv_lib.pool_ipv(code, a, ctypes.c_int64(planes), ptr(xl), ptr(y), ptr(idx)) == 1
        outs.append((y, idx))
    assert torch.equal(outs[0][0].view(torch.int32), outs[1][0].view(torch.int32))
    assert torch.equal(outs[0][1], outs[1][1])
    y, idx = outs[0]
    assert torch.equal(from_lanes(y, C).nan_to_num(9.0), ty.nan_to_num(9.0))
    assert torch.equal(from_lanes(idx, C).long(), tidx)

    # Backward into planes padded by 1 row and 2 columns on each side, prefilled with NaN.
    dy = torch.randn(N, C, P, Q, generator=g)
    dyl = to_lanes(dy)
    Hp, Wp = H + 2, W + 4
    dx = torch.full((planes, Hp, Wp, 16), float("nan"))
    assert ipv_lib.pool_backward_ipv(code, a, ctypes.c_int64(planes), ptr(dyl), ptr(idx), ptr(dx),
                                     ctypes.c_int64(Hp * Wp * 16), ctypes.c_int64(Wp * 16),
                                     ctypes.c_int64((Wp + 2) * 16)) == 1
    rows = lambda t: t.reshape(planes, -1, 16).permute(0, 2, 1).reshape(planes * 16, -1)  # noqa: E731
    ref = torch.zeros(planes * 16, H * W)
    gi, gv = rows(idx).long(), rows(dyl)
    for o in range(P * Q):  # one index per row and step: no two additions meet within a step
        ref.scatter_add_(1, gi[:, o:o + 1], gv[:, o:o + 1])
    assert torch.equal(rows(dx[:, 1:1 + H, 2:2 + W].contiguous()), ref)
    border = dx.clone()
    border[:, 1:1 + H, 2:2 + W] = 0
    assert torch.equal(border, torch.zeros_like(border))

    # An index naming no element of its window (the plane's last element, for output (0, 0)): refused.
    (kh, kw), (ph, pw), (dh, dw) = pair(k), pair(p), pair(d)
    assert (H - 1) not in range(-ph, -ph + kh * dh, dh) or (W - 1) not in range(-pw, -pw + kw * dw, dw)
    bad = idx.clone()
    bad[0, 0, 0, 3] = H * W - 1
    assert ipv_lib.pool_backward_ipv(code, a, ctypes.c_int64(planes), ptr(dyl), ptr(bad), ptr(dx),
                                     ctypes.c_int64(Hp * Wp * 16), ctypes.c_int64(Wp * 16),
                                     ctypes.c_int64((Wp + 2) * 16)) == 0
