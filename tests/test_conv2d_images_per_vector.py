"""The CPU convolution path with sixteen images per vector (csrc/cpu/conv2d/images_per_vector.h, "Sixteen images per
vector"): forward, the fused ReLU, the stride-1 grad-input (a forward convolution of dy) and grad-weight
(the dot-product form) through it, against torch with the project's one tolerance rule
(tests/reference.py), on every SIMD path, bit-identical for any thread count; and the rule that
chooses it, with cnnfast.backends.cpu.images_per_vector = "off"/"on" forcing it off/on (read at each
call)."""
import pytest
import torch
import torch.nn.functional as F

import cnnfast
from reference import assert_bit_identical_for_thread_counts, assert_close_to_reference
from test_conv2d import conv, run_conv_case
from test_conv2d_relu import fused, reference
from test_cpu_capability import BEST, PATHS

# (n, c, h, w, k, kernel, padding, dilation, groups). Images are taken 16 at a time, so the batches end
# at several places of a block of 16 (1, 15, 16, 17, 33 images); each output row is one GEMM.
CASES = [
    (16, 6, 14, 14, 16, 5, 0, 1, 1),   # LeNet conv2's shape, one full block
    (17, 16, 14, 14, 32, 5, 2, 1, 1),  # MNIST-CNN conv2's shape, a block of one image
    (1, 3, 7, 9, 5, 3, 1, 1, 1),       # batch 1: 15 empty lanes
    (15, 4, 6, 11, 7, 3, 0, 1, 1),     # one short block, odd sizes
    (33, 8, 5, 5, 40, 3, 2, 1, 1),     # three blocks; more than 16 output channels (two dot blocks)
    (18, 6, 9, 8, 12, 3, 2, 2, 2),     # dilation 2 and groups
    (20, 5, 8, 6, 9, (1, 5), (0, 2), 1, 1),  # a 1x5 kernel, padding along one dimension
    (16, 40, 6, 6, 24, 1, 0, 1, 1),    # 1x1: many channels, 40 taps
    (16, 3, 4, 4, 4, 5, 3, 1, 1),      # padding past the kernel: grad-input takes the scatter path
]


# (n, c, h, w, k, kernel, stride, padding, dilation, groups): strided convolutions read the input split by
# stride phase (the layout's phases, slack rows and columns included).
STRIDED = [
    (16, 16, 32, 32, 32, 3, 2, 1, 1, 1),        # CIFAR-ResNet's 16->32 stride-2 layer
    (17, 5, 11, 9, 7, 3, 2, 0, 1, 1),           # odd sizes: phases of unequal length, a block of one image
    (16, 4, 12, 13, 6, (3, 5), (2, 3), (1, 2), 1, 1),  # a different stride each way
    (20, 6, 13, 13, 8, 3, 2, 2, 2, 2),          # dilation 2, groups 2
    (16, 8, 9, 9, 12, 1, 2, 0, 1, 1),           # 1x1 stride 2: one phase read
]


@pytest.fixture
def images_per_vector(monkeypatch):
    monkeypatch.setattr(cnnfast.backends.cpu, "images_per_vector", "on")


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
@pytest.mark.parametrize("path", PATHS)
def test_images_per_vector_matches_torch(monkeypatch, images_per_vector, path, case):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    n, c, h, w, k, kernel, padding, dilation, groups = case
    run_conv_case(conv, F.conv2d, n, c, h, w, k, kernel, 1, padding, dilation, groups)
    run_conv_case(conv, F.conv2d, n, c, h, w, k, kernel, 1, padding, dilation, groups, bias=False, seed=2)
    run_conv_case(fused, reference, n, c, h, w, k, kernel, 1, padding, dilation, groups, seed=1)


@pytest.mark.parametrize("case", STRIDED, ids=[str(c) for c in STRIDED])
@pytest.mark.parametrize("path", PATHS)
def test_images_per_vector_strided_matches_torch(monkeypatch, images_per_vector, path, case):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    n, c, h, w, k, kernel, stride, padding, dilation, groups = case
    run_conv_case(conv, F.conv2d, n, c, h, w, k, kernel, stride, padding, dilation, groups)
    run_conv_case(fused, reference, n, c, h, w, k, kernel, stride, padding, dilation, groups, seed=1)


