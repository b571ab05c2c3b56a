"""cnnfast's CUDA kernels against torch.nn.functional.

Without a GPU: every kernel (csrc/cuda/*.cuh) runs on the CPU through the CUDA-on-CPU harness
(tests/cuda_kernels/entry_points.cpp, built with g++), in every dtype and storage order it has,
over shapes that cross every tile edge; each launch runs under three thread orders and must give
bit-identical results. Results are compared with torch in float64 on the dtype-rounded inputs,
within a bound derived from the reduction length: |err| <= eps_acc * Kr * sum|a*b| + eps_out * |ref|.

With a GPU (marker ``cuda``): the real ops against torch.nn.functional on CUDA; skipped here.
The ptxas report of a CUDA build is checked too (no spills, no stack frame).
"""
import ctypes
import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harness import coc, missing as _missing, needs_harness as harness

ROOT = Path(__file__).resolve().parent.parent


ORDERS = [("forward", 0), ("reversed", 0), ("shuffled", 7)]
DTYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
# Unit roundoff of the storage types (outputs are rounded once to these).
EPS = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
EPS_ACC = 2.0**-24  # every kernel accumulates in float32
P = coc.ptr
LL = ctypes.c_longlong


@pytest.fixture(scope="module")
def lib():
    if _missing is not None:
        pytest.skip(_missing)
    lib = coc.load([ROOT / "tests" / "cuda_kernels" / "entry_points.cpp"], name="cnnfast_cuda_kernels")
    lib.cnnfast_conv2d_wgrad_workspace.restype = ctypes.c_longlong
    lib.cnnfast_conv2d_bias_workspace.restype = ctypes.c_longlong
    return lib


def sizes_arg(values):
    return (LL * len(values))(*values)


def run_orders(lib, fn):
    """fn() fills and returns output tensors; run it under every order, require identical bits."""
    outs = []
    for order, seed in ORDERS:
        lib.set_order(order, seed)
        outs.append([t.clone() for t in fn()])
    lib.set_order("forward")
    for (order, seed), out in zip(ORDERS[1:], outs[1:]):
        for a, b in zip(outs[0], out):
            assert torch.equal(a.view(torch.uint8), b.view(torch.uint8)), f"order {order} (seed {seed}) differs"
    return outs[0]


def nhwc(t):
    """[N, C, H, W] -> contiguous NHWC storage (as a [N, H, W, C] tensor)."""
    return t.permute(0, 2, 3, 1).contiguous()


def from_nhwc(t):
    return t.permute(0, 3, 1, 2)


def assert_within(out, ref, bound, what):
    err = (out.double() - ref).abs()
    worst = (err - bound).max().item()
    assert worst <= 0, f"{what}: max error {err.max().item():.3g} exceeds the bound by {worst:.3g}"


# ---- relu ---------------------------------------------------------------------------------------

@harness
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("n, offset", [(1, 0), (37, 0), (4096 + 13, 0), (100, 1)])
def test_relu(lib, dtype, n, offset):
    base = torch.randn(n + offset, dtype=torch.float32).to(dtype)
    base[::7] = 0.0
    base[3::11] = float("nan")  # relu(NaN) = NaN, and its gradient passes (torch's threshold_backward)
    base[5::13] = -0.0
    xs = base[offset:]  # offset 1: a misaligned pointer, the scalar path
    y = torch.empty(n + offset, dtype=dtype)[offset:]

    def fwd():
        lib.call("cnnfast_relu", DTYPES[dtype], ctypes.c_void_p(xs.data_ptr()), ctypes.c_void_p(y.data_ptr()), LL(n))
        return [y]

    exact = dict(rtol=0, atol=0, equal_nan=True)
    (out,) = run_orders(lib, fwd)
    torch.testing.assert_close(out, torch.relu(xs), **exact)
    # In place (y == x).
    z = xs.clone()
    lib.call("cnnfast_relu", DTYPES[dtype], P(z), P(z), LL(n))
    torch.testing.assert_close(z, torch.relu(xs), **exact)
    # Backward: dy where y is not <= 0 (NaN passes), as torch's own.
    dy = torch.randn(n, dtype=torch.float32).to(dtype)
    yr = torch.relu(xs).contiguous()
    dx = torch.empty(n, dtype=dtype)

    def bwd():
        lib.call("cnnfast_relu_backward", DTYPES[dtype], P(dy), P(yr), P(dx), LL(n))
        return [dx]

    (out,) = run_orders(lib, bwd)
    assert torch.equal(out, torch.ops.aten.threshold_backward(dy, yr, 0))


