"""The machine code of a CUDA build: the ptxas report (no spills, no stack frame, occupancy) and the
SASS of the built extension (no local memory, vector loads, tensor-core and FFMA counts); skipped in a
CPU-only build.

The kernels' results are tested per op, through the CUDA-on-CPU harness and on a real device, in
tests/test_<op>.py (helpers in tests/cuda_harness.py).
"""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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
    HMMA in every tensor-core kernel, the FFMA implicit GEMM's main loop fully unrolled (8 x 64 FFMA),
    the mma.sync engine's gates (kernel_report.sass_problems)."""
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
        # The mma.sync engine (sass_problems gates HMMA, LDSM, LDGSTS on the vector path, no
        # subroutine call, instructions per MMA): four vector tiles and the masked one, three types.
        engine = [name for name in counts if "conv2d_mma_fprop_kernel" in name]
        assert len(engine) == 15, len(engine)
    # The build's report has each kernel's main-loop math when cuobjdump was there at build time.
    report = kr.load()
    if report and all("loop_math" in r for r in report["kernels"]):
        for r in report["kernels"]:
            if r["kernel"] == "conv2d_gemm_kernel":
                assert r["loop_math"].get("FFMA", 0) >= 512, r["name"]  # 8 slices x 8 x 8 per thread
            if r["kernel"] == "conv2d_wmma_kernel":
                assert r["loop_math"].get("HMMA", 0) >= 16, r["name"]


def test_mma_engine_occupancy_and_report():
    """ptxas's registers and the tile's shared memory leave at least 8 warps per SM for every engine
    kernel on sm_80 and sm_90; the report carries each one's instructions per MMA."""
    kr = _kernel_report()
    report = kr.load()
    if report is None:
        pytest.skip("CPU-only build: no CUDA kernels, no ptxas report")
    engine = [r for r in report["kernels"] if r["kernel"] == "conv2d_mma_fprop_kernel"]
    assert {r["arch"] for r in engine} >= {"sm_80", "sm_90"}
    assert not kr.occupancy_problems(report), kr.occupancy_problems(report)
    for r in engine:
        assert r["dynamic_shared_bytes"] > 48 * 1024 and r["block_threads"] in (128, 256), r["name"]
        if "mma_ratio" in r:  # cuobjdump was there at build time
            assert 0 < r["mma_ratio"]["loop"] < r["mma_ratio"]["kernel"], r["name"]
    # The shared-memory figure from the template arguments: 128x128, 3 stages of 64-byte rows.
    assert kr.mma_tile_resources("k<__half, cnnfast::cuda::MmaTile<128, 128, 2, 4, 3, 64>, true>") == (
        256, 3 * 256 * 64 + 128 * 16)


def test_subroutine_calls_are_told_from_the_convergence_idiom():
    kr = _kernel_report()
    idiom = [(0x100, "CALL.REL.NOINC", "0x120"), (0x110, "BRA", "0x130"), (0x120, "EXIT", "")]
    assert kr.subroutine_calls(idiom) == []
    division = [(0x100, "CALL.REL.NOINC", "0x400"), (0x400, "IMAD", "R1, R2, R3, RZ"), (0x410, "RET.REL.NODEC", "R20 0x0")]
    assert len(kr.subroutine_calls(division)) == 2
    loop = [(0x0, "HMMA.16816.F32", ""), (0x10, "LDSM.16.M88.4", ""), (0x20, "HMMA.16816.F32", ""),
            (0x30, "BRA", "0x0"), (0x40, "STG.E", ""), (0x50, "EXIT", ""), (0x60, "NOP", "")]
    assert kr.mma_ratios(loop) == {"kernel": 3.0, "loop": 2.0, "hmma": 2, "loop_hmma": 2}


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
