"""cnnfast.functional.conv2d_relu_max_pool2d (conv2d + bias + ReLU + max_pool2d in one op) against
torch's max_pool2d(relu(conv2d(...))): outputs, indices, gradients, what autograd keeps, errors."""
import functools

import pytest
import torch
import torch.nn.functional as F

import cnnfast
from reference import assert_close_to_reference
from test_conv2d import GRID, run_conv_case
from test_cpu_capability import PATHS
from test_max_pool2d import assert_same_for_1_and_2_threads

# (kernel_size, pool_stride, pool_padding, pool_dilation, ceil_mode)
POOLS = [
    (2, None, 0, 1, False),        # LeNet, MNIST-CNN
    (3, 2, 1, 1, False),           # ResNet stem: overlapping windows, padding
    (3, 2, 0, 1, True),            # ceil_mode: the last windows hang over
    ((2, 3), (1, 2), (1, 0), (2, 1), False),  # non-square, dilated
]
# Convolutions of the conv2d grid whose output each pool above fits (at least 3x3), and the empty batch.
CONVS = [GRID[i] for i in (0, 1, 2, 3, 5, 9, 11, 12, 14, 16, 17, 19, 23)]


def fused(x, w, b, pool, **kw):
    kernel_size, pool_stride, pool_padding, pool_dilation, ceil_mode = pool
    return cnnfast.functional.conv2d_relu_max_pool2d(x, w, b, **kw, kernel_size=kernel_size, pool_stride=pool_stride,
                                                     pool_padding=pool_padding, pool_dilation=pool_dilation,
                                                     ceil_mode=ceil_mode)


def reference(x, w, b, pool, **kw):
    kernel_size, pool_stride, pool_padding, pool_dilation, ceil_mode = pool
    return F.max_pool2d(F.relu(F.conv2d(x, w, b, **kw)), kernel_size, pool_stride, pool_padding, pool_dilation,
                        ceil_mode)


@pytest.mark.parametrize("pool", POOLS, ids=[str(i) for i in range(len(POOLS))])
@pytest.mark.parametrize("case", CONVS, ids=[str(i) for i in range(len(CONVS))])
def test_matches_torch(case, pool):
    n, c, h, w, k, kernel, stride, padding, dilation, groups = case
    run_conv_case(functools.partial(fused, pool=pool), functools.partial(reference, pool=pool),
                  n, c, h, w, k, kernel, stride, padding, dilation, groups)


@pytest.mark.parametrize("fmt", ["channels_last", "strided"])
def test_layouts_and_float64(fmt):
    run_conv_case(functools.partial(fused, pool=POOLS[1]), functools.partial(reference, pool=POOLS[1]),
                  3, 4, 15, 13, 6, 3, 1, 1, 1, 1, fmt=fmt)
    run_conv_case(functools.partial(fused, pool=POOLS[0]), functools.partial(reference, pool=POOLS[0]),
                  2, 3, 12, 12, 5, 5, 1, 2, 1, 1, dtype=torch.float64, fmt=fmt)


def test_indices_are_torch_s_on_the_convolution_output():
    # float64: the convolutions agree to far below the gaps between window values, so the same element wins.
    g = torch.Generator().manual_seed(3)
    x, w, b = (torch.randn(*s, generator=g, dtype=torch.float64) for s in [(3, 4, 13, 11), (6, 4, 3, 3), (6,)])
    for pool in POOLS:
        ours, idx = cnnfast.functional.conv2d_relu_max_pool2d(
            x, w, b, padding=1, kernel_size=pool[0], pool_stride=pool[1], pool_padding=pool[2],
            pool_dilation=pool[3], ceil_mode=pool[4], return_indices=True)
        theirs, ref_idx = F.max_pool2d(F.relu(F.conv2d(x, w, b, padding=1)), pool[0], pool[1], pool[2], pool[3],
                                       pool[4], return_indices=True)
        assert torch.equal(idx, ref_idx), pool
        torch.testing.assert_close(ours, theirs)


