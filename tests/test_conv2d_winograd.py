"""The CPU Winograd F(2x2, 3x3) convolution (csrc/cpu/conv2d/winograd.*): forward, the fused ReLU, the stride-1
grad-input (a forward convolution of dy) and grad-weight through it, against torch with the project's
one tolerance rule (tests/reference.py), on every SIMD path, in each of its work orders (forward:
tile-major and channel-major; grad-weight: all tiles at once or chunks of tiles), bit-identical for
any thread count; and the rule that chooses it, with cnnfast.backends.cpu.winograd = "off"/"on" forcing it off/on (read
at each call)."""
import pytest
import torch
import torch.nn.functional as F

import cnnfast
from test_conv2d import conv, run_conv_case
from test_conv2d_relu import fused, reference
from test_cpu_capability import BEST, PATHS

# (n, c, h, w, k, padding, groups). Tiles are 2x2 outputs numbered over the batch and handled 16 at a
# time, so the shapes put tile rows, images and the batch's end at every place of a 16-lane group.
CASES = [
    (2, 32, 8, 8, 32, 1, 1),       # 16 tiles per image: groups line up with images
    (3, 40, 7, 9, 33, 1, 1),       # odd output both ways (half tiles), odd channel counts
    (1, 64, 14, 14, 64, 0, 1),     # no padding, batch 1
    (2, 33, 13, 11, 35, 2, 1),     # padding 2, tiles crossing image edges
    (3, 32, 57, 31, 40, 1, 1),     # long tile rows (29 tiles), many groups
    (2, 32, 3, 2, 32, 1, 1),       # 2x1 output: one tile per image
    (2, 16, 1, 7, 16, 1, 1),       # one output row: half tiles only
    (2, 16, 5, 6, 16, 3, 1),       # padding 3 (grad-input then takes the direct path)
    (2, 64, 6, 6, 64, 1, 2),       # groups of 32
    (1, 33, 6, 6, 40, 1, 1),       # channel-major (fewer tiles than output channels)
    (1, 40, 6, 6, 33, 1, 1),       # channel-major, its grad-input tile-major
    (2, 64, 4, 4, 128, 1, 2),      # channel-major with groups
    (1, 100, 5, 5, 70, 1, 1),      # channel-major, column tails of the filter transform
    (2, 16, 5, 5, 70, 1, 1),       # few input channels
    (2, 64, 20, 20, 64, 1, 2),     # grad-weight in chunks of tiles, with groups
    (5, 32, 15, 15, 32, 1, 1),     # grad-weight in chunks of tiles (5 of them)
]


@pytest.fixture
def winograd(monkeypatch):
    monkeypatch.setattr(cnnfast.backends.cpu, "winograd", "on")


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
@pytest.mark.parametrize("path", PATHS)
def test_winograd_matches_torch(monkeypatch, winograd, path, case):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    n, c, h, w, k, padding, groups = case
    run_conv_case(conv, F.conv2d, n, c, h, w, k, 3, 1, padding, 1, groups)
    run_conv_case(conv, F.conv2d, n, c, h, w, k, 3, 1, padding, 1, groups, bias=False, seed=2)
    run_conv_case(fused, reference, n, c, h, w, k, 3, 1, padding, 1, groups, seed=1)


def test_winograd_channels_last_and_strided(winograd):
    run_conv_case(conv, F.conv2d, 2, 32, 9, 7, 40, 3, 1, 1, 1, 1, fmt="channels_last")
    run_conv_case(fused, reference, 2, 32, 9, 7, 40, 3, 1, 1, 1, 1, fmt="strided")


# The stride-1 3x3 layers of the bench suites (ResNet-18 at batch 2, the CIFAR ResNet at batch 16), with
# the bench's own inputs (weights scaled by 1/sqrt(fan-in)) and check: forward and every gradient.
BENCH_LAYERS = [
    (2, 64, 56, 64), (2, 128, 28, 128), (2, 256, 14, 256), (2, 512, 7, 512),
    (16, 16, 32, 16), (16, 32, 16, 32), (16, 64, 8, 64),
]


