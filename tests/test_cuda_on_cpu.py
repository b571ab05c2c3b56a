"""The CUDA-on-CPU harness (csrc/cuda_on_cpu) tested on itself.

Correct kernels (tests/cuda_on_cpu/kernels.cuh) must run exactly, bit-identical under three
thread orders, and match torch; planted-bug kernels (tests/cuda_on_cpu/planted_bugs.cuh) must be
caught. The same .cuh files go through nvcc unchanged. The AddressSanitizer build
(marker ``asan``) runs a standalone driver in a subprocess.
"""
import ctypes
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harness import coc, needs_harness as pytestmark  # noqa: F401  (pytestmark: every test needs the harness)

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "tests" / "cuda_on_cpu"


ORDERS = [("forward", 0), ("reversed", 0), ("shuffled", 1), ("shuffled", 2)]
ORDER_IDS = ["forward", "reversed", "shuffled1", "shuffled2"]
P = coc.ptr


@pytest.fixture(scope="session")
def builds():
    """Every build of this file, compiled concurrently (each is a separate g++ process)."""
    pool = ThreadPoolExecutor(max_workers=3)
    futures = {
        "lib": pool.submit(coc.build, [HERE / "entry_points.cpp"], name="harness_tests", werror=True),
        "asan": pool.submit(coc.build, [HERE / "driver.cpp"], executable=True, asan=True, opt="-O1",
                            name="harness_driver", werror=True),
        "plain": pool.submit(coc.build, [HERE / "driver.cpp"], executable=True, name="harness_driver", werror=True),
    }
    yield futures
    pool.shutdown(wait=True)


@pytest.fixture(scope="session")
def lib(builds):
    return coc.Library(builds["lib"].result())


def run_orders(lib, fn):
    """Run fn() under every order; assert bit-identical outputs; return the first."""
    return coc.in_every_order(lib, fn, ORDERS)


# ---- correct kernels --------------------------------------------------------------------------