def test_gradcheck_float64():
    # Values away from the ReLU kink and from ties inside a window (finite differences across either
    # are meaningless): checked on the convolution's output before the test relies on it.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 7, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    pre = F.conv2d(x, w, b, padding=1)
    assert pre.abs().min() > 1e-3
    windows = F.unfold(pre.detach().flatten(0, 1).unsqueeze(1), 2, stride=2).sort(dim=1).values
    assert (windows[:, -1] - windows[:, -2]).min() > 1e-3
    fn = functools.partial(fused, pool=(2, None, 0, 1, False), padding=1)
    assert torch.autograd.gradcheck(fn, (x, w, b))


def test_autograd_keeps_no_tensor_of_the_convolution_s_size():
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    w, b = torch.randn(8, 3, 3, 3, requires_grad=True), torch.randn(8, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        y = cnnfast.functional.conv2d_relu_max_pool2d(x, w, b, padding=1, kernel_size=2)
    assert y.shape == (4, 8, 8, 8)
    # the pooled output, its indices, the input and the weight; never the 4x8x16x16 convolution output
    assert sorted(saved) == sorted([y.shape, y.shape, x.shape, w.shape])


@pytest.mark.parametrize("path", PATHS)
def test_bit_identical_for_any_thread_count(monkeypatch, path):
    """On each path; batch 20 takes the images-per-vector layout (one full block, one partial) on SIMD."""
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 6, 14, 14, generator=g, requires_grad=True)
    w, b = torch.randn(16, 6, 5, 5, generator=g, requires_grad=True), torch.randn(16, generator=g, requires_grad=True)

    def run():
        y = cnnfast.functional.conv2d_relu_max_pool2d(x, w, b, kernel_size=2)
        return (y, *torch.autograd.grad(y, (x, w, b), torch.randn(y.shape, generator=torch.Generator().manual_seed(2))))

    assert_same_for_1_and_2_threads(run)


@pytest.mark.parametrize("path", PATHS)
def test_every_capability_path(monkeypatch, path):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    for case in (GRID[0], GRID[1], GRID[2]):  # LeNet conv1 and conv2 (sixteen images per vector at n >= 16), 3x3
        n, c, h, w, k, kernel, stride, padding, dilation, groups = case
        run_conv_case(functools.partial(fused, pool=POOLS[0]), functools.partial(reference, pool=POOLS[0]),
                      n + 16, c, h, w, k, kernel, stride, padding, dilation, groups)


def test_unbatched_input_and_no_bias():
    x, w = torch.randn(3, 10, 12), torch.randn(4, 3, 3, 3)
    ours, idx = cnnfast.functional.conv2d_relu_max_pool2d(x, w, padding="same", kernel_size=2, return_indices=True)
    theirs, ref_idx = F.max_pool2d(F.relu(F.conv2d(x, w, padding="same")), 2, return_indices=True)
    assert ours.shape == theirs.shape == (4, 5, 6)
    torch.testing.assert_close(ours, theirs)
    assert torch.equal(idx, ref_idx)


