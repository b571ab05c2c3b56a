"""The CPU Winograd F(2x2, 3x3) convolution (csrc/cpu/conv2d/winograd.*): forward, the fused ReLU, the stride-1
grad-input (a forward convolution of dy) and grad-weight through it, against torch with the project's
one tolerance rule (tests/reference.py), on every SIMD path, in each of its work orders (forward:
tile-major and channel-major; grad-weight: all tiles at once or chunks of tiles), bit-identical for
any thread count; each transform of each ISA against its matrix product in float64 and bit for bit
against the portable one; and the rule that chooses it, with cnnfast.backends.cpu.winograd =
"off"/"on" forcing it off/on (read at each call)."""
import pytest
import torch
import torch.nn.functional as F

import cnnfast
from cnnfast import _C
from reference import assert_bit_identical_for_thread_counts
from test_conv2d import conv, run_conv_case
from test_conv2d_relu import fused, reference
from test_cpu_capability import BEST, ORDER, PATHS

# The SIMD paths: their Winograd GEMMs are the same fused multiply-adds in the same order (gemm.h), so
# their results differ only if their transforms do.
SIMD_PATHS = [p for p in PATHS if p.values[0] != "default"]

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


@pytest.mark.parametrize("path", PATHS)
def test_winograd_channels_last_and_strided(monkeypatch, winograd, path):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
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
@pytest.mark.parametrize("path", SIMD_PATHS)
def test_winograd_passes_the_bench_check_on_the_bench_layers(monkeypatch, winograd, path, layer, op):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    from cnnfast.bench import runner
    from cnnfast.bench.suites import Case

    n, c, h, k = layer
    params = dict(input=[n, c, h, h], weight=[k, c, 3, 3], bias=True, output=[n, k, h, h], stride=[1, 1],
                  padding=[1, 1], dilation=[1, 1], groups=1)
    case = Case("resnet18", op, tuple(sorted(params.items())))
    impl, ref = runner.cnnfast_impl(), runner.reference_impl()
    result = runner.check(runner.Prepared(case, "fwdbwd", torch.float32, "nchw", "cpu"), impl, ref)
    assert result["passed"], result["message"]


def _forward_and_gradients(x, w, b, gy, padding=1):
    x, w, b = (t.clone().requires_grad_() for t in (x, w, b))
    y = cnnfast.functional.conv2d_relu(x, w, b, padding=padding)
    return [y, *torch.autograd.grad(y, (x, w, b), gy)]


@pytest.mark.parametrize("shape", [(3, 32, 9, 11, 40), (2, 48, 5, 5, 96), (1, 64, 3, 3, 40), (4, 32, 18, 18, 32)])
@pytest.mark.parametrize("path", PATHS)
def test_winograd_bit_identical_for_any_thread_count(monkeypatch, winograd, path, shape):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    n, c, h, w_, k = shape
    g = torch.Generator().manual_seed(7)
    x, w = torch.randn(n, c, h, w_, generator=g), torch.randn(k, c, 3, 3, generator=g)
    b, gy = torch.randn(k, generator=g), torch.randn(n, k, h, w_, generator=g)
    assert_bit_identical_for_thread_counts(lambda: _forward_and_gradients(x, w, b, gy), threads=(2, 3, 4))


# The AVX2 transforms hold 16 lanes as two halves of 8: tile rows of 7, 8, 9, 15, 16 and 17 tiles (odd
# and even output widths) put a segment's end on each side of the halves and of the group, and channel
# counts around 8 and 16 put the masked tails of the filter transforms and of V's transpose there.
LANE_SPLIT = ([(n, 16, 4, 2 * tw + 2 - odd, 16, 1) for tw in (7, 8, 9, 15, 16, 17) for odd in (0, 1) for n in (1, 3)]
              + [(2, c, 5, 17, k, 1) for c in (1, 7, 8, 9, 15, 16, 17, 24, 33) for k in (1, 8, 9, 17)])


@pytest.mark.parametrize("case", LANE_SPLIT, ids=[str(c) for c in LANE_SPLIT])
@pytest.mark.parametrize("path", SIMD_PATHS)
def test_winograd_lane_split_matches_torch_and_the_avx512_bits(monkeypatch, winograd, path, case):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    n, c, h, w, k, padding = case
    run_conv_case(fused, reference, n, c, h, w, k, 3, 1, padding, 1, 1, seed=c + k)
    if BEST != "avx512" or path == "avx512":
        return
    g = torch.Generator().manual_seed(11)
    x, wt = torch.randn(n, c, h, w, generator=g), torch.randn(k, c, 3, 3, generator=g)
    b, gy = torch.randn(k, generator=g), torch.randn(n, k, h + 2 * padding - 2, w + 2 * padding - 2, generator=g)
    ours = _forward_and_gradients(x, wt, b, gy, padding)
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", "avx512")
    assert all(torch.equal(a, e) for a, e in zip(ours, _forward_and_gradients(x, wt, b, gy, padding)))