def test_images_per_vector_channels_last_and_strided(images_per_vector):
    run_conv_case(conv, F.conv2d, 17, 6, 9, 7, 10, 3, 1, 1, 1, 1, fmt="channels_last")
    run_conv_case(fused, reference, 17, 6, 9, 7, 10, 3, 1, 1, 1, 1, fmt="strided")


@pytest.mark.parametrize("layer", [(64, 6, 14, 16, 5, 0), (64, 16, 14, 32, 5, 2)], ids=["lenet2", "mnist2"])
@pytest.mark.parametrize("op", ["conv2d", "conv2d_relu"])
def test_images_per_vector_passes_the_bench_check_on_the_bench_layers(layer, op):
    """LeNet's and MNIST-CNN's second convolutions take the path by the rule; the bench's own check."""
    from cnnfast.bench import runner
    from cnnfast.bench.suites import Case

    n, c, h, k, r, pad = layer
    out = h + 2 * pad - r + 1
    params = dict(input=[n, c, h, h], weight=[k, c, r, r], bias=True, output=[n, k, out, out], stride=[1, 1],
                  padding=[pad, pad], dilation=[1, 1], groups=1)
    case = Case("mnist-cnn", op, tuple(sorted(params.items())))
    impl, ref = runner.cnnfast_impl(), runner.reference_impl()
    result = runner.check(runner.Prepared(case, "fwdbwd", torch.float32, "nchw", "cpu"), impl, ref)
    assert result["passed"], result["message"]


def _forward_and_gradients(x, w, b, gy, padding):
    x, w, b = (t.clone().requires_grad_() for t in (x, w, b))
    y = cnnfast.functional.conv2d_relu(x, w, b, padding=padding)
    return [y, *torch.autograd.grad(y, (x, w, b), gy)]


@pytest.mark.parametrize("shape", [(17, 6, 14, 14, 16, 5, 0), (32, 16, 9, 9, 33, 5, 2), (5, 4, 6, 6, 7, 3, 1)])
@pytest.mark.parametrize("path", PATHS)
def test_images_per_vector_bit_identical_for_any_thread_count(monkeypatch, images_per_vector, path, shape):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    n, c, h, w_, k, r, pad = shape
    g = torch.Generator().manual_seed(7)
    x, w = torch.randn(n, c, h, w_, generator=g), torch.randn(k, c, r, r, generator=g)
    b, gy = torch.randn(k, generator=g), torch.randn(n, k, h + 2 * pad - r + 1, w_ + 2 * pad - r + 1, generator=g)
    assert_bit_identical_for_thread_counts(lambda: _forward_and_gradients(x, w, b, gy, pad), threads=(2, 3, 4))


def test_images_per_vector_is_chosen_by_the_rule_and_forced_by_the_setting(monkeypatch):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(64, 16, 14, 14, generator=g)
    w = torch.randn(32, 16, 5, 5, generator=g)

    def run(n, pad, setting, x=x, w=w):
        """grad-weight (the forward's sums are the same in both layouts; grad-weight's are not)."""
        if setting is None:
            monkeypatch.setattr(cnnfast.backends.cpu, "images_per_vector", "auto")
        else:
            monkeypatch.setattr(cnnfast.backends.cpu, "images_per_vector", setting)
        out = [x.shape[i] + 2 * pad - w.shape[i] + 1 for i in (2, 3)]
        gy = torch.ones(n, w.shape[0], *out)
        return torch.ops.cnnfast.conv2d_backward(gy, x[:n], w, [1, 1], [pad, pad], [1, 1], 1, [False, True, False])[1]

    if BEST == "default":
        # No SIMD path: never taken, even when forced.
        assert torch.equal(run(64, 2, "on"), run(64, 2, "off"))
        return
    on, off = run(64, 2, "on"), run(64, 2, "off")
    assert not torch.equal(on, off)  # the same sums in another order: the path was taken
    # (Both sums are held to the project's rule against float64 by test_images_per_vector_matches_torch and test_conv2d.)
    # Unset or auto, the rule: at least 16 images, and the dropped columns of the shifted-view path (4 of
    # every 18 here) outweigh the empty lanes of the last block by 10% of the work.
    assert torch.equal(run(64, 2, None), on)
    assert torch.equal(run(64, 2, "auto"), on)
    assert torch.equal(run(8, 2, None), run(8, 2, "off"))       # fewer than 16 images
    assert torch.equal(run(17, 2, None), run(17, 2, "off"))     # 17 images fill 53% of two blocks
    assert torch.equal(run(64, 0, None), run(64, 0, "on"))     # 4 of 14 columns dropped without padding
    # Stride 2 (CIFAR-ResNet's 16->32 layer): the tiles of the phase layout compute 320 columns for 256
    # outputs, and the path is taken.
    xs, ws = torch.randn(16, 16, 32, 32, generator=g), torch.randn(32, 16, 3, 3, generator=g)
    gys = torch.ones(16, 32, 16, 16)

    def strided(setting):
        monkeypatch.setattr(cnnfast.backends.cpu, "images_per_vector", setting)
        return torch.ops.cnnfast.conv2d_backward(gys, xs, ws, [2, 2], [1, 1], [1, 1], 1, [False, True, False])[1]

    assert not torch.equal(strided("on"), strided("off"))
    assert torch.equal(strided("auto"), strided("on"))
    # 32x32 images, 3x3 with padding 1: 2 of 34 columns dropped, too few for the copies to pay.
    big, small_kernel = torch.randn(16, 3, 32, 32, generator=g), torch.randn(16, 3, 3, 3, generator=g)
    assert not torch.equal(run(16, 1, "on", big, small_kernel), run(16, 1, "off", big, small_kernel))
    assert torch.equal(run(16, 1, None, big, small_kernel), run(16, 1, "off", big, small_kernel))
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", "default")
    assert torch.equal(run(64, 2, "on"), run(64, 2, "off"))       # no SIMD path: never