def test_opcheck():
    x = torch.randn(2, 4, 9, 8, requires_grad=True)
    w, b = torch.randn(6, 2, 3, 3, requires_grad=True), torch.randn(6, requires_grad=True)
    op = torch.ops.cnnfast.conv2d_relu_max_pool2d
    torch.library.opcheck(op, (x, w, b, [1, 1], [1, 1], [1, 1], 2, [3, 2], [2, 2], [1, 1], [1, 1], True))
    torch.library.opcheck(op, (x.detach().contiguous(memory_format=torch.channels_last), w, None, [1, 2], [0, 1],
                               [1, 1], 2, [2, 2], [2, 2], [0, 0], [1, 1], False))
    # Without return_indices: an empty int64 tensor in their place, also under autograd (which keeps the
    # real ones for the backward).
    torch.library.opcheck(op, (x, w, b, [1, 1], [1, 1], [1, 1], 2, [2, 2], [2, 2], [0, 0], [1, 1], False, False))
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            y, none = op(x, w, b, [1, 1], [1, 1], [1, 1], 2, [2, 2], [2, 2], [0, 0], [1, 1], False, False)
        assert none.shape == (0,) and none.dtype == torch.int64 and y.requires_grad == grad
    y, idx = op(x.detach(), w.detach(), b.detach(), [1, 1], [1, 1], [1, 1], 2, [3, 2], [2, 2], [1, 1], [1, 1], True)
    for mask in ([True, True, True], [False, True, False]):
        args = (torch.randn(y.shape), y, idx, x.detach(), w.detach(), [1, 1], [1, 1], [1, 1], 2, [3, 2], [2, 2],
                [1, 1], [1, 1], True, mask)
        torch.library.opcheck(torch.ops.cnnfast.conv2d_relu_max_pool2d_backward, args)
        assert [t is not None for t in torch.ops.cnnfast.conv2d_relu_max_pool2d_backward(*args)] == mask


def test_module_is_a_conv2d_with_the_pool_s_arguments():
    torch.manual_seed(0)
    m = cnnfast.nn.Conv2dReLUMaxPool2d(3, 5, 3, padding=1, padding_mode="reflect", pool_kernel_size=3, pool_stride=2,
                                       ceil_mode=True)
    ref = torch.nn.Conv2d(3, 5, 3, padding=1, padding_mode="reflect")
    assert m.state_dict().keys() == ref.state_dict().keys()
    ref.load_state_dict(m.state_dict())
    x = torch.randn(2, 3, 11, 11)
    torch.testing.assert_close(m(x), F.max_pool2d(F.relu(ref(x)), 3, 2, ceil_mode=True))
    assert "pool_kernel_size=3, pool_stride=2" in repr(m)


def call(**overrides):
    args = dict(input=torch.randn(2, 3, 8, 8), weight=torch.randn(4, 3, 3, 3), bias=None, stride=[1, 1],
                padding=[0, 0], dilation=[1, 1], groups=1, kernel_size=[2, 2], pool_stride=[2, 2],
                pool_padding=[0, 0], pool_dilation=[1, 1], ceil_mode=False)
    args.update(overrides)
    return torch.ops.cnnfast.conv2d_relu_max_pool2d(*args.values())


@pytest.mark.parametrize("overrides, message", [
    (dict(kernel_size=[0, 2]), r"kernel_size should be greater than zero, but got kernel_size=\[0, 2\]"),
    (dict(pool_stride=[2, -1]), r"pool_stride should be greater than zero, but got pool_stride=\[2, -1\]"),
    (dict(pool_padding=[2, 0]), r"pad should be at most half of effective kernel size, but got pool_padding=\[2, 0\]"),
    (dict(pool_dilation=[1]), r"expected pool_dilation to have 2 elements"),
    (dict(kernel_size=[7, 7]), r"given input size: \(4x6x6\). Calculated output size: \(4x0x0\)"),
    (dict(weight=torch.randn(4, 2, 3, 3)), r"expected input\[2, 3, 8, 8\] to have 2 channels"),
    (dict(weight=torch.randn(0, 3, 3, 3)), r"non-zero number of output channels"),
    (dict(input=torch.randn(2, 3, 8, 8, dtype=torch.float16)), r"input has dtype Half"),
])
def test_bad_arguments_are_named(overrides, message):
    with pytest.raises(RuntimeError, match=message):
        call(**overrides)


