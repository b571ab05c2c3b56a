"""``cnnfast bench --cpu-isa``: both sides of the CPU benchmark on one instruction set.

Lowering cnnfast's capability alone (``cnnfast.backends.cpu.capability``) would time cnnfast's AVX2
kernels against torch's AVX-512 ones on an AVX-512 CPU: a ratio no AVX2 CPU ever shows. Torch reads
its own switches (ATen's ``ATEN_CPU_CAPABILITY``, oneDNN's ``ONEDNN_MAX_CPU_ISA``, MKL's
``MKL_ENABLE_INSTRUCTIONS``) once, at the first kernel that needs them, so the bench sets them, with
cnnfast's ``CNNFAST_CPU_CAPABILITY`` (and a compile cache of inductor's own for each set), for a
fresh process of itself.
"""
import os
import sys
import tempfile

NAMES = ("avx512", "avx2", "default")

# name -> the environment that makes cnnfast, ATen, oneDNN and MKL use at most that instruction set.
ENVIRONMENT = {
    "avx512": {"CNNFAST_CPU_CAPABILITY": "avx512", "ATEN_CPU_CAPABILITY": "avx512",
               "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX", "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
    "avx2": {"CNNFAST_CPU_CAPABILITY": "avx2", "ATEN_CPU_CAPABILITY": "avx2",
             "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "default": {"CNNFAST_CPU_CAPABILITY": "default", "ATEN_CPU_CAPABILITY": "default",
                "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}
# Inductor's cache keeps kernels compiled for the CPU's own instruction set and, on torch 2.14.1, serves
# them to a process started with a lower ATEN_CPU_CAPABILITY: a compiled conv2d on an AVX-512 Xeon then
# returned values off by 1e19 (NaN with a ReLU), and fresh compiles were right. Each set gets a cache
# of its own.
for _name, _env in ENVIRONMENT.items():
    _env["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), f"torchinductor_cnnfast_bench_{_name}")
KEYS = tuple(ENVIRONMENT["avx2"])


def in_effect(name, environ=None):
    """Whether this process was started with ``name``'s environment."""
    environ = os.environ if environ is None else environ
    return all(environ.get(k) == v for k, v in ENVIRONMENT[name].items())


def check(name):
    """None when this CPU can run ``name``, else the error message."""
    import cnnfast  # noqa: PLC0415

    best = cnnfast.backends.cpu.supported_capability
    if NAMES.index(name) < NAMES.index(best):
        return f"--cpu-isa {name}: this CPU supports at most {best}"
    return None


def reexec(name, argv):
    """Replaces this process by ``python -m cnnfast <argv>`` with ``name``'s environment."""
    env = {**os.environ, **ENVIRONMENT[name]}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "cnnfast", *argv], env)


def describe():
    """What each side runs on, for the report: cnnfast's capability, ATen's, and oneDNN's and MKL's caps."""
    import cnnfast  # noqa: PLC0415
    import torch  # noqa: PLC0415

    return {
        "cnnfast": cnnfast.backends.cpu.capability,
        "aten": torch.backends.cpu.get_cpu_capability(),
        "onednn_max": os.environ.get("ONEDNN_MAX_CPU_ISA", "native"),
        "mkl": os.environ.get("MKL_ENABLE_INSTRUCTIONS", "native"),
    }
