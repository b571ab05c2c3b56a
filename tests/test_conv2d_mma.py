"""The tensor-core conv2d forward engine (csrc/cuda/conv2d_mma_kernel.cuh: mma.sync, ldmatrix and a
cp.async pipeline) on the CPU through the CUDA-on-CPU harness, against torch in float64.

Every tile configuration on the vector path, the masked path (any C), NCHW and NHWC, float16,
bfloat16 and float as TF32, shapes that cross the tile, slice and filter edges; three thread orders
with identical bits; no shared-memory bank conflicts in the engine's ldmatrix and epilogue; the
tile choice; split-K for grids under a wave. The bound is the a-priori one of tests/cuda_harness.py: a float32-accumulated sum of
R*S*C terms, one rounding of the output, and for TF32 the rounding of both inputs to 10 bits.
"""
import ctypes

import pytest
import torch
import torch.nn.functional as F

from cuda_harness import (  # noqa: F401  (lib: a fixture)
    DTYPES, EPS, EPS_ACC, LL, P, assert_within, from_nhwc, harness, lib, nhwc, run_orders, sizes_arg)

pytestmark = harness

# Tile ids of conv2d_mma_kernel.cuh: (id, BM, BN).
TILES = {"128x128": (0, 128, 128), "128x64": (1, 128, 64), "64x64": (2, 64, 64), "128x32": (3, 128, 32)}

# N C H W K R S stride pad dilation
CASES = {
    # M = 2*9*9 = 162 and K = 40 end inside every tile; R*S*C = 144 ends inside a slice.
    "c16-3x3": (2, 16, 9, 9, 40, 3, 3, (1, 1), (1, 1), (1, 1)),
    # more channels than a slice holds: the iterator carries through c only.
    "c72-1x1-s2": (1, 72, 7, 6, 24, 1, 1, (2, 2), (0, 0), (1, 1)),
    # ResNet's stem shape, small: 7x7 taps, stride 2, padding 3, three padding taps per edge.
    "c8-7x7-s2": (1, 8, 11, 10, 16, 7, 7, (2, 2), (3, 3), (1, 1)),
}
MASKED_CASES = {
    # C not a multiple of any vector (LeNet's first layer has C = 1): the masked path.
    "c1-5x5": (2, 1, 12, 12, 6, 5, 5, (1, 1), (0, 0), (1, 1)),
    "c5-3x3-d2": (1, 5, 10, 9, 20, 3, 3, (1, 2), (2, 1), (2, 2)),
    # float: C % 4 == 0 takes the vector path; halves: C % 8 != 0 the masked one.
    "c12-3x3-s2": (2, 12, 9, 8, 70, 3, 3, (2, 2), (1, 1), (1, 1)),
}


def inputs(case, dtype, seed):
    N, C, H, W, K, R, S = case[:7]
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(N, C, H, W, generator=g).to(dtype), torch.randn(K, C, R, S, generator=g).to(dtype),
            torch.randn(K, generator=g).to(dtype))


def run_engine(lib, case, dtype, layout, tile, relu=True, with_bias=True, seed=0):
    """The engine's output (NCHW view) and the bound check against torch in float64."""
    N, C, H, W, K, R, S, st, pad, dil = case
    x, w, b = inputs(case, dtype, seed)
    is_nhwc = layout == "nhwc"
    ref = F.conv2d(x.double(), w.double(), b.double() if with_bias else None, st, pad, dil)
    if relu:
        ref = ref.relu()
    mag = F.conv2d(x.double().abs(), w.double().abs(), b.double().abs() if with_bias else None, st, pad, dil)
    xs, ws = (nhwc(x), nhwc(w)) if is_nhwc else (x.contiguous(), w.contiguous())
    _, _, Pq, Qq = ref.shape
    y = torch.empty((N, Pq, Qq, K) if is_nhwc else (N, K, Pq, Qq), dtype=dtype)
    sizes = sizes_arg([N, C, H, W, K, R, S, *st, *pad, *dil, 1])

    def fwd():
        y.fill_(float("nan"))
        lib.call("cnnfast_conv2d_mma_forward", DTYPES[dtype], sizes, int(is_nhwc), P(xs), P(ws),
                 P(b) if with_bias else None, int(relu), tile, P(y))
        return [y]

    (out,) = run_orders(lib, fwd)
    out = from_nhwc(out) if is_nhwc else out
    input_rounding = 2 * 2.0**-11 * mag if dtype == torch.float32 else 0  # TF32: both inputs to 10 bits
    bound = EPS_ACC * (R * S * C + 2) * mag + input_rounding + EPS[dtype] * ref.abs() + 1e-30
    assert_within(out, ref, bound, f"mma forward {layout} tile {tile}")
    return out