def test_backward_refuses_indices_outside_the_convolution_s_plane():
    x, w = torch.randn(1, 1, 4, 4), torch.randn(1, 1, 1, 1)
    y, idx = torch.ops.cnnfast.conv2d_relu_max_pool2d(x, w, None, [1, 1], [0, 0], [1, 1], 1, [2, 2], [2, 2], [0, 0],
                                                      [1, 1], False)
    idx[0, 0, 0, 0] = 16
    with pytest.raises(RuntimeError, match=r"indices must lie in \[0, P\*Q\) = \[0, 16\)"):
        torch.ops.cnnfast.conv2d_relu_max_pool2d_backward(torch.ones_like(y), y.abs() + 1, idx, x, w, [1, 1], [0, 0],
                                                          [1, 1], 1, [2, 2], [2, 2], [0, 0], [1, 1], False,
                                                          [True, True, True])
    with pytest.raises(RuntimeError, match=r"expected output to have the size of the pooling's output"):
        torch.ops.cnnfast.conv2d_relu_max_pool2d_backward(torch.ones_like(y), x, idx, x, w, [1, 1], [0, 0],
                                                          [1, 1], 1, [2, 2], [2, 2], [0, 0], [1, 1], False,
                                                          [True, True, True])


# Sixteen images per vector (float32 on AVX-512; images_per_vector "on" takes it wherever it applies):
# the forward pools the convolution's output in that layout, and the backward transposes the pooled
# gradient and indices into it and builds the convolution's output gradient there. Batches with a
# partial last block of 16, overlapping windows (added in output order), padded and dilated windows.
LANES = [(20, 1, 28, 28, 6, 5, 1, 2, 1, 1), (32, 6, 14, 14, 16, 5, 1, 0, 1, 1), (17, 3, 13, 13, 8, 3, 1, 1, 1, 1)]


@pytest.mark.parametrize("pool", POOLS, ids=[str(i) for i in range(len(POOLS))])
@pytest.mark.parametrize("case", LANES, ids=["lenet1", "lenet2", "3x3"])
def test_sixteen_images_layout(case, pool, monkeypatch):
    monkeypatch.setattr(cnnfast.backends.cpu, "images_per_vector", "on")
    n, c, h, w, k, kernel, stride, padding, dilation, groups = case
    run_conv_case(functools.partial(fused, pool=pool), functools.partial(reference, pool=pool),
                  n, c, h, w, k, kernel, stride, padding, dilation, groups)


@pytest.mark.parametrize("images_per_vector", ["off", "on"])
def test_gradients_without_grad_input(images_per_vector, monkeypatch):
    # The first layer of a network: no grad-input, so the backward lays the gradient out unpadded.
    monkeypatch.setattr(cnnfast.backends.cpu, "images_per_vector", images_per_vector)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(18, 1, 28, 28, generator=g)
    w0, b0 = torch.randn(6, 1, 5, 5, generator=g), torch.randn(6, generator=g)
    outs = {}
    for name, dtype, fn in [("ours", torch.float32, fused), ("torch", torch.float32, reference),
                            ("ref", torch.float64, reference)]:
        w, b = w0.to(dtype).requires_grad_(), b0.to(dtype).requires_grad_()
        y = fn(x.to(dtype), w, b, pool=POOLS[0], padding=2)
        outs[name] = torch.autograd.grad(y, (w, b), torch.ones_like(y))
    for i, what in enumerate(["grad_weight", "grad_bias"]):
        assert_close_to_reference(outs["ours"][i], outs["torch"][i], outs["ref"][i], 18 * 28 * 28, what)


