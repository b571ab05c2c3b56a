"""The harness's emulation of the sm_80 primitives (csrc/cuda_on_cpu/sm80.h) behind
csrc/cuda/common/mma.cuh, cp_async.cuh, swizzle.cuh and fast_divmod.cuh, tested on itself.

mma.sync against a float64 matrix product with fragments laid out by hand from the PTX ISA's
tables; ldmatrix against its definition; bank conflicts against counts done by hand; cp.async
pipelines right and wrong; misuses a GPU would fault on. The kernels (tests/cuda_on_cpu/sm80_*.cuh)
also go through nvcc unchanged.
"""
import importlib.util
import re
import subprocess
from pathlib import Path

import pytest
import torch

from harness import coc, needs_harness as pytestmark  # noqa: F401  (pytestmark: every test needs the harness)

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "tests" / "cuda_on_cpu"
P = coc.ptr
DTYPES = [(torch.float16, 0), (torch.bfloat16, 1), (torch.float32, 2)]


@pytest.fixture(scope="module")
def lib():
    return coc.load([HERE / "sm80_entry_points.cpp"], name="harness_sm80_tests", werror=True)


def tf32(x):
    """What the TF32 tensor cores multiply: round to nearest, ties away (to_tf32), low 13 bits off."""
    b = x.view(torch.int32)
    finite = (b & 0x7F800000) != 0x7F800000
    return torch.where(finite, (b + 0x1000) & ~0x1FFF, b).view(torch.float32)


# ---- mma.sync ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,code", DTYPES, ids=["f16", "bf16", "tf32"])
def test_mma_fragments_match_a_float64_product(lib, dtype, code):
    k = 8 if code == 2 else 16
    g = torch.Generator().manual_seed(code)
    for integers in (True, False):
        if integers:  # small integers: every product and sum exact, so the layout alone decides
            A = torch.randint(-8, 9, (16, k), generator=g).to(dtype)
            B = torch.randint(-8, 9, (k, 8), generator=g).to(dtype)
            C = torch.randint(-50, 51, (16, 8), generator=g).float()
        else:
            A, B = torch.randn(16, k, generator=g).to(dtype), torch.randn(k, 8, generator=g).to(dtype)
            C = torch.randn(16, 8, generator=g)
        a, b = (A, B) if code < 2 else (tf32(A), tf32(B))
        A_bits = A.view(torch.int16) if code < 2 else A
        B_bits = B.view(torch.int16) if code < 2 else B

        def run():
            D = torch.full((16, 8), float("nan"))
            lib.call("coc_mma_fragment", code, P(A_bits), P(B_bits), P(C), P(D))
            return (D,)

        (D,) = coc.in_every_order(lib, run)
        ref = (a.double() @ b.double() + C.double()).float()  # exact products and sum, one rounding
        if integers:
            assert torch.equal(D, ref)
        else:
            # The emulation rounds once; a GPU's adder tree rounds along the way, so results there
            # differ in the last bits (the engine's tests bound that).
            torch.testing.assert_close(D, ref, rtol=2**-23, atol=0)


# ---- ldmatrix ---------------------------------------------------------------------------------

def ldmatrix_reference(values, rows, n, trans):
    """Register j of lane l: matrix j (rows given by lanes 8j..8j+7), elements (l/4, 2(l%4)) and
    (l/4, 2(l%4)+1), or their transposes, packed low half first."""
    v = values.view(32, 8).to(torch.int64) & 0xFFFF
    out = torch.zeros(32, n, dtype=torch.int64)
    for l in range(32):
        for j in range(n):
            m = v[rows[8 * j:8 * j + 8]]
            a, c = l // 4, 2 * (l % 4)
            lo, hi = (m[c, a], m[c + 1, a]) if trans else (m[a, c], m[a, c + 1])
            out[l, j] = lo | hi << 16
    return out


@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("trans", [False, True])
def test_ldmatrix_matches_its_definition(lib, n, trans):
    g = torch.Generator().manual_seed(10 * n + trans)
    values = torch.randint(-(2**15), 2**15, (256,), dtype=torch.int32, generator=g).to(torch.int16)
    rows = torch.randperm(32, generator=g).int()  # the addresses come from the lanes, any order

    def run():
        out = torch.zeros(32 * n, dtype=torch.int32)
        lib.call("coc_ldmatrix", n, int(trans), P(values), P(rows), P(out))
        return (out,)

    (out,) = coc.in_every_order(lib, run)
    got = out.view(32, n).to(torch.int64) & 0xFFFFFFFF
    assert torch.equal(got, ldmatrix_reference(values, rows.tolist(), n, trans))


