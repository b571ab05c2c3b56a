"""Timing: interleaved A/B measurement with a warm-up, summary statistics, and the peak rates of the
machine measured in the same run (on the CPU cnnfast's FMA-throughput probe for FLOP/s, with a large
matrix product kept as a reference line; on a GPU the matrix product; a large copy for bytes/s)."""
import os
import statistics
import time

import torch


class Timer:
    """Times one call of a function on ``device``: wall clock on the CPU, CUDA events on a GPU."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"

    def __call__(self, fn, inner=1):
        """Seconds per call, over ``inner`` back-to-back calls."""
        if self.cuda:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3 / inner
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        return (time.perf_counter() - t0) / inner


def interleaved(fn_a, fn_b, device, repeat, warmup=1, min_sample_s=1e-2):
    """Time ``fn_a`` and ``fn_b`` interleaved (A B A B ...), after ``warmup`` calls of each, ``repeat``
    samples each. A call shorter than ``min_sample_s`` is repeated inside each sample (the same
    count on both sides) so a sample is not dominated by the clock's resolution.
    Returns (samples_a, samples_b, inner) with samples in seconds per call."""
    timer = Timer(device)
    first_a = first_b = None
    for _ in range(max(1, warmup)):
        first_a = timer(fn_a)
        first_b = timer(fn_b)
    shortest = max(min(first_a, first_b), 1e-7)
    inner = max(1, min(1000, int(min_sample_s / shortest)))
    samples_a, samples_b = [], []
    for _ in range(repeat):
        samples_a.append(timer(fn_a, inner))
        samples_b.append(timer(fn_b, inner))
    return samples_a, samples_b, inner


def block(fn, device, repeat, warmup=1, min_sample_s=1e-2):
    """Time ``fn`` alone: ``warmup`` calls, then ``repeat`` samples back to back, with the same rule for
    repeating a short call inside a sample as :func:`interleaved`. For a runtime with its own thread
    pool (a rival), so that all its samples run together and no other pool shares the cores then.
    Returns (samples, inner) with samples in seconds per call."""
    timer = Timer(device)
    first = None
    for _ in range(max(1, warmup)):
        first = timer(fn)
    inner = max(1, min(1000, int(min_sample_s / max(first, 1e-7))))
    return [timer(fn, inner) for _ in range(repeat)], inner


def summary(samples):
    """Median with the spread: quartiles, min, max (seconds) and the IQR relative to the median."""
    s = sorted(samples)
    med = statistics.median(s)
    if len(s) >= 4:
        q = statistics.quantiles(s, n=4)
        q1, q3 = q[0], q[2]
    else:
        q1, q3 = s[0], s[-1]
    return {
        "median_s": med,
        "q1_s": q1,
        "q3_s": q3,
        "min_s": s[0],
        "max_s": s[-1],
        "spread": (q3 - q1) / med if med > 0 else 0.0,
        "samples_s": list(samples),
    }


def _best_seconds(sample, seconds):
    """The shortest of repeated ``sample()`` results (seconds), sampled for ``seconds`` in all, at least once."""
    best, spent = float("inf"), 0.0
    while spent < seconds or best == float("inf"):
        t = sample()
        best, spent = min(best, t), spent + t
    return best


def _dtype_name(dtype):
    return str(dtype).replace("torch.", "")


def matmul_flops(device, dtypes, seconds=0.5):
    """FLOP/s per dtype name of the best of repeated n x n matrix products (torch.mm: the vendor GEMM)."""
    device = torch.device(device)
    timer = Timer(device)
    flops = {}
    for dtype in dtypes:
        n = 2048 if device.type == "cpu" else 8192
        try:
            a = torch.randn(n, n, device=device).to(dtype)
            b = torch.randn(n, n, device=device).to(dtype)
            timer(lambda: torch.mm(a, b))  # warm-up
            flops[_dtype_name(dtype)] = 2 * n ** 3 / _best_seconds(lambda: timer(lambda: torch.mm(a, b)), seconds)
        except RuntimeError:  # no matmul for this dtype on this device
            continue
        finally:
            a = b = None
    return flops


def copy_bytes(device, seconds=0.5):
    """Bytes/s of the best of repeated copies of a 256 MiB buffer, counted as bytes read plus bytes written."""
    timer = Timer(device)
    numel = (256 << 20) // 4
    src = torch.randn(numel, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    return 2 * src.numel() * src.element_size() / _best_seconds(lambda: timer(lambda: dst.copy_(src)), seconds)


FMA_DTYPES = ("float32", "float64")


def fma_peak(dtype, seconds=0.5, capability=None, iterations=1 << 20):
    """Peak FLOP/s of ``dtype`` (float32 or float64) by cnnfast's FMA-throughput probe
    (csrc/cpu/common/fma_peak.h) on the SIMD path ``capability`` (default: the one in use,
    ``cnnfast.backends.cpu.capability``) on torch's current threads: the best of repeated parallel
    regions of ``iterations`` steps, after three for warm-up. A step is 12 multiply-adds, about 6
    cycles on every path of a core with 2 FMA ports, so a region lasts a few milliseconds: short
    enough that on a shared machine some find every core free, which long ones seldom do.
    Returns {"flops": FLOP/s, "capability", "threads", "chains", "lanes"}."""
    import cnnfast  # noqa: PLC0415

    capability = capability or cnnfast.backends.cpu.capability
    for _ in range(3):
        n_flops, _, threads, chains, lanes, _ = cnnfast._C._cpu_fma_peak(capability, dtype, iterations)
    best = _best_seconds(lambda: cnnfast._C._cpu_fma_peak(capability, dtype, iterations)[1], seconds)
    return {"flops": n_flops / best, "capability": capability, "threads": threads, "chains": chains, "lanes": lanes}


def measure_peaks(device, dtypes, seconds=0.5):
    """The peak rates, measured now on ``device`` with the current thread count. ``flops`` (per dtype
    name) is what %peak and the roofline floors use: on the CPU cnnfast's FMA-throughput probe on the
    SIMD path in use (``fma`` holds :func:`fma_peak`'s record per dtype: path, threads, lanes), on a
    GPU the matrix product. ``matmul_flops`` is the matrix product (:func:`matmul_flops`) on either, a
    reference line: on the CPU it is the vendor GEMM's rate, whose code path depends on the CPU.
    ``bytes`` is the copy's bytes/s (:func:`copy_bytes`)."""
    device = torch.device(device)
    matmul = matmul_flops(device, dtypes, seconds)
    peaks = {"flops": matmul, "flops_probe": "matmul", "matmul_flops": matmul, "fma": None}
    if device.type == "cpu":
        fma = {name: fma_peak(name, seconds) for name in map(_dtype_name, dtypes) if name in FMA_DTYPES}
        peaks.update(flops={name: f["flops"] for name, f in fma.items()}, flops_probe="fma", fma=fma)
    peaks["bytes"] = copy_bytes(device, seconds)
    return peaks


def _thread_ticks():
    ticks = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks[tid] = int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            continue
    return ticks


def busy_threads(fn, seconds=0.4):
    """How many of this process's threads did real work while ``fn`` ran in a loop for ``seconds``
    (a thread counts when it got at least a quarter of the busiest thread's CPU time). Linux only;
    None elsewhere. Tells whether a side really uses the thread count it was given."""
    if not os.path.isdir("/proc/self/task"):
        return None
    fn()
    before = _thread_ticks()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
    after = _thread_ticks()
    used = [after[t] - before.get(t, 0) for t in after]
    top = max(used, default=0)
    if top <= 0:
        return None
    return sum(1 for u in used if u >= top / 4)