def test_indices_outside_their_window_take_the_general_scatter(monkeypatch):
    # The backward op takes any index inside the plane (as max_pool2d_backward): one that names no
    # element of its window sends the sixteen-images path back to the general scatter.
    monkeypatch.setattr(cnnfast.backends.cpu, "images_per_vector", "on")
    g = torch.Generator().manual_seed(6)
    x, w = torch.randn(16, 2, 10, 10, generator=g), torch.randn(3, 2, 3, 3, generator=g)
    args = ([1, 1], [1, 1], [1, 1], 1, [2, 2], [2, 2], [0, 0], [1, 1], False)
    y, idx = torch.ops.cnnfast.conv2d_relu_max_pool2d(x, w, None, *args)
    idx = idx.clone()
    idx[3, 1, 2, 2] = 0  # the window of (2, 2) covers rows and columns 4-5
    gy = torch.randn(y.shape, generator=g)
    dx, dw, _ = torch.ops.cnnfast.conv2d_relu_max_pool2d_backward(gy, y, idx, x, w, *args, [True, True, False])
    # Reference: the convolution's output gradient scattered by hand, then torch's convolution backward.
    masked = torch.where(y > 0, gy, torch.zeros_like(gy)).double()
    grad_conv = torch.zeros(16, 3, 100, dtype=torch.float64).scatter_add_(2, idx.flatten(2), masked.flatten(2))
    x64, w64 = x.double().requires_grad_(), w.double().requires_grad_()
    conv = F.conv2d(x64, w64, padding=1)
    rx, rw = torch.autograd.grad(conv, (x64, w64), grad_conv.view(16, 3, 10, 10))
    torch.testing.assert_close(dx, rx.float(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(dw, rw.float(), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("images_per_vector", ["off", "on"])
@pytest.mark.parametrize("path", PATHS)
def test_sixteen_images_bit_identical_for_any_thread_count(images_per_vector, monkeypatch, path):
    monkeypatch.setattr(cnnfast.backends.cpu, "images_per_vector", images_per_vector)
    test_bit_identical_for_any_thread_count(monkeypatch, path)


# ---- CUDA: the composed op on a real device -------------------------------------------------------
# On CUDA the op composes the conv2d kernels (bias + ReLU epilogue) and the max_pool2d kernels on a
# scratch buffer (csrc/cuda/conv2d_relu_max_pool2d.cu); each runs through the CUDA-on-CPU harness in
# tests/test_conv2d.py and tests/test_max_pool2d.py. Here the composition, where there is a CUDA
# device: the same bits as cnnfast::conv2d_relu followed by torch's max_pool2d, and torch's results.

from cuda_harness import assert_device_result, float64_twins, needs_cuda  # noqa: E402


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("pool", POOLS[:3], ids=[str(i) for i in range(3)])
def test_cuda_conv2d_relu_max_pool2d_against_torch(dtype, channels_last, pool, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # float32 on FFMA, cuDNN without TF32
    kernel_size, pool_stride, pool_padding, pool_dilation, ceil_mode = pool
    gen = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(*s, generator=gen).to(dtype).cuda() for s in [(2, 3, 13, 11), (8, 3, 3, 3), (8,)])
    if channels_last:
        x, w = x.to(memory_format=torch.channels_last), w.to(memory_format=torch.channels_last)
    for t in (x, w, b):
        t.requires_grad_()
    y, idx = cnnfast.functional.conv2d_relu_max_pool2d(
        x, w, b, padding=1, kernel_size=kernel_size, pool_stride=pool_stride, pool_padding=pool_padding,
        pool_dilation=pool_dilation, ceil_mode=ceil_mode, return_indices=True)
    conv = cnnfast.functional.conv2d_relu(x, w, b, padding=1)
    ry, ridx = F.max_pool2d(conv, kernel_size, pool_stride, pool_padding, pool_dilation, ceil_mode, return_indices=True)
    assert torch.equal(y, ry) and torch.equal(idx, ridx)  # the same kernels on the same values
    # The float64 truth: the pooling of the float64 convolution (with the windows' choices of the
    # tested output, as the gradient takes them), and the gradients through the chosen elements that
    # the ReLU passes.
    x64, w64, b64 = float64_twins(x, w, b)
    c64 = F.conv2d(x64, w64, b64, 1, 1)
    what = f"conv2d_relu_max_pool2d {pool} {dtype} channels_last={channels_last}"
    assert_device_result([y], [ry], [reference(x64, w64, b64, pool, padding=1)], [3 * 3 * 3], dtype, what)
    dy = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, w, b), dy)
    exp = torch.autograd.grad(ry, (x, w, b), dy)
    up = torch.zeros_like(c64).flatten(2)
    passed = dy.double().cpu() * (y.detach().double().cpu() > 0)
    up.scatter_add_(2, idx.cpu().flatten(2), passed.flatten(2))
    truth = torch.autograd.grad(c64, (x64, w64, b64), up.view_as(c64))
    pq = c64.shape[0] * c64.shape[2] * c64.shape[3]
    assert_device_result(got, exp, truth, [8 * 3 * 3, pq, pq], dtype, what + " gradients")

# Pooling windows with no input element (every tap in the padding of the convolution's output):
# -inf and torch's index forward, a zero gradient backward. Pools: torch's arguments (all windows
# empty, against torch), and cnnfast's wider padding (half the dilated window), where empty and full
# windows mix (against torch's rule written out). Gradients against max_pool2d(relu(conv2d)) in float64
# with the empty windows' gradients dropped, at the fused op's own indices.
EMPTY_POOLS = [
    # conv input (n, c, h, w), pool (kernel_size, pool_stride, pool_padding, pool_dilation, ceil_mode)
    ((17, 2, 2, 7), ((2, 2), (1, 2), (1, 0), (3, 1), False)),   # rows empty
    ((17, 2, 7, 2), ((2, 2), (2, 1), (0, 1), (1, 3), False)),   # columns empty, indices inside the plane
    ((17, 2, 1, 20), ((2, 2), (2, 2), (2, 0), (3, 1), True)),   # a mix (padding torch refuses)
]


@pytest.mark.parametrize("images_per_vector", ["off", "on"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", EMPTY_POOLS, ids=["rows", "columns", "mix"])
def test_empty_pooling_windows(case, path, dtype, images_per_vector, monkeypatch):
    from test_max_pool2d import empty_window_mask, torch_rule_max_pool2d

    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    monkeypatch.setattr(cnnfast.backends.cpu, "images_per_vector", images_per_vector)
    shape, pool = case
    g = torch.Generator().manual_seed(7)
    x0, w0, b0 = (torch.randn(*s, generator=g, dtype=torch.float64) for s in [shape, (5, shape[1], 3, 3), (5,)])
    x, w, b = (t.to(dtype).requires_grad_() for t in (x0, w0, b0))
    y, idx = fused(x, w, b, pool, padding=1, return_indices=True)
    c64 = F.relu(F.conv2d(x0, w0, b0, padding=1))
    ry, ridx = torch_rule_max_pool2d(c64, *pool)
    empty = empty_window_mask(*c64.shape[2:], *pool)
    assert empty.any() and (y[..., empty] == float("-inf")).all()
    assert torch.equal(idx, ridx)
    torch.testing.assert_close(y, ry.to(dtype))
    if empty.all():  # torch's arguments: torch's own answer too
        ty, tidx = F.max_pool2d(c64, *pool, return_indices=True)
        assert torch.equal(y.double(), ty) and torch.equal(idx, tidx)
    gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    ours = torch.autograd.grad(y, (x, w, b), gy.to(dtype))
    xr, wr, br = (t.clone().requires_grad_() for t in (x0, w0, b0))
    conv = F.relu(F.conv2d(xr, wr, br, padding=1)).flatten(2)
    picked = conv.gather(2, torch.where(empty, 0, idx).flatten(2))
    ref = torch.autograd.grad((picked * torch.where(empty, 0.0, gy).flatten(2)).sum(), (xr, wr, br))
    for o, r, what in zip(ours, ref, ["grad_input", "grad_weight", "grad_bias"]):
        torch.testing.assert_close(o, r.to(dtype), rtol=1e-4, atol=1e-4, msg=what)