def test_ldmatrix_and_mma_through_shared_memory(lib):
    """A row-major by ldmatrix, B stored k-major by ldmatrix.trans: the product is A @ B. Loaded
    without .trans (the planted bug), B arrives transposed and the product is wrong."""
    g = torch.Generator().manual_seed(5)
    A = torch.randint(-4, 5, (16, 16), generator=g).half()
    B = torch.randint(-4, 5, (16, 8), generator=g).half()
    ref = A.float() @ B.float()
    outs = {}
    for trans in (1, 0):
        D = torch.full((16, 8), float("nan"))
        lib.call("coc_mma_gemm", trans, P(A), P(B), P(D))
        outs[trans] = D
    assert torch.equal(outs[1], ref)
    assert not torch.equal(outs[0], ref), "a B operand loaded without .trans went unnoticed"


# ---- bank conflicts of a swizzle ---------------------------------------------------------------

# A 16 x 64-byte tile read as an engine's A operand, two ldmatrix.x4 of 4 phases each (8 rows of
# 16 bytes at one chunk column). Unswizzled, rows 64 bytes apart put rows r and r+2 on the same
# 4 banks: 4 rows per bank group, 3 extra wavefronts per phase, 12 per ldmatrix, 24 in all.
# RowSwizzle<64> XORs the chunk with (row / 2) % 4: 8 rows on 8 bank groups, 0. A swizzle of one
# bit (row / 2) % 2 leaves pairs: 1 extra per phase, 8 in all. The 16-byte stores, 8 lanes per
# phase on two whole rows (128 contiguous bytes, permuted within rows), never conflict.
SWIZZLE_CONFLICTS = {0: 24, 1: 0, 2: 8}


