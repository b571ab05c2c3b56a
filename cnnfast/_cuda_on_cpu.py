"""Build and load code that runs cnnfast's CUDA kernel source on the CPU (csrc/cuda_on_cpu).

A C++ file that includes the kernel ``.cuh`` files (through ``csrc/cuda/common/launch.cuh``, which
pulls in the harness under g++) and exposes ``extern "C"`` entry points taking raw pointers is
compiled with g++ into a plain shared library (or an executable, e.g. for an AddressSanitizer
build) and loaded with ctypes. No torch header is involved, so a build takes seconds. Results are
cached by a hash of the compiler command and every source and header they can include.

Needs g++ and a CUDA toolkit's include directory (for vector_types.h, cuda_fp16.h, cuda_bf16.h);
no GPU. Used by the tests; not part of the installed package's runtime.
"""
from __future__ import annotations

import ctypes
import glob
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
HARNESS_DIR = CSRC / "cuda_on_cpu"

# Thread orders of a launch (cuda_on_cpu::Order).
FORWARD, REVERSED, SHUFFLED = 0, 1, 2
ORDERS = {"forward": FORWARD, "reversed": REVERSED, "shuffled": SHUFFLED}


class BuildError(RuntimeError):
    pass


def cuda_include_dir() -> str:
    """The include directory of a CUDA toolkit (the same search order as setup.py)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates += ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for root in candidates:
        if root and os.path.isfile(os.path.join(root, "include", "cuda_fp16.h")):
            return os.path.join(root, "include")
    raise BuildError("no CUDA toolkit include directory with cuda_fp16.h found (set CUDA_HOME)")


def cache_dir() -> Path:
    """$CNNFAST_CUDA_ON_CPU_CACHE, else ~/.cache/cnnfast/cuda_on_cpu, else a temporary directory."""
    d = os.environ.get("CNNFAST_CUDA_ON_CPU_CACHE")
    if d:
        candidates = [Path(d)]
    else:
        candidates = [Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cnnfast" / "cuda_on_cpu",
                      Path(tempfile.gettempdir()) / f"cnnfast-cuda_on_cpu-{os.getuid()}"]
    for path in candidates:
        try:
            path.mkdir(parents=True, exist_ok=True)
            if os.access(path, os.W_OK):
                return path
        except OSError:
            pass
    raise BuildError(f"no writable cache directory among {', '.join(map(str, candidates))}")


def _prune(out: Path, prefix: str, suffix: str, keep: int = 4) -> None:
    """Drop all but the newest few builds of one name (source edits leave old ones behind)."""
    same = re.compile(re.escape(prefix) + r"[0-9a-f]{16}" + re.escape(suffix))
    olds = sorted((p for p in out.parent.iterdir() if p != out and same.fullmatch(p.name)),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    for p in olds[keep - 1:]:
        try:
            p.unlink()
        except OSError:
            pass


def _dependencies(sources: list[Path]) -> list[Path]:
    """Every file a build can include: the sources, the headers beside them, all of csrc."""
    files = set(sources)
    for src in sources:
        for pattern in ("*.h", "*.cuh", "*.hpp"):
            files.update(src.parent.glob(pattern))
    for pattern in ("**/*.h", "**/*.cuh", "**/*.hpp"):
        files.update(CSRC.glob(pattern))
    return sorted(files)


def build(sources, *, executable: bool = False, asan: bool = False, opt: str = "-O2",
          defines=(), name: str = "cuda_on_cpu", werror: bool = False) -> Path:
    """Compile C++ sources with the CPU harness; return the path of the (cached) output."""
    sources = [Path(s).resolve() for s in sources]
    cxx = os.environ.get("CXX", "g++")
    flags = ["-std=c++17", opt, "-g", "-Wall", "-Wextra", "-Wno-unknown-pragmas", "-pthread",
             f"-I{cuda_include_dir()}", f"-I{CSRC}"]
    if werror:
        flags.append("-Werror")
    flags += [f"-D{d}" for d in defines]
    if asan:  # with UBSan's alignment check: a misaligned float4 access faults on a GPU
        flags += ["-fsanitize=address,alignment", "-fno-sanitize-recover=alignment", "-fno-omit-frame-pointer"]
    if not executable:
        # -fno-gnu-unique: each library keeps its own harness state (thread order, stacks), even
        # when several are loaded into one process.
        flags += ["-fPIC", "-shared", "-fno-gnu-unique"]
    key = hashlib.sha256()
    key.update(" ".join([cxx] + flags).encode())
    for f in _dependencies(sources):
        key.update(str(f).encode())
        key.update(f.read_bytes())
    suffix = "" if executable else ".so"
    prefix = f"{name}{'-asan' if asan else ''}-"
    out = cache_dir() / f"{prefix}{key.hexdigest()[:16]}{suffix}"
    if out.exists():
        return out
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name + ".", suffix=".tmp")
    os.close(fd)
    cmd = [cxx] + flags + [str(s) for s in sources] + ["-o", tmp]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        os.unlink(tmp)
        raise BuildError(f"{' '.join(cmd)}\n{proc.stderr}")
    os.replace(tmp, out)  # atomic: concurrent builders agree on the result
    _prune(out, prefix, suffix)
    return out


class Library:
    """A ctypes-loaded harness library whose entry points return 0, or 1 with an error message."""

    def __init__(self, path: Path):
        self.path = path
        self.lib = ctypes.CDLL(str(path))
        self.lib.coc_last_error.restype = ctypes.c_char_p
        self.lib.coc_set_order.argtypes = [ctypes.c_int, ctypes.c_ulonglong]

    def set_order(self, order, seed: int = 0) -> None:
        self.lib.coc_set_order(ORDERS.get(order, order), seed)

    BANK_KINDS = {"ldmatrix": 0, "lds": 1, "sts": 2}

    def bank_counts(self, kind: str) -> tuple[int, int]:
        """(warp accesses, bank conflicts as extra wavefronts) of the sm_80 shared-memory primitives
        of one kind ("ldmatrix", "lds", "sts") since reset_bank_counts()."""
        accesses, conflicts = ctypes.c_ulonglong(), ctypes.c_ulonglong()
        self.lib.coc_bank_counts(self.BANK_KINDS[kind], ctypes.byref(accesses), ctypes.byref(conflicts))
        return accesses.value, conflicts.value

    def reset_bank_counts(self) -> None:
        self.lib.coc_reset_bank_counts()

    def last_error(self) -> str:
        return self.lib.coc_last_error().decode()

    def call(self, entry: str, *args) -> None:
        """Call an entry point; raise KernelError with the harness's message on misuse."""
        if getattr(self.lib, entry)(*args) != 0:
            raise KernelError(self.last_error())

    def __getattr__(self, name):
        return getattr(self.lib, name)