@pytest.mark.parametrize("M,N,K", [(16, 16, 16), (37, 29, 45), (64, 48, 80), (1, 7, 3)])
def test_tiled_matmul(lib, M, N, K):
    g = torch.Generator().manual_seed(M * N * K)
    A = torch.randint(-8, 8, (M, K), generator=g).float()
    B = torch.randint(-8, 8, (K, N), generator=g).float()

    def run():
        C = torch.full((M, N), float("nan"))
        lib.call("coc_tiled_matmul", P(A), P(B), P(C), M, N, K)
        return (C,)

    (C,) = run_orders(lib, run)
    assert torch.equal(C, A @ B)  # small integers: exact in any summation order
    A, B = torch.randn(M, K, generator=g), torch.randn(K, N, generator=g)
    (C,) = run_orders(lib, run)
    torch.testing.assert_close(C, A @ B, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n,threads", [(1000, 128), (4096, 1024), (33, 64), (64, 32)])
def test_warp_sum(lib, n, threads):
    x = torch.arange(n, dtype=torch.float32) % 23
    blocks = -(-n // threads)

    def run():
        s = torch.full((blocks,), float("nan"))
        lib.call("coc_warp_sum", P(x), P(s), n, threads)
        return (s,)

    (s,) = run_orders(lib, run)
    pad = torch.zeros(blocks * threads)
    pad[:n] = x
    assert torch.equal(s, pad.view(blocks, threads).sum(1))
    assert s.sum().item() == x.sum().item()


def expected_collectives(blocks, threads):
    out = []
    for b in range(blocks):
        for t in range(threads):
            lane, warp = t % 32, t // 32
            v = lambda l: 100 * warp + l  # noqa: E731
            row = [v(5), v((lane // 8) * 8 + (lane + 3) % 8), v(lane - 3) if lane >= 3 else v(lane)]
            seg = lane // 16 * 16
            row.append(v(lane + 4) if lane + 4 < seg + 16 else v(lane))
            row.append(v(lane ^ 1))
            row.append(sum(1 << l for l in range(32) if l % 3 == 0) - (1 << 32 if 1 << 31 & sum(1 << l for l in range(32) if l % 3 == 0) else 0))
            row += [1, 0]
            if lane < 16:
                row += [v(lane + 1) if lane + 1 < 16 else v(lane), sum(1 << l for l in range(16) if l & 1)]
            else:
                row += [v(31), 1]
            row.append(v(lane ^ 2))
            row.append(v(0))
            out.append(row)
    return torch.tensor(out, dtype=torch.int32)


@pytest.mark.parametrize("blocks,threads", [(2, 64), (1, 96)])
def test_warp_collectives(lib, blocks, threads):
    def run():
        out = torch.full((blocks * threads, 12), -7, dtype=torch.int32)
        lib.call("coc_collectives", P(out), blocks, threads)
        return (out,)

    (out,) = run_orders(lib, run)
    assert torch.equal(out, expected_collectives(blocks, threads))


@pytest.mark.parametrize("n,threads", [(300, 64), (1024, 1024), (5, 32)])
def test_dynamic_shared_memory(lib, n, threads):
    x = torch.randn(n)

    def run():
        y = torch.full((n,), float("nan"))
        lib.call("coc_block_reverse", P(x), P(y), n, threads)
        return (y,)

    (y,) = run_orders(lib, run)
    ref = torch.cat([c.flip(0) for c in x.split(threads)])
    assert torch.equal(y, ref)


def test_vector_types_and_barrier_reductions(lib):
    n4 = 150
    x = torch.randn(n4 * 4)
    blocks = -(-n4 // 64)

    def run():
        y = torch.full_like(x, float("nan"))
        counts = torch.full((blocks, 3), -1, dtype=torch.int32)
        lib.call("coc_vector_copy", P(x), P(y), n4, P(counts))
        return y, counts

    y, counts = run_orders(lib, run)
    assert torch.equal(y, x)
    pos = torch.zeros(blocks * 64, dtype=torch.int32)
    pos[:n4] = (x.view(n4, 4)[:, 0] > 0).int()
    pos = pos.view(blocks, 64)
    ref = torch.stack([pos.sum(1), (pos.sum(1) == 64).int(), (pos.sum(1) > 0).int()], 1).int()
    assert torch.equal(counts, ref)


def test_atomics(lib):
    n = 500
    keys = (torch.arange(n, dtype=torch.int32) * 7) % 13
    hist = torch.zeros(13, dtype=torch.int32)
    fsum, dsum = torch.zeros(1), torch.zeros(1, dtype=torch.float64)
    hsum = torch.zeros(1, dtype=torch.float16)
    imax, claimed, last = torch.full((1,), -1, dtype=torch.int32), torch.full((13,), -1, dtype=torch.int32), torch.zeros(1, dtype=torch.int32)
    lib.call("coc_atomics", P(keys), n, P(hist), P(fsum), P(dsum), P(hsum), P(imax), P(claimed), P(last))
    assert torch.equal(hist, torch.bincount(keys, minlength=13).int())
    assert fsum.item() == 250.0 and dsum.item() == 125.0
    assert hsum.item() == 500.0  # integers up to 2048 are exact in half
    assert imax.item() == 12 and last.item() == 7
    assert all(keys[claimed[k]].item() == k for k in range(13))


@pytest.mark.parametrize("dtype,code", [(torch.float16, 0), (torch.bfloat16, 1)])
def test_half_bfloat16_conversions_match_torch(lib, dtype, code):
    x = torch.cat([torch.randn(20000) * 10.0 ** torch.randint(-8, 6, (20000,)).float(),
                   torch.tensor([0.0, -0.0, 65504.0, 65520.0, 1e-8, 3.0e38, float("inf"), -float("inf")])])
    out = torch.empty_like(x)
    lib.coc_round(code, P(x), P(out), x.numel())
    assert torch.equal(out, x.to(dtype).float())  # round to nearest even, as the GPU converts


def tf32_round(x):
    """Round to nearest, ties away from zero, keeping 10 mantissa bits (cvt.rna.tf32.f32)."""
    b = x.view(torch.int32)
    finite = (b & 0x7F800000) != 0x7F800000
    r = torch.where(finite, (b + 0x1000) & ~0x1FFF, b)
    return r.view(torch.float32)


def test_tf32_rounding(lib):
    x = torch.randn(20000) * 1e3
    x = torch.cat([x, torch.tensor([1.0 + 2**-11, 1.0 + 3 * 2**-11, -(1.0 + 2**-11), float("inf")])])
    out = torch.empty_like(x)
    lib.coc_round(2, P(x), P(out), x.numel())
    assert torch.equal(out, tf32_round(x))
    assert out[-4].item() == 1.0 + 2**-10 and out[-2].item() == -(1.0 + 2**-10)  # ties away


@pytest.mark.parametrize("dtype,code", [(torch.float16, 0), (torch.bfloat16, 1), (torch.float32, 2)])
@pytest.mark.parametrize("M,N,K", [(16, 16, 16), (32, 64, 48)])
def test_wmma_gemm(lib, dtype, code, M, N, K):
    g = torch.Generator().manual_seed(M + N + K + code)
    A = torch.randn(M, K, generator=g).to(dtype)
    B = torch.randn(K, N, generator=g).to(dtype)

    def run():
        C = torch.full((M, N), float("nan"))
        lib.call("coc_wmma_gemm", code, P(A), P(B), P(C), M, N, K)
        return (C,)

    (C,) = run_orders(lib, run)
    a, b = (A.double(), B.double()) if code < 2 else (tf32_round(A).double(), tf32_round(B).double())
    ref = (a @ b).float()  # inputs as the tensor cores see them, exact products, one rounding
    torch.testing.assert_close(C, ref, rtol=1e-6, atol=1e-6)
    # small integers: exact
    Ai, Bi = torch.randint(-4, 5, (M, K), generator=g).to(dtype), torch.randint(-4, 5, (K, N), generator=g).to(dtype)
    A.copy_(Ai)
    B.copy_(Bi)
    (C,) = run_orders(lib, run)
    assert torch.equal(C, Ai.float() @ Bi.float())


def test_wmma_layouts_and_accumulator_load(lib):
    M, N, K = 32, 48, 32
    g = torch.Generator().manual_seed(3)
    A = torch.randint(-4, 5, (M, K), generator=g).half()
    Bt = torch.randint(-4, 5, (N, K), generator=g).half()
    C0 = torch.randint(-9, 10, (M, N), generator=g).float()

    def run():
        Dt = torch.full((N, M), float("nan"))
        lib.call("coc_wmma_layouts", P(A), P(Bt), P(C0), P(Dt), M, N, K)
        return (Dt,)

    (Dt,) = run_orders(lib, run)
    assert torch.equal(Dt, (2 * (A.float() @ Bt.float().t() + C0)).t())


@pytest.mark.parametrize("offset_a,ld_extra", [(1, 0), (0, 1)])
def test_wmma_misaligned_matrix_is_reported(lib, offset_a, ld_extra):
    M = N = K = 16
    storage = torch.zeros(M * (K + ld_extra) + 16, dtype=torch.float16)
    A = storage[offset_a:]
    B = torch.zeros(K, N, dtype=torch.float16)
    C = torch.zeros(M, N)
    # a leading dimension K + 1 (34 bytes) is not a multiple of 16 bytes: pass K = 17 with M = N = 16
    with pytest.raises(coc.KernelError, match=r"wmma::load_matrix_sync at .*kernels\.cuh:\d+: "
                       + (r"the pointer is not 256-bit \(32-byte\) aligned" if offset_a else r"ldm 17 is not a multiple of 16 bytes")):
        if ld_extra:
            lib.call("coc_wmma_gemm", 0, P(A), P(B), P(C), M, N, K + ld_extra)
        else:
            lib.call("coc_wmma_gemm", 0, P(A), P(B), P(C), M, N, K)


def conv_sizes(x, w, stride, padding, dilation, groups):
    return (ctypes.c_longlong * 14)(*x.shape, w.shape[0], w.shape[2], w.shape[3], *stride, *padding, *dilation, groups)


def conv_through_harness(lib, x, w, b, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    ref = F.conv2d(x, w, b, stride, padding, dilation, groups)
    y = torch.full_like(ref, float("nan"))
    lib.call("coc_conv2d_direct", P(x), P(w), P(b) if b is not None else None, P(y),
             conv_sizes(x, w, stride, padding, dilation, groups))
    return y, ref


@pytest.mark.parametrize("case", [
    dict(x=(2, 3, 9, 11), w=(4, 3, 3, 3)),
    dict(x=(1, 4, 8, 8), w=(6, 2, 3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2),
    dict(x=(3, 2, 5, 5), w=(2, 2, 1, 1), bias=False),
])
def test_conv2d_direct(lib, case):
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(*case["x"], generator=g), torch.randn(*case["w"], generator=g)
    b = torch.randn(case["w"][0], generator=g) if case.get("bias", True) else None
    kw = {k: case[k] for k in ("stride", "padding", "dilation", "groups") if k in case}
    (y,) = run_orders(lib, lambda: (conv_through_harness(lib, x, w, b, **kw)[0],))
    torch.testing.assert_close(y, F.conv2d(x, w, b, **kw), rtol=1e-5, atol=1e-5)


def test_lenet_conv_batch8_under_5s(lib):
    g = torch.Generator().manual_seed(0)
    x1, w1, b1 = torch.randn(8, 1, 28, 28, generator=g), torch.randn(6, 1, 5, 5, generator=g), torch.randn(6, generator=g)
    x2, w2, b2 = torch.randn(8, 6, 14, 14, generator=g), torch.randn(16, 6, 5, 5, generator=g), torch.randn(16, generator=g)
    ref1, ref2 = F.conv2d(x1, w1, b1), F.conv2d(x2, w2, b2)
    y1, y2 = torch.full_like(ref1, float("nan")), torch.full_like(ref2, float("nan"))
    lib.set_order("shuffled", 3)
    start = time.perf_counter()
    lib.call("coc_conv2d_direct", P(x1), P(w1), P(b1), P(y1), conv_sizes(x1, w1, (1, 1), (0, 0), (1, 1), 1))
    lib.call("coc_conv2d_direct", P(x2), P(w2), P(b2), P(y2), conv_sizes(x2, w2, (1, 1), (0, 0), (1, 1), 1))
    elapsed = time.perf_counter() - start
    lib.set_order("forward")
    torch.testing.assert_close(y1, ref1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y2, ref2, rtol=1e-5, atol=1e-5)
    assert elapsed < 5.0, f"LeNet conv2d forward (batch 8) took {elapsed:.2f} s through the harness"


# ---- planted bugs -----------------------------------------------------------------------------

def planted(lib, name, n, threads):
    x = torch.arange(max(n, threads), dtype=torch.float32)
    y = torch.zeros(max(n, threads))
    lib.call("coc_planted", name.encode(), P(x), P(y), n, threads)
    return y


def test_in_every_order_names_the_race(lib):
    def run():
        return (planted(lib, "missing_barrier", 512, 256),)

    with pytest.raises(AssertionError, match=r"differs bit-wise .*missing __syncthreads"):
        coc.in_every_order(lib, run)


def test_missing_barrier_shows_as_order_dependence(lib):
    outs = {}
    for order, seed in ORDERS:
        lib.set_order(order, seed)
        outs[(order, seed)] = planted(lib, "missing_barrier", 512, 256)
    lib.set_order("forward")
    ref = torch.arange(512, dtype=torch.float32).view(2, 256).flip(1).reshape(-1)
    distinct = {tuple(o.tolist()) for o in outs.values()}
    assert len(distinct) > 1, "a missing __syncthreads went unnoticed under every order"
    assert any(not torch.equal(o, ref) for o in outs.values())


def test_inter_block_dependence_shows_as_order_dependence(lib):
    def run():
        return (planted(lib, "inter_block_race", 640, 64),)

    with pytest.raises(AssertionError, match=r"differs bit-wise"):
        coc.in_every_order(lib, run)


PLANTED_ERRORS = {
    "divergent_barrier": (0, 64, r"threads wait at different __syncthreads: .*planted_bugs\.cuh:\d+ \(block \(0,0,0\) thread \(\d+,0,0\).*planted_bugs\.cuh:\d+"),
    "exit_before_barrier": (40, 64, r"a thread exited while others wait at __syncthreads at .*planted_bugs\.cuh:\d+: exited block \(0,0,0\) thread \((4\d|5\d|6[0-3]),0,0\)"),
    # Depending on which lanes arrive first: a lane outside the mask calls it, or a lane of the
    # completed half-warp reads a lane outside the mask.
    "wrong_mask_shuffle": (128, 64, r"__shfl_down_sync at .*planted_bugs\.cuh:\d+:? (with )?mask 0x0000ffff"
                           r"(: lane \d+ reads lane (1[6-9]|2\d|3[01]), which is not a live lane named in the mask"
                           r"| does not name the calling lane (1[6-9]|2\d|3[01])).*block \(\d,0,0\) thread"),
    "missing_lane_shuffle": (32, 32, r"__shfl_down_sync at .*planted_bugs\.cuh:\d+ with mask 0xffffffff: lane 31 \(thread \(31,0,0\)\) named in the mask never arrives \(it has exited\)"),
    "shared_oob_write": (100, 64, r"out-of-bounds write past the end of dynamic shared memory \(256 bytes\) in block \(\d,0,0\)"),
}


@pytest.mark.parametrize("order,seed", ORDERS, ids=ORDER_IDS)
@pytest.mark.parametrize("name", sorted(PLANTED_ERRORS))
def test_planted_bug_is_caught(lib, name, order, seed):
    n, threads, pattern = PLANTED_ERRORS[name]
    lib.set_order(order, seed)
    try:
        with pytest.raises(coc.KernelError) as info:
            planted(lib, name, n, threads)
    finally:
        lib.set_order("forward")
    msg = str(info.value)
    assert msg.startswith(f"cuda_on_cpu: kernel {name}_kernel (launched at "), msg
    assert re.search(pattern, msg), msg


def scheduler_case(lib, name, threads):
    out = torch.full((threads,), -1, dtype=torch.int32)
    lib.call("coc_scheduler_case", name.encode(), P(out), threads)
    return out


def test_syncwarp_at_different_call_sites_completes(lib):
    out = run_orders(lib, lambda: (scheduler_case(lib, "syncwarp_sites", 32),))[0]
    lanes = torch.arange(32, dtype=torch.int32).flip(0)
    assert torch.equal(out, torch.where(lanes < 16, lanes * 2, lanes * 3))


def test_partial_last_warp(lib):
    out = run_orders(lib, lambda: (scheduler_case(lib, "partial_warp", 48),))[0]
    assert torch.equal(out, torch.tensor([sum(range(32))] * 32 + [sum(range(32, 48))] * 16, dtype=torch.int32))


@pytest.mark.parametrize("order,seed", ORDERS, ids=ORDER_IDS)
def test_static_shared_memory_is_fresh_garbage_in_every_block(lib, order, seed):
    lib.set_order(order, seed)
    try:
        out = torch.zeros(64)
        lib.call("coc_scheduler_case", b"stale_static_shared", P(out), 32)
    finally:
        lib.set_order("forward")
    blocks = out.view(2, 32)
    assert torch.equal(blocks[0], torch.ones(32))  # block 0 wrote its array
    assert torch.isnan(blocks[1]).all(), blocks[1]  # block 1 reads garbage, not block 0's data


SCHEDULER_ERRORS = {
    "partial_warp_full_mask": (48, r"__shfl_xor_sync at .*scheduler_cases\.cuh:\d+ with mask 0xffffffff: lane \d+ reads lane (1[6-9]|2\d|3[01]), which is not a live lane"),
    "warp_vs_barrier": (32, r"__shfl_sync at .*scheduler_cases\.cuh:\d+ with mask 0xffffffff: lane 0 \(thread \(0,0,0\)\) named in the mask never arrives \(it waits at __syncthreads at .*scheduler_cases\.cuh:\d+\)"),
    "different_collectives": (32, r"lanes named in mask 0xffffffff meet at different warp collectives: __(ballot|any)_sync at .*scheduler_cases\.cuh:\d+ and __(ballot|any)_sync at"),
    "trap": (32, r"__trap\(\) at .*scheduler_cases\.cuh:\d+, block \(0,0,0\) thread \(5,0,0\)"),
    "mask_mismatch": (32, r"__shfl_sync at .*scheduler_cases\.cuh:\d+ with mask 0xffffffff: lane \d+ \(thread \(\d+,0,0\)\) named in the mask never arrives \(it (has exited|waits at __shfl_sync at .* with mask 0x0000ffff)\)"),
}


@pytest.mark.parametrize("order,seed", ORDERS, ids=ORDER_IDS)
@pytest.mark.parametrize("name", sorted(SCHEDULER_ERRORS))
def test_warp_collective_misuse_is_reported(lib, name, order, seed):
    threads, pattern = SCHEDULER_ERRORS[name]
    lib.set_order(order, seed)
    try:
        with pytest.raises(coc.KernelError) as info:
            scheduler_case(lib, name, threads)
    finally:
        lib.set_order("forward")
    assert re.search(pattern, str(info.value)), str(info.value)


@pytest.mark.parametrize("threads", [2048, 1056])
def test_invalid_launch_configuration_is_refused(lib, threads):
    x, s = torch.zeros(64), torch.zeros(64)
    with pytest.raises(coc.KernelError, match=r"cuda_on_cpu: kernel warp_sum_kernel \(launched at .*kernels\.cuh:\d+\): invalid block"):
        lib.call("coc_warp_sum", P(x), P(s), 64, threads)


def test_harness_recovers_after_an_aborted_launch(lib):
    with pytest.raises(coc.KernelError):
        planted(lib, "missing_lane_shuffle", 32, 32)
    test_tiled_matmul(lib, 37, 29, 45)


# ---- builds both ways, AddressSanitizer -------------------------------------------------------

@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found")
def test_same_kernel_source_compiles_under_nvcc(tmp_path):
    proc = subprocess.run(["nvcc", "-std=c++17", "-c", "-arch=sm_80", "-Xptxas", "-v", "-Werror", "all-warnings",
                           str(HERE / "nvcc_check.cu"), "-o", str(tmp_path / "check.o")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    entries = re.findall(r"Compiling entry function '(\w+)'", proc.stderr)
    assert len(entries) == 27, entries
    assert any("wmma_gemm_kernel" in e for e in entries)


@pytest.fixture(scope="session")
def asan_driver(builds):
    return builds["asan"].result()


def run_driver(path, case):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    env.pop("LD_PRELOAD", None)
    return subprocess.run([str(path), case], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.asan
def test_asan_correct_kernels_run_clean(asan_driver):
    proc = run_driver(asan_driver, "correct")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ERROR: AddressSanitizer" not in proc.stderr
    assert proc.stdout.count("ok ") == 3 * 8 and "MISMATCH" not in proc.stdout


@pytest.mark.asan
@pytest.mark.parametrize("case,kind,access,kernel", [
    ("global_oob_read", "heap-buffer-overflow", "READ", "global_oob_read_kernel"),
    ("shared_oob_write", "heap-buffer-overflow", "WRITE", "shared_oob_write_kernel"),
    ("static_shared_oob_write", "global-buffer-overflow", "WRITE", "static_shared_oob_kernel"),
    ("static_shared_oob_template_write", "global-buffer-overflow", "WRITE", "static_shared_oob_template_kernel<16>"),
])
def test_asan_catches_out_of_bounds(asan_driver, case, kind, access, kernel):
    proc = run_driver(asan_driver, case)
    assert proc.returncode != 0 and "ran without a report" not in proc.stdout
    assert f"ERROR: AddressSanitizer: {kind}" in proc.stderr, proc.stderr
    assert f"{access} of size 4" in proc.stderr
    assert re.search(rf"cuda_on_cpu: kernel {re.escape(kernel)} \(launched at .*\): the access above was made by "
                     rf"block \(\d+,0,0\) thread \(\d+,0,0\)", proc.stderr), proc.stderr


@pytest.mark.asan
def test_asan_build_catches_misaligned_vector_access(asan_driver):
    proc = run_driver(asan_driver, "misaligned_float4")
    assert proc.returncode != 0 and "ran without a report" not in proc.stdout
    assert re.search(r"(load of|reference binding to) misaligned address 0x[0-9a-f]+ for type 'const (struct )?float4', "
                     r"which requires 16 byte alignment", proc.stderr), proc.stderr
    assert "vector_copy_kernel" in proc.stderr  # the kernel's frame in the stack trace


@pytest.mark.asan
def test_fiber_stack_overflow_hits_the_guard_page(asan_driver):
    proc = run_driver(asan_driver, "stack_overflow")
    assert proc.returncode != 0
    assert "stack-overflow" in proc.stderr and "stack_overflow_kernel" in proc.stderr


@pytest.fixture(scope="session")
def plain_driver(builds):
    return builds["plain"].result()


def test_fiber_stack_overflow_is_named_without_asan(plain_driver):
    proc = run_driver(plain_driver, "stack_overflow")
    assert proc.returncode != 0
    assert re.search(r"cuda_on_cpu: kernel stack_overflow_kernel \(launched at .*\): stack overflow of "
                     r"block \(0,0,0\) thread \(\d+,0,0\): its \d+-byte fiber stack hit the guard page", proc.stderr), proc.stderr


def test_project_kernel_library_builds():
    lib = coc.load_kernels()
    lib.set_order("shuffled", 5)
    lib.set_order("forward")
    assert lib.last_error() == ""