def test_swizzle_is_conflict_free_and_the_count_is_the_hand_count(lib):
    g = torch.Generator().manual_seed(1)
    tile = torch.randint(-(2**15), 2**15, (16, 32), dtype=torch.int32, generator=g).to(torch.int16)
    ref = torch.zeros(32, 8, dtype=torch.int64)
    for step in range(2):
        rows = [(j % 2) * 8 + rr for j in range(4) for rr in range(8)]
        for j in range(4):
            block = tile[:, (2 * step + j // 2) * 8:(2 * step + j // 2 + 1) * 8].contiguous()
            m = block[rows[8 * j:8 * j + 8]].to(torch.int64) & 0xFFFF
            for l in range(32):
                a, c = l // 4, 2 * (l % 4)
                ref[l, step * 4 + j] = m[a, c] | m[a, c + 1] << 16
    for layout, conflicts in SWIZZLE_CONFLICTS.items():
        out = torch.zeros(32 * 8, dtype=torch.int32)
        lib.reset_bank_counts()
        lib.call("coc_swizzle", layout, P(tile), P(out))
        assert torch.equal(out.view(32, 8).to(torch.int64) & 0xFFFFFFFF, ref), f"layout {layout} read back wrong"
        assert lib.bank_counts("ldmatrix") == (2, conflicts), f"layout {layout}"
        assert lib.bank_counts("sts") == (2, 0), f"layout {layout}"


# ---- cp.async ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1000, 130, 3])
@pytest.mark.parametrize("variant", [0, 1], ids=["3stages", "4stages"])
def test_cp_async_pipeline(lib, n, variant):
    x = torch.randn(n)
    chunks = -(-n // 4)

    def run():
        out = torch.full((chunks * 4,), -7.0)
        lib.call("coc_cp_async_pipeline", variant, P(x), P(out), n)
        return (out,)

    (out,) = coc.in_every_order(lib, run)
    ref = torch.zeros(chunks * 4)
    ref[:n] = x  # the last chunk zero-filled past n (src-size)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("variant", [2, 3], ids=["wait_n_too_large", "missing_wait"])
def test_cp_async_read_before_its_wait_sees_the_poison(lib, variant):
    n = 1000
    x = torch.randn(n)
    out = torch.full((n,), -7.0)
    lib.call("coc_cp_async_pipeline", variant, P(x), P(out), n)
    assert not torch.equal(out, x)
    assert (out.view(torch.int32) == -1).any(), "a read ahead of its copy should see 0xFF bytes"


# ---- misuses ----------------------------------------------------------------------------------

SM80_PLANTED = {
    0: r"ldmatrix at .*sm80_planted_bugs\.cuh:\d+: address \d+ is not 16-byte aligned, block \(0,0,0\) thread",
    1: r"ldmatrix at .*sm80_planted_bugs\.cuh:\d+: address is not in shared memory, block \(0,0,0\) thread",
    2: r"mma\.sync / ldmatrix / lds / sts \(warp-wide\) at .*sm80_planted_bugs\.cuh:\d+ with mask 0xffffffff: "
       r"lane 31 \(thread \(31,0,0\)\) named in the mask never arrives \(it has exited\)",
    3: r"cp\.async\.cg at .*sm80_planted_bugs\.cuh:\d+: source address is not 16-byte aligned",
    4: r"cp\.async\.cg at .*sm80_planted_bugs\.cuh:\d+: address is not in shared memory",
}


@pytest.mark.parametrize("which", sorted(SM80_PLANTED),
                         ids=["misaligned_ldmatrix", "ldmatrix_from_global", "lane_skips_mma",
                              "misaligned_cp_async", "cp_async_to_global"])
@pytest.mark.parametrize("order,seed", [("forward", 0), ("reversed", 0), ("shuffled", 1)])
def test_sm80_misuse_is_caught(lib, which, order, seed):
    x = torch.zeros(256)
    y = torch.zeros(256)
    lib.set_order(order, seed)
    try:
        with pytest.raises(coc.KernelError) as info:
            lib.call("coc_sm80_planted", which, P(x), P(y))
    finally:
        lib.set_order("forward")
    assert re.search(SM80_PLANTED[which], str(info.value)), str(info.value)


# ---- fast divmod --------------------------------------------------------------------------------

def test_fast_divmod_is_exact(lib):
    g = torch.Generator().manual_seed(0)
    top = 2**31 - 1
    n = torch.cat([torch.arange(0, 70000, dtype=torch.int64), torch.arange(top - 70000, top + 1, dtype=torch.int64),
                   torch.randint(0, top, (200000,), generator=g, dtype=torch.int64)]).int()
    divisors = list(range(1, 300)) + [2**k + e for k in range(9, 31) for e in (-1, 0, 1)] + \
        [top, 3**19, 7**11, 65535, 1000003, 224 * 224, 56 * 56 * 64, 2**31 - 2]
    q, r = torch.empty_like(n), torch.empty_like(n)
    for d in divisors:
        lib.coc_fast_divmod(d, P(n), n.numel(), P(q), P(r))
        ref_q = torch.div(n.long(), d, rounding_mode="floor")
        assert torch.equal(q.long(), ref_q), f"divisor {d}"
        assert torch.equal(r.long(), n.long() - ref_q * d), f"divisor {d}"


# ---- nvcc -----------------------------------------------------------------------------------------

def test_sm80_kernels_compile_under_nvcc_to_tensor_core_code(tmp_path):
    obj = tmp_path / "sm80.o"
    proc = subprocess.run(["nvcc", "-std=c++17", "-c", "-arch=sm_80", "-Xptxas", "-v", "-Werror", "all-warnings",
                           str(HERE / "sm80_nvcc_check.cu"), "-o", str(obj)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    entries = re.findall(r"Compiling entry function '(\w+)'", proc.stderr)
    assert len(entries) == 10, entries
    spec = importlib.util.spec_from_file_location("cnnfast_kernel_report", ROOT / "cnnfast" / "_kernel_report.py")
    kr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kr)
    if kr.find_cuobjdump() is None:
        pytest.skip("cuobjdump/nvdisasm not installed (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    counts = kr.sass_counts(str(obj))
    ops = lambda name: {op.split(".")[0] for kernel, c in counts.items() if name in kernel for op in c}  # noqa: E731
    assert {"HMMA", "LDSM"} <= ops("mma_gemm_kernel")
    assert "HMMA" in ops("mma_fragment_kernel") and "LDSM" in ops("ldmatrix_kernel")
    assert {"LDGSTS", "LDGDEPBAR", "DEPBAR"} <= ops("cp_async_pipeline_kernel")