# ---- max_pool2d ---------------------------------------------------------------------------------

POOL_CASES = [
    # N, C, H, W, kernel, stride, padding, dilation, ceil_mode
    (1, 1, 4, 4, (2, 2), (2, 2), (0, 0), (1, 1), False),
    (3, 3, 9, 7, (3, 3), (2, 2), (1, 1), (1, 1), False),
    (2, 5, 8, 11, (3, 2), (1, 2), (1, 0), (2, 1), True),
    (1, 4, 7, 7, (3, 3), (2, 2), (1, 1), (1, 1), True),
]


@harness
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "x".join(map(str, c[:4])) + f"k{c[4][0]}{c[4][1]}s{c[5][0]}{c[5][1]}")
def test_max_pool2d(lib, dtype, layout, case):
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

    # Backward, both kernels (gather over windows, per-plane scatter), against torch's.
    dy = torch.randn(N, C, Pq, Qq).to(dtype)
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


# ---- conv2d -------------------------------------------------------------------------------------

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
def test_conv2d_forward(lib, dtype, layout, case):
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
def test_conv2d_backward(lib, dtype, layout, case):
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


# ---- the build's kernel report (ptxas) -------------------------------------------------------------

def _kernel_report():
    spec = importlib.util.spec_from_file_location("cnnfast_kernel_report", ROOT / "cnnfast" / "_kernel_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_kernel_report_no_spills():
    """A CUDA build's ptxas report: every kernel listed, none spills or has a stack frame."""
    kr = _kernel_report()
    report = kr.load()
    try:
        from cnnfast import _build_config as build
        built = bool(build.cuda)
    except ImportError:
        built = False
    if not built:
        pytest.skip("CPU-only build: no CUDA kernels, no ptxas report")
    assert report is not None, "a CUDA build must write cnnfast/_kernel_report.json"
    assert report["kernels"], "the ptxas report lists no kernel"
    archs = {r["arch"] for r in report["kernels"]}
    assert {"sm_80", "sm_90"} <= archs or build.cuda_archs not in ("8.0;9.0", ""), archs
    problems = kr.problems(report)
    assert not problems, "\n".join(problems)


def test_kernel_machine_code():
    """SASS of the built extension: no local memory (LDL/STL), 128-bit loads on the float vector paths,
    HMMA in every tensor-core kernel, the FFMA implicit GEMM's main loop fully unrolled (8 x 64 FFMA)."""
    kr = _kernel_report()
    try:
        from cnnfast import _build_config as build
        built = bool(build.cuda)
    except ImportError:
        built = False
    if not built:
        pytest.skip("CPU-only build: no CUDA machine code")
    if kr.find_cuobjdump() is None:
        pytest.skip("cuobjdump/nvdisasm not installed (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    import glob

    (binary,) = glob.glob(str(ROOT / "cnnfast" / "_C*.so"))
    for arch in ("sm_80", "sm_90"):
        assert not kr.sass_problems(binary, arch)
        counts = kr.sass_counts(binary, arch)
        gemm = [ops for name, ops in counts.items() if "conv2d_gemm_kernel" in name]
        assert len(gemm) == 6  # FFMA: float forward, grad-input, grad-weight, NCHW and NHWC
        assert all(ops.get("FFMA", 0) >= 512 for ops in gemm)
        wmma = [ops for name, ops in counts.items() if "conv2d_wmma_kernel" in name]
        assert len(wmma) == 18  # tensor cores: half, bfloat16, TF32 x three passes x two layouts
        assert all(sum(n for op, n in ops.items() if op.startswith("HMMA")) >= 16 for ops in wmma)
    # The build's report has each kernel's main-loop math when cuobjdump was there at build time.
    report = kr.load()
    if report and all("loop_math" in r for r in report["kernels"]):
        for r in report["kernels"]:
            if r["kernel"] == "conv2d_gemm_kernel":
                assert r["loop_math"].get("FFMA", 0) >= 512, r["name"]  # 8 slices x 8 x 8 per thread
            if r["kernel"] == "conv2d_wmma_kernel":
                assert r["loop_math"].get("HMMA", 0) >= 16, r["name"]


def test_kernel_report_parses_ptxas():
    kr = _kernel_report()
    text = (
        "ptxas info    : Compiling entry function '_Z1kPf' for 'sm_80'\n"
        "ptxas info    : Function properties for _Z1kPf\n"
        "    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n"
        "ptxas info    : Used 40 registers, used 1 barriers, 12288 bytes smem, 372 bytes cmem[0]\n"
    )
    (r,) = kr.parse(text)
    assert (r["registers"], r["shared_bytes"], r["stack_bytes"], r["spill_stores"]) == (40, 12288, 8, 4)
    # 128 threads, 128 registers: 4 warps of 4096 registers -> 4 blocks, 16 of 64 warps.
    assert kr.occupancy("sm_80", 128, 128, 12288) == 0.25


def test_info_kernels_prints_the_report():
    import argparse
    import io

    pytest.importorskip("cnnfast._C")
    from cnnfast import _build_config as build
    from cnnfast import info

    out = io.StringIO()
    assert info.run(argparse.Namespace(kernels=True), out) == 0
    text = out.getvalue()
    if build.cuda:
        assert "conv2d_gemm_kernel" in text and "sm_80" in text and "sm_90" in text
        assert "spills or stack frames: 0" in text
    else:
        assert "CUDA kernel report: none" in text


# ---- real CUDA (skipped without a GPU) ----------------------------------------------------------

def _cuda_ready():
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        from cnnfast import _build_config as build
    except ImportError:
        return "cnnfast is not built"
    return None if build.cuda else "cnnfast was built without CUDA kernels"


cuda = pytest.mark.skipif(_cuda_ready() is not None, reason=f"{_cuda_ready()}")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_cuda_conv2d_against_cudnn(dtype, channels_last, case, monkeypatch):
    import cnnfast  # noqa: F401  (registers the ops)

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # float32 on FFMA, cuDNN without TF32
    x, w, b = (t.cuda() for t in rounded_inputs(case, dtype))
    if channels_last:
        x, w = x.to(memory_format=torch.channels_last), w.to(memory_format=torch.channels_last)
    st, pad, dil, g = case[7:]
    x.requires_grad_()
    w.requires_grad_()
    b.requires_grad_()
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    for op, post in ((torch.ops.cnnfast.conv2d, lambda t: t), (torch.ops.cnnfast.conv2d_relu, torch.relu)):
        out = op(x, w, b, list(st), list(pad), list(dil), g)
        ref = post(F.conv2d(x, w, b, st, pad, dil, g))
        torch.testing.assert_close(out, ref, **tol)
        dy = torch.randn_like(ref)
        got = torch.autograd.grad(out, (x, w, b), dy)
        exp = torch.autograd.grad(ref, (x, w, b), dy)
        for a, e in zip(got, exp):
            torch.testing.assert_close(a, e, **tol)
        again = torch.autograd.grad(op(x, w, b, list(st), list(pad), list(dil), g), (x, w, b), dy)
        for a, e in zip(got, again):
            assert torch.equal(a, e), "repeated backward differs (must be deterministic)"


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast_casts_like_torch(dtype):
    import cnnfast  # noqa: F401

    x = torch.randn(2, 3, 9, 9, device="cuda", requires_grad=True)
    w = torch.randn(4, 3, 3, 3, device="cuda", requires_grad=True)
    b = torch.randn(4, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=dtype):
        out = torch.ops.cnnfast.conv2d_relu(x, w, b, [1, 1], [1, 1], [1, 1], 1)
        ref = F.conv2d(x, w, b, 1, 1).relu()
    assert out.dtype == ref.dtype == dtype
    torch.testing.assert_close(out, ref, rtol=2e-2, atol=2e-2)
    out.float().sum().backward()
    assert x.grad.dtype == w.grad.dtype == b.grad.dtype == torch.float32


@pytest.mark.cuda
@cuda
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


@pytest.mark.cuda
@cuda
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