def test_images_per_vector_never_serves_float64(monkeypatch, images_per_vector):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(16, 6, 14, 14, generator=g, dtype=torch.float64)
    w = torch.randn(16, 6, 5, 5, generator=g, dtype=torch.float64)
    gy = torch.randn(16, 16, 10, 10, generator=g, dtype=torch.float64)

    def grad_weight():
        return torch.ops.cnnfast.conv2d_backward(gy, x, w, [1, 1], [0, 0], [1, 1], 1, [False, True, False])[1]

    on = grad_weight()
    monkeypatch.setattr(cnnfast.backends.cpu, "images_per_vector", "off")
    assert torch.equal(on, grad_weight())


def test_info_reports_the_algorithm_settings(monkeypatch):
    from cnnfast import info

    def line():
        return next(s for s in info.info_lines() if s.startswith("CPU conv2d algorithms:"))

    monkeypatch.setattr(cnnfast.backends.cpu, "images_per_vector", "auto")
    monkeypatch.setattr(cnnfast.backends.cpu, "winograd", "off")
    assert "sixteen images per vector auto (images_per_vector, CNNFAST_CPU_IMAGES_PER_VECTOR)" in line()
    assert "Winograd F(2x2,3x3) off (winograd, CNNFAST_CPU_WINOGRAD)" in line()
    monkeypatch.setattr(cnnfast.backends.cpu, "images_per_vector", "on")
    assert "sixteen images per vector on" in line()


@pytest.mark.parametrize("op", ["conv2d", "conv2d_relu"])
def test_images_per_vector_gradients_without_grad_input(images_per_vector, op):
    # The first layer of a network: no grad-input, so dy is laid out unpadded, once, for grad-weight and
    # grad-bias (for conv2d_relu masked by the output on the way). 17 images: a block of one.
    g = torch.Generator().manual_seed(4)
    x = torch.randn(17, 1, 28, 28, generator=g)
    w0, b0 = torch.randn(6, 1, 5, 5, generator=g), torch.randn(6, generator=g)
    gy = torch.randn(17, 6, 28, 28, generator=g)
    ours_fn = conv if op == "conv2d" else fused
    ref_fn = F.conv2d if op == "conv2d" else reference
    outs = {}
    for name, dtype, fn in [("ours", torch.float32, ours_fn), ("torch", torch.float32, ref_fn),
                            ("ref", torch.float64, ref_fn)]:
        w, b = w0.to(dtype).requires_grad_(), b0.to(dtype).requires_grad_()
        y = fn(x.to(dtype), w, b, padding=2)
        outs[name] = torch.autograd.grad(y, (w, b), gy.to(dtype))
    for i, what in enumerate(["grad_weight", "grad_bias"]):
        assert_close_to_reference(outs["ours"][i], outs["torch"][i], outs["ref"][i], 17 * 28 * 28, f"{op} {what}")
