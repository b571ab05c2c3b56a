"""Print cnnfast's build configuration: versions, CUDA kernels and archs, CPU features in use."""
import sys


def add_arguments(parser):
    parser.add_argument(
        "--kernels",
        action="store_true",
        help="also print the static report of each CUDA kernel (ptxas registers, shared memory, "
        "stack, spills; block size and theoretical occupancy on sm_80/sm_90)",
    )


def info_lines():
    import torch

    import cnnfast
    from cnnfast import _build_config as build

    lines = [
        f"cnnfast {cnnfast.__version__} ({cnnfast.__file__.rsplit('/', 1)[0]})",
        f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'})",
        f"CUDA kernels: {'built for ' + build.cuda_archs if build.cuda else 'not built'} ({build.cuda_reason})",
        f"CUDA device present: {torch.cuda.is_available()}",
        f"CPU kernels: float32, float64; threads: {torch.get_num_threads()} (ATen parallel_for)",
        f"CPU capability (cnnfast's): {_capability()} "
        "(avx512, avx2 or default; lower it with CNNFAST_CPU_CAPABILITY)",
        f"CPU capability (torch's): {torch.backends.cpu.get_cpu_capability()}",
        "CPU output cache: " + _cache_line(),
        "CPU conv2d algorithms: " + ", ".join(
            f"{name} {_algorithm_setting(var)} ({var})" for name, var in _CPU_ALGORITHMS),
    ]
    return lines


def _capability():
    import torch

    try:
        return torch.ops.cnnfast.cpu_capability()
    except ValueError as e:  # a bad CNNFAST_CPU_CAPABILITY: every op call raises this
        return f"invalid ({e})"


def _cache_line():
    import cnnfast

    try:
        s = cnnfast.cpu_cache_stats()
    except ValueError as e:  # a bad CNNFAST_CPU_CACHE_MB
        return f"invalid ({e})"
    if s["limit_bytes"] == 0:
        return "off (CNNFAST_CPU_CACHE_MB=0)"
    return f"up to {s['limit_bytes'] >> 20} MB of freed outputs kept for reuse (CNNFAST_CPU_CACHE_MB)"


# The CPU convolution's algorithm switches (csrc/cpu/conv2d_kernel.cpp), each read at every call:
# 0 never, 1 wherever it applies, unset or auto the measured rule.
_CPU_ALGORITHMS = (
    ("Winograd F(2x2,3x3)", "CNNFAST_CPU_WINOGRAD"),
    ("sixteen images per vector", "CNNFAST_CPU_BATCH16"),
)


def _algorithm_setting(var):
    import os

    value = os.environ.get(var, "auto") or "auto"
    return {"0": "off", "1": "forced", "auto": "auto"}.get(value, f"invalid value {value!r} (an op call raises)")


def run(args, out=None):
    out = out or sys.stdout
    for line in info_lines():
        print(line, file=out)
    if getattr(args, "kernels", False):
        from cnnfast import _build_config, _kernel_report

        report = _kernel_report.load() if _build_config.cuda else None  # a CPU rebuild leaves an old one
        if report is None:
            print("CUDA kernel report: none (a CPU-only build has no CUDA kernels)", file=out)
        else:
            print("CUDA kernels (static figures from ptxas; occupancy = active warps / max warps per SM):", file=out)
            for line in _kernel_report.table(report):
                print("  " + line, file=out)
            problems = _kernel_report.problems(report)
            print(f"spills or stack frames: {len(problems)}", file=out)
            for line in problems:
                print("  " + line, file=out)
    return 0