# B^T, G and A^T of winograd.h, for the float64 reference of each transform.
BT = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=torch.float64)
G = torch.tensor([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], dtype=torch.float64)
AT = torch.tensor([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=torch.float64)
U32 = 2.0 ** -24


def _gamma(n):
    """The bound on the relative error of n roundings in float32 (Higham's gamma_n)."""
    return n * U32 / (1 - n * U32)


def _run_transforms(cap, n, c, h, w, k, pad, bias, relu, seed):
    g = torch.Generator().manual_seed(seed)
    p, q = h + 2 * pad - 2, w + 2 * pad - 2
    th, tw = (p + 1) // 2, (q + 1) // 2
    tp = -(-n * th * tw // 16) * 16
    ins = dict(x=torch.randn(n, c, h, w, generator=g), w=torch.randn(k, c, 3, 3, generator=g),
               dy=torch.randn(n, k, p, q, generator=g), m=torch.randn(16, k, tp, generator=g),
               du=torch.randn(16, k, c, generator=g), bias=torch.randn(k, generator=g) if bias else None)
    raw = _C._cpu_winograd_transforms(cap, (n, c, h, w, k, pad, pad),
                                      *(None if t is None else t.numpy().tobytes() for t in ins.values()), relu)
    shapes = [(16, c, tp), (n, k, p, q), (16, k, c), (16, tp, c), (16, k, tp), (k, c, 3, 3)]
    outs = [torch.frombuffer(bytearray(r), dtype=torch.float32).reshape(s) for r, s in zip(raw, shapes)]
    return ins, dict(zip(["v", "y", "u", "vt", "d", "dw"], outs)), (p, q, th, tw, tp)


def _reference_transforms(ins, n, c, h, w, k, pad, relu, sizes):
    """Each transform as its matrix product in float64, with |L| |X| |R| (the scale of its error bound)."""
    p, q, th, tw, tp = sizes
    f64 = {name: None if t is None else t.double() for name, t in ins.items()}
    t = n * th * tw
    out = {}

    def both(left, x, right):
        return left @ x @ right, left.abs() @ x.abs() @ right.abs()

    def lanes(a):  # [n, channel, th, tw, 4, 4] -> [xi][channel][tile], zero past the last tile
        return F.pad(a.permute(4, 5, 1, 0, 2, 3).reshape(16, a.shape[1], t), (0, tp - t))

    # Input tiles: rows and columns 2 th .. 2 th + 3 of the padded input (zero past its edges).
    xp = torch.zeros(n, c, 2 * th + 2, 2 * tw + 2, dtype=torch.float64)
    xp[:, :, pad:pad + h, pad:pad + w] = f64["x"][:, :, :2 * th + 2 - pad, :2 * tw + 2 - pad]
    d = xp.unfold(2, 4, 2).unfold(3, 4, 2)                                  # n, c, th, tw, 4, 4
    v, vs = both(BT, d, BT.T)
    out["v"], out["vt"] = (lanes(v), lanes(vs)), (lanes(v).transpose(1, 2), lanes(vs).transpose(1, 2))
    # Output: the tiles' 2x2 blocks cropped to P x Q, plus bias, ReLU'd.
    mt = f64["m"][:, :, :t].reshape(4, 4, k, n, th, tw).permute(3, 2, 4, 5, 0, 1)
    y, ys = both(AT, mt, AT.T)                                              # n, k, th, tw, 2, 2
    y = y.permute(0, 1, 2, 4, 3, 5).reshape(n, k, 2 * th, 2 * tw)[:, :, :p, :q]
    ys = ys.permute(0, 1, 2, 4, 3, 5).reshape(n, k, 2 * th, 2 * tw)[:, :, :p, :q]
    if f64["bias"] is not None:
        y, ys = y + f64["bias"].view(1, k, 1, 1), ys + f64["bias"].abs().view(1, k, 1, 1)
    out["y"] = (y.clamp_min(0) if relu else y, ys)
    u, us = both(G, f64["w"], G.T)                                          # k, c, 4, 4
    out["u"] = (u.permute(2, 3, 0, 1).reshape(16, k, c), us.permute(2, 3, 0, 1).reshape(16, k, c))
    dyp = torch.zeros(n, k, 2 * th, 2 * tw, dtype=torch.float64)
    dyp[:, :, :p, :q] = f64["dy"]
    dt = dyp.unfold(2, 2, 2).unfold(3, 2, 2)                                # n, k, th, tw, 2, 2
    dd, dds = both(AT.T, dt, AT)
    out["d"] = (lanes(dd), lanes(dds))
    du = f64["du"].reshape(4, 4, k, c).permute(2, 3, 0, 1)
    out["dw"] = both(G.T, du, G)
    return out


# Roundings per element of each transform (winograd_simd.inc): two stages of one add or subtract (input,
# grad_output); two stages of two (the filter's and the filter gradient's, whose halvings are exact), the
# output's two of two plus the bias.
ROUNDINGS = dict(v=2, vt=2, d=2, u=4, dw=4, y=5)
TRANSFORM_CASES = ([(n, 16, 3, 2 * tw + 2 - odd, 16, 1) for tw in (7, 8, 9, 15, 16, 17) for odd in (0, 1)
                    for n in (1, 2)]
                   + [(2, c, 5, 9, k, pad) for c in (1, 7, 8, 9, 15, 16, 17, 33) for k in (1, 8, 9, 16, 17)
                      for pad in (0, 2)])


@pytest.mark.parametrize("case", TRANSFORM_CASES, ids=[str(c) for c in TRANSFORM_CASES])
@pytest.mark.parametrize("path", PATHS)
def test_winograd_transforms_match_float64_and_the_portable_bits(path, case):
    n, c, h, w, k, pad = case
    for bias, relu in ((True, False), (False, True)):
        ins, ours, sizes = _run_transforms(path, n, c, h, w, k, pad, bias, relu, seed=n + c + k + w)
        ref = _reference_transforms(ins, n, c, h, w, k, pad, relu, sizes)
        for name, got in ours.items():
            want, scale = ref[name]
            err = (got.double() - want).abs()
            assert bool((err <= _gamma(ROUNDINGS[name]) * scale).all()), \
                f"{name} of {path} {case}: error {err.max().item():.3g}, bound {_gamma(ROUNDINGS[name]):.3g} x scale"
        if path != "default":
            _, portable, _ = _run_transforms("default", n, c, h, w, k, pad, bias, relu, seed=n + c + k + w)
            for name in ours:
                assert torch.equal(ours[name], portable[name]), f"{name} of {path} {case}: not the portable bits"


def test_winograd_transforms_refuse_bad_arguments():
    with pytest.raises(ValueError, match="capability must be avx512, avx2 or default, got 'sse'"):
        _run_transforms("sse", 1, 16, 4, 4, 16, 1, True, False, seed=0)
    if BEST != ORDER[-1]:  # a path above the CPU's would be an illegal instruction
        with pytest.raises(ValueError, match=f"supports at most capability {BEST}, got '{ORDER[-1]}'"):
            _run_transforms(ORDER[-1], 1, 16, 4, 4, 16, 1, True, False, seed=0)
    x = torch.zeros(1, 2, 4, 4).numpy().tobytes()
    with pytest.raises(ValueError, match="w must hold 36 float32 values, got 4 bytes"):
        _C._cpu_winograd_transforms("default", (1, 2, 4, 4, 2, 0, 0), x, b"1234", b"", b"", b"", None, False)
    with pytest.raises(ValueError, match="non-empty output"):
        _C._cpu_winograd_transforms("default", (1, 2, 1, 4, 2, 0, 0), x, b"", b"", b"", b"", None, False)


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
    # Unset or auto, the measured rule: 16 channels and more each way, on a SIMD path (AVX-512 or AVX2).
    for path in ORDER[::-1]:
        monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
        simd = cnnfast.backends.cpu.capability != "default"
        assert torch.equal(run(64, 64, "auto"), run(64, 64, None))
        assert torch.equal(run(64, 64, None), run(64, 64, "on" if simd else "off"))
        assert torch.equal(run(16, 16, "auto"), run(16, 16, "on" if simd else "off"))
        assert not torch.equal(run(16, 16, "on"), run(16, 16, "off"))
        assert torch.equal(run(15, 64, "auto"), run(15, 64, "off"))
        assert torch.equal(run(64, 15, "auto"), run(64, 15, "off"))
        assert not torch.equal(run(15, 64, "on"), run(15, 64, "off"))


@pytest.mark.parametrize("path", PATHS)
def test_winograd_never_serves_float64_or_other_shapes(monkeypatch, winograd, path):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
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
