"""Print cnnfast's build configuration: versions, CUDA kernels and archs, the CPU settings in use."""
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
    from cnnfast.backends import cpu

    lines = [
        f"cnnfast {cnnfast.__version__} ({cnnfast.__file__.rsplit('/', 1)[0]})",
        f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'})",
        f"CUDA kernels: {'built for ' + build.cuda_archs if build.cuda else 'not built'} ({build.cuda_reason})",
        f"CUDA device present: {torch.cuda.is_available()}",
        f"CPU kernels: {', '.join(str(d).replace('torch.', '') for d in cpu.dtypes)}; "
        f"threads: {torch.get_num_threads()} (ATen parallel_for)",
        f"CPU capability (cnnfast's): {cpu.capability} of {cpu.supported_capability} supported "
        "(cnnfast.backends.cpu.capability, CNNFAST_CPU_CAPABILITY: avx512, avx2 or default)",
        f"CPU capability (torch's): {torch.backends.cpu.get_cpu_capability()}",
        "CPU output cache: " + _cache_line(cpu.output_cache_mb),
        f"CPU conv2d algorithms: Winograd F(2x2,3x3) {cpu.winograd} (winograd, CNNFAST_CPU_WINOGRAD), "
        f"sixteen images per vector {cpu.images_per_vector} (images_per_vector, CNNFAST_CPU_IMAGES_PER_VECTOR)",
    ]
    return lines


def _cache_line(mb):
    if mb == 0:
        return "off (cnnfast.backends.cpu.output_cache_mb = 0)"
    return f"up to {mb} MB of freed outputs kept for reuse (output_cache_mb, CNNFAST_CPU_OUTPUT_CACHE_MB)"


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
