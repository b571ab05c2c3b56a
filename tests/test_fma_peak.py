"""The bench's compute peak on the CPU: cnnfast's FMA-throughput probe (csrc/cpu/common/fma_peak.h) on
every SIMD path the CPU supports, its FLOP count by hand, and the peaks that %peak and the roofline
floors use. Speed is never asserted here (the machine is shared): only that a figure is positive and
finite, and that the arithmetic is what the probe says it did."""
import math

import pytest
import torch

import cnnfast
from cnnfast import _C
from cnnfast.bench import report, roofline, runner, suites, timing

ORDER = ["default", "avx2", "avx512"]
BEST = cnnfast.backends.cpu.supported_capability
PATHS = [pytest.param(c, marks=pytest.mark.skipif(ORDER.index(c) > ORDER.index(BEST), reason=f"CPU lacks {c}"))
         for c in ORDER]
# Lanes of one chain, by hand: a zmm, a ymm, or 16 bytes (the portable path's GNU vectors).
LANES = {("avx512", "float32"): 16, ("avx2", "float32"): 8, ("default", "float32"): 4,
         ("avx512", "float64"): 8, ("avx2", "float64"): 4, ("default", "float64"): 2}
CHAINS = 12


@pytest.fixture
def threads():
    """Restores torch's thread count after the test."""
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("path", PATHS)
def test_the_probe_gives_a_positive_finite_peak_on_the_path_in_use(path, dtype):
    with cnnfast.backends.cpu.flags(capability=path):
        probe = timing.fma_peak(dtype, seconds=0.01, iterations=1000)
    assert math.isfinite(probe["flops"]) and probe["flops"] > 0
    assert probe["capability"] == path
    assert probe["threads"] == torch.get_num_threads()
    assert (probe["chains"], probe["lanes"]) == (CHAINS, LANES[path, dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n_threads", [1, 3])
def test_the_flop_count_by_hand(path, dtype, n_threads, threads):
    torch.set_num_threads(n_threads)
    iterations = 1000
    flops, seconds, n, chains, lanes, checksum = _C._cpu_fma_peak(path, dtype, iterations)
    assert (n, chains, lanes) == (n_threads, CHAINS, LANES[path, dtype])
    assert flops == 2 * iterations * CHAINS * LANES[path, dtype] * n_threads
    # Every chain runs acc = acc * 1 + 1 from 0: each lane ends at `iterations` (exact), so the lanes
    # sum to one per multiply-add, half the FLOPs, when every counted multiply-add really ran.
    assert checksum == flops / 2
    assert seconds > 0 and math.isfinite(seconds)


def test_the_probe_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="capability must be avx512, avx2 or default, got 'sse'"):
        _C._cpu_fma_peak("sse", "float32", 10)
    with pytest.raises(ValueError, match="dtype must be float32 or float64, got 'float16'"):
        _C._cpu_fma_peak("default", "float16", 10)
    with pytest.raises(ValueError, match="iterations must be >= 1, got 0"):
        _C._cpu_fma_peak("default", "float32", 0)
    if BEST != "avx512":  # a path above the CPU's would be an illegal instruction
        with pytest.raises(ValueError, match=f"supports at most capability {BEST}, got 'avx512'"):
            _C._cpu_fma_peak("avx512", "float32", 10)


# --- the peaks the bench uses ----------------------------------------------------------------------------

FMA_F32, FMA_F64, MATMUL, COPY = 400e9, 200e9, 100e9, 20e9


@pytest.fixture
def fake_probes(monkeypatch):
    """Probes that measure nothing and give known figures."""
    def fma_peak(dtype, seconds):
        flops = {"float32": FMA_F32, "float64": FMA_F64}[dtype]
        return {"flops": flops, "capability": "avx2", "threads": 2, "chains": CHAINS, "lanes": LANES["avx2", dtype]}

    monkeypatch.setattr(timing, "fma_peak", fma_peak)
    monkeypatch.setattr(timing, "matmul_flops",
                        lambda device, dtypes, seconds: {timing._dtype_name(d): MATMUL for d in dtypes})
    monkeypatch.setattr(timing, "copy_bytes", lambda device, seconds: COPY)


def test_cpu_peaks_are_the_fma_probe_with_the_matrix_product_beside_them(fake_probes):
    peaks = timing.measure_peaks("cpu", [torch.float32, torch.float64])
    assert peaks["flops"] == {"float32": FMA_F32, "float64": FMA_F64}
    assert peaks["flops_probe"] == "fma"
    assert peaks["matmul_flops"] == {"float32": MATMUL, "float64": MATMUL}
    assert peaks["fma"]["float64"]["lanes"] == 4 and peaks["bytes"] == COPY
    line = report.peaks_line(peaks)
    assert line == ("measured peaks (this run): float32 FMA 400.0 GFLOP/s, float64 FMA 200.0 GFLOP/s (avx2, 2 threads), "
                    "used by %peak and the floors; matrix product (torch.mm) float32 100.0 GFLOP/s, "
                    "float64 100.0 GFLOP/s; copy 20.0 GB/s")


def test_gpu_peaks_stay_the_matrix_product(fake_probes):
    peaks = timing.measure_peaks("cuda", [torch.float32])
    assert peaks["flops"] == peaks["matmul_flops"] == {"float32": MATMUL}
    assert peaks["flops_probe"] == "matmul" and peaks["fma"] is None
    assert report.peaks_line(peaks) == "measured peaks (this run): float32 100.0 GFLOP/s (matrix product); copy 20.0 GB/s"


def test_percent_of_peak_and_the_floor_use_the_fma_figure(fake_probes):
    peaks = timing.measure_peaks("cpu", [torch.float32])
    case = suites.suite_cases("lenet", batch=2, ops=("conv2d",))[1]
    row = runner.run_case(case, "fwd", "float32", "nchw", "cpu", 1, 1, peaks, runner.cnnfast_impl(),
                          runner.reference_impl(), (torch.float32,))
    assert row["status"] == "ok", row
    assert row["floor_s"] == roofline.case_floor(case, "fwd", 4, FMA_F32, COPY)
    assert row["pct_peak"] == pytest.approx(100.0 * row["flops"] / row["cnnfast"]["median_s"] / FMA_F32)