@pytest.mark.parametrize("dtype", list(DTYPES), ids=["tf32", "f16", "bf16"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("tile", list(TILES))
@pytest.mark.parametrize("case", list(CASES))
def test_mma_forward_every_tile(lib, dtype, layout, tile, case):
    run_engine(lib, CASES[case], dtype, layout, TILES[tile][0], relu=(tile != "64x64"), with_bias=(tile != "128x64"))


@pytest.mark.parametrize("dtype", list(DTYPES), ids=["tf32", "f16", "bf16"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("case", list(MASKED_CASES))
def test_mma_forward_masked_path(lib, dtype, layout, case):
    run_engine(lib, MASKED_CASES[case], dtype, layout, -1)


def test_mma_forward_misaligned_input_takes_the_masked_path(lib):
    """An NHWC input 2 bytes off a 16-byte boundary cannot be copied 16 bytes at a time."""
    N, C, H, W, K, R, S = 1, 16, 6, 6, 8, 3, 3
    g = torch.Generator().manual_seed(4)
    x, w = torch.randn(N, C, H, W, generator=g).half(), torch.randn(K, C, R, S, generator=g).half()
    storage = torch.zeros(N * H * W * C + 1, dtype=torch.float16)
    xs = storage[1:].view(N, H, W, C)
    xs.copy_(x.permute(0, 2, 3, 1))
    ws = nhwc(w)
    y = torch.full((N, H - 2, W - 2, K), float("nan"), dtype=torch.float16)
    lib.call("cnnfast_conv2d_mma_forward", DTYPES[torch.float16], sizes_arg([N, C, H, W, K, R, S, 1, 1, 0, 0, 1, 1, 1]),
             1, ctypes.c_void_p(xs.data_ptr()), P(ws), None, 0, -1, P(y))
    ref = F.conv2d(x.double(), w.double())
    mag = F.conv2d(x.double().abs(), w.double().abs())
    assert_within(from_nhwc(y), ref, EPS_ACC * (R * S * C + 2) * mag + EPS[torch.float16] * ref.abs(), "misaligned")


SPLIT_CASES = {
    # 64 channels 3x3 on a 6x6 image: one or two CTAs, 9 to 18 slices: split-K on 132 SMs.
    "c64-3x3": (1, 64, 6, 6, 40, 3, 3, (1, 1), (1, 1), (1, 1)),
    # the masked path (halves: C % 8 != 0), 28 slices of 64 elements.
    "c36-7x7": (1, 36, 8, 8, 16, 7, 7, (1, 1), (3, 3), (1, 1)),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["tf32", "f16"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("case", list(SPLIT_CASES))
def test_mma_forward_split_k(lib, dtype, layout, case):
    """A grid under one wave splits the reduction; the splits are added in order by a second kernel
    (bias and ReLU there): the same bound, identical bits under every thread order."""
    c = SPLIT_CASES[case]
    sizes = sizes_arg([*c[:7], *c[7], *c[8], *c[9], 1])
    tiles = [-1] if case == "c36-7x7" else [t[0] for t in TILES.values()]
    for tile in tiles:
        shown = TILES["64x64"][0] if tile < 0 else tile
        splits = lib.cnnfast_conv2d_mma_splits(DTYPES[dtype], sizes, shown, 132)
        assert 2 <= splits <= 16, (tile, splits)
        run_engine(lib, c, dtype, layout, tile)


def test_mma_split_plan_leaves_full_grids_alone(lib):
    # ResNet-50's 56x56 layer at batch 32: many waves, no split; the same layer at batch 1 on 132 SMs splits.
    big = sizes_arg([32, 64, 56, 56, 256, 1, 1, 1, 1, 0, 0, 1, 1, 1])
    assert lib.cnnfast_conv2d_mma_splits(DTYPES[torch.float16], big, TILES["128x128"][0], 132) == 1
    small = sizes_arg([1, 256, 7, 7, 512, 3, 3, 1, 1, 1, 1, 1, 1, 1])
    splits = lib.cnnfast_conv2d_mma_splits(DTYPES[torch.float16], small, TILES["128x128"][0], 132)
    # 4 CTAs, 264 slots: 16 splits wanted (72 slices allow 18 of 4); 72 slices in splits of
    # ceil(72 / 16) = 5 make ceil(72 / 5) = 15 splits, none empty.
    assert splits == 15
    # A reduction too short to split (5 slices): none.
    short = sizes_arg([1, 16, 6, 6, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1])
    assert lib.cnnfast_conv2d_mma_splits(DTYPES[torch.float16], short, TILES["128x128"][0], 132) == 1


def test_mma_engine_shared_memory_has_no_bank_conflicts(lib):
    """ldmatrix of the swizzled operands and the epilogue's 8-byte stores and 16-byte loads."""
    for tile in TILES.values():
        for dtype in (torch.float16, torch.float32):
            lib.reset_bank_counts()
            run_engine(lib, CASES["c16-3x3"], dtype, "nhwc", tile[0])
            for kind in ("ldmatrix", "sts", "lds"):
                accesses, conflicts = lib.bank_counts(kind)
                assert accesses > 0 and conflicts == 0, (tile, dtype, kind, accesses, conflicts)


def choice(lib, M, K, sms):
    ctas, waves = LL(), LL()
    tile = lib.cnnfast_conv2d_mma_choice(LL(M), LL(K), sms, ctypes.byref(ctas), ctypes.byref(waves))
    return tile, ctas.value, waves.value / 1000


@pytest.mark.parametrize("sms", [132, 108])
def test_mma_tile_choice(lib, sms):
    by_id = {v[0]: v for v in TILES.values()}
    for M, K in [(8 * 56 * 56, 256), (16 * 8 * 8, 64), (64 * 24 * 24, 6), (32 * 16 * 16, 32), (1, 1),
                 (8 * 7 * 7, 512), (64 * 28 * 28, 128)]:
        tile, ctas, waves = choice(lib, M, K, sms)
        _, bm, bn = by_id[tile]
        assert ctas == -(-M // bm) * -(-K // bn), (M, K, tile)
        assert waves > 0
        if K <= 32:
            assert tile == TILES["128x32"][0], (M, K)
    # Many waves (ResNet-50's 56x56 layers at batch 64): the last wave matters little, so the largest
    # tile (most reuse per loaded byte).
    assert choice(lib, 64 * 56 * 56, 256, sms)[0] == TILES["128x128"][0]
    # CIFAR's 64 channels at 8x8, batch 16: under a wave, so the smaller tile that makes more CTAs.
    tile, ctas, _ = choice(lib, 16 * 8 * 8, 64, sms)
    assert (tile, ctas) == (TILES["64x64"][0], 16)