class KernelError(RuntimeError):
    pass


def load(sources, **kwargs) -> Library:
    return Library(build(sources, **kwargs))


def load_kernels(**kwargs) -> Library:
    """cnnfast's own CUDA kernels on the CPU (csrc/cuda_on_cpu/kernels.cpp), built on demand."""
    return load([HARNESS_DIR / "kernels.cpp"], name="cnnfast_kernels", **kwargs)


DEFAULT_ORDERS = (("forward", 0), ("reversed", 0), ("shuffled", 1))


def in_every_order(lib: Library, run, orders=DEFAULT_ORDERS):
    """Run ``run()`` (which launches kernels and returns a tuple of tensors) under each thread
    order; require bit-identical results (a missing barrier shows up as a difference) and return
    the first. The order is forward again afterwards."""
    import torch

    outs = []
    try:
        for order, seed in orders:
            lib.set_order(order, seed)
            outs.append(tuple(run()))
    finally:
        lib.set_order("forward")
    for (order, seed), out in zip(orders[1:], outs[1:]):
        for i, (a, b) in enumerate(zip(outs[0], out)):
            if not torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8)):
                raise AssertionError(f"output {i} under thread order {order} (seed {seed}) differs bit-wise "
                                     f"from order {orders[0][0]}: a race between threads (missing __syncthreads?)")
    return outs[0]


def ptr(tensor):
    """A CPU tensor's data as a void pointer (the tensor must be contiguous and outlive the call)."""
    assert tensor.device.type == "cpu" and tensor.is_contiguous()
    return ctypes.c_void_p(tensor.data_ptr())
