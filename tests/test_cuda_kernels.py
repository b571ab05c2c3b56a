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