@pytest.mark.parametrize("layer", BENCH_LAYERS, ids=["x".join(map(str, s)) for s in BENCH_LAYERS])
@pytest.mark.parametrize("op", ["conv2d", "conv2d_relu"])
def test_winograd_passes_the_bench_check_on_the_bench_layers(winograd, layer, op):
    from cnnfast.bench import runner
    from cnnfast.bench.suites import Case

    n, c, h, k = layer
    params = dict(input=[n, c, h, h], weight=[k, c, 3, 3], bias=True, output=[n, k, h, h], stride=[1, 1],
                  padding=[1, 1], dilation=[1, 1], groups=1)
    case = Case("resnet18", op, tuple(sorted(params.items())))
    impl, ref = runner.cnnfast_impl(), runner.reference_impl()
    result = runner.check(runner.Prepared(case, "fwdbwd", torch.float32, "nchw", "cpu"), impl, ref)
    assert result["passed"], result["message"]


def _forward_and_gradients(x, w, b, gy):
    x, w, b = (t.clone().requires_grad_() for t in (x, w, b))
    y = cnnfast.functional.conv2d_relu(x, w, b, padding=1)
    return [y, *torch.autograd.grad(y, (x, w, b), gy)]


@pytest.mark.parametrize("shape", [(3, 32, 9, 11, 40), (2, 48, 5, 5, 96), (1, 64, 3, 3, 40), (4, 32, 18, 18, 32)])
@pytest.mark.parametrize("path", PATHS)
def test_winograd_bit_identical_for_any_thread_count(monkeypatch, winograd, path, shape):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    n, c, h, w_, k = shape
    g = torch.Generator().manual_seed(7)
    x, w = torch.randn(n, c, h, w_, generator=g), torch.randn(k, c, 3, 3, generator=g)
    b, gy = torch.randn(k, generator=g), torch.randn(n, k, h, w_, generator=g)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = _forward_and_gradients(x, w, b, gy)
        for threads in (2, 3, 4):
            torch.set_num_threads(threads)
            assert all(torch.equal(a, b_) for a, b_ in zip(serial, _forward_and_gradients(x, w, b, gy)))
    finally:
        torch.set_num_threads(old)


def test_winograd_is_chosen_by_the_rule_and_forced_by_the_setting(monkeypatch):
    g = torch.Generator().manual_seed(5)

    def run(c, k, setting):
        if setting is None:
            monkeypatch.setattr(cnnfast.backends.cpu, "winograd", "auto")
        else:
            monkeypatch.setattr(cnnfast.backends.cpu, "winograd", setting)
        return cnnfast.functional.conv2d(x[:, :c], w[:k, :c], padding=1)

    x = torch.randn(3, 64, 9, 9, generator=g)
    w = torch.randn(64, 64, 3, 3, generator=g)
    on, off = run(64, 64, "on"), run(64, 64, "off")
    assert not torch.equal(on, off)  # a different (transformed) sum: the path was taken
    torch.testing.assert_close(on, off, rtol=1e-4, atol=1e-4)
    # Unset or auto, the measured rule: 16 channels and more each way, on the AVX-512 path.
    assert torch.equal(run(64, 64, "auto"), run(64, 64, None))
    chosen = run(64, 64, None)
    assert torch.equal(chosen, on if BEST == "avx512" else off)
    assert torch.equal(run(16, 16, "auto"), run(16, 16, "on" if BEST == "avx512" else "off"))
    assert torch.equal(run(8, 64, "auto"), run(8, 64, "off"))
    assert torch.equal(run(64, 8, "auto"), run(64, 8, "off"))
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", "avx2")
    assert torch.equal(run(64, 64, "auto"), run(64, 64, "off"))


def test_winograd_never_serves_float64_or_other_shapes(monkeypatch, winograd):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 32, 8, 8, generator=g, dtype=torch.float64)
    w = torch.randn(32, 32, 3, 3, generator=g, dtype=torch.float64)
    on = cnnfast.functional.conv2d(x, w, padding=1)
    monkeypatch.setattr(cnnfast.backends.cpu, "winograd", "off")
    assert torch.equal(on, cnnfast.functional.conv2d(x, w, padding=1))
    # Stride 2, dilation 2 and a 5x5 kernel take the direct path even when forced.
    xf, wf = x.float(), w.float()
    for kw in (dict(stride=2, padding=1), dict(dilation=2, padding=2)):
        monkeypatch.setattr(cnnfast.backends.cpu, "winograd", "on")
        forced = cnnfast.functional.conv2d(xf, wf, **kw)
        monkeypatch.setattr(cnnfast.backends.cpu, "winograd", "off")
        assert torch.equal(forced, cnnfast.functional.conv2d(xf, wf, **kw))
