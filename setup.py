"""Build of cnnfast's C++ (CPU) and CUDA kernels.

Switches, read once here and printed:
  CNNFAST_CUDA=auto|0|1   auto (default): build the CUDA sources when a CUDA toolkit whose major
                          version matches torch.version.cuda is found; 1: require it; 0: CPU only.
  CUDA_HOME / CUDA_PATH   the toolkit to use; otherwise the folder that really holds
                          include/cuda_runtime.h is looked for (nvcc on PATH may be a wrapper).
  TORCH_CUDA_ARCH_LIST    archs to build for (default "8.0;9.0": sm_80 and sm_90; no GPU is needed).

A CUDA build keeps ptxas's resource report of every kernel (tools/nvcc_log.py wraps nvcc) and
writes it, with occupancy figures, to cnnfast/_kernel_report.json (see cnnfast/_kernel_report.py).

Install with `pip install --no-build-isolation .` into an environment that already has torch.
"""
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
CNNFAST_CUDA = os.environ.get("CNNFAST_CUDA", "auto").strip().lower()
DEFAULT_ARCHS = "8.0;9.0"
CONVENTIONAL_CUDA_ROOTS = ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)


def log(msg):
    print(f"cnnfast build: {msg}", file=sys.stderr, flush=True)


def has_runtime_header(root):
    return bool(root) and os.path.isfile(os.path.join(root, "include", "cuda_runtime.h"))


def find_cuda_home():
    """Return (path, how it was found) of a toolkit holding include/cuda_runtime.h, or (None, why)."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(var)
        if root:
            if has_runtime_header(root):
                return root, f"${var}"
            return None, f"${var}={root} holds no include/cuda_runtime.h"
    nvcc = shutil.which("nvcc")
    if nvcc:
        root = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        if has_runtime_header(root):
            return root, f"nvcc at {nvcc}"
    for root in CONVENTIONAL_CUDA_ROOTS:
        if has_runtime_header(root):
            return os.path.realpath(root), "conventional install location"
    return None, "no folder with include/cuda_runtime.h (set CUDA_HOME)"


def nvcc_version(cuda_home):
    nvcc = os.path.join(cuda_home, "bin", "nvcc")
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    m = re.search(r"release (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def decide_cuda():
    """Decide whether to build CUDA sources; returns (build_cuda, cuda_home, reason)."""
    if CNNFAST_CUDA not in ("auto", "0", "1"):
        sys.exit(f"cnnfast build: CNNFAST_CUDA must be auto, 0 or 1, got {CNNFAST_CUDA!r}")
    if CNNFAST_CUDA == "0":
        return False, None, "CNNFAST_CUDA=0"
    import torch

    def refuse(reason):
        if CNNFAST_CUDA == "1":
            sys.exit(f"cnnfast build: CNNFAST_CUDA=1 but {reason}")
        return False, None, reason

    if torch.version.cuda is None:
        return refuse(f"torch {torch.__version__} is a CPU-only build")
    cuda_home, how = find_cuda_home()
    if cuda_home is None:
        return refuse(how)
    version = nvcc_version(cuda_home)
    if version is None:
        return refuse(f"{cuda_home}/bin/nvcc does not run")
    torch_major = int(torch.version.cuda.split(".")[0])
    if version[0] != torch_major:
        return refuse(
            f"the CUDA toolkit at {cuda_home} is {version[0]}.{version[1]} but torch was built "
            f"with CUDA {torch.version.cuda}; install a {torch_major}.x toolkit or set CUDA_HOME"
        )
    return True, cuda_home, f"toolkit {version[0]}.{version[1]} at {cuda_home} (found by {how})"


def cpu_sources():
    return sorted(
        glob.glob("csrc/*.cpp") + glob.glob("csrc/autograd/*.cpp") + glob.glob("csrc/cpu/**/*.cpp", recursive=True)
    )


def cuda_sources():
    return sorted(glob.glob("csrc/cuda/*.cu") + glob.glob("csrc/cuda/*.cpp"))


def cuda_build_ext(base):
    """build_ext that, after compiling, gathers the per-object ptxas reports into the kernel report."""

    class BuildExt(base):
        def run(self):
            super().run()  # setuptools builds into build_lib, then copies in place (--inplace, editable)
            logs = sorted(glob.glob(os.path.join(self.build_temp, "**", "*.ptxas"), recursive=True))
            if not logs:
                return
            sys.path.insert(0, os.path.join(ROOT, "cnnfast"))
            try:
                import _kernel_report  # the package module, without importing the package
            finally:
                sys.path.pop(0)
            out_dirs = {os.path.join(os.path.abspath(self.build_lib), "cnnfast")}
            if self.inplace or getattr(self, "editable_mode", False):
                out_dirs.add(os.path.join(ROOT, "cnnfast"))
            for out_dir in sorted(out_dirs):
                os.makedirs(out_dir, exist_ok=True)
                path = _kernel_report.write(logs, out_dir, binary=self.get_ext_fullpath("cnnfast._C"))
                log(f"kernel report ({len(logs)} ptxas logs) written to {path}")

    return BuildExt


def write_build_config(config):
    path = os.path.join(ROOT, "cnnfast", "_build_config.py")
    with open(path, "w") as f:
        f.write("# Written by setup.py at build time.\n")
        for key, value in config.items():
            f.write(f"{key} = {value!r}\n")


def extensions():
    build_cuda, cuda_home, reason = decide_cuda()
    if build_cuda:
        # Must be set before torch.utils.cpp_extension is imported: it reads CUDA_HOME once.
        os.environ["CUDA_HOME"] = cuda_home
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS)
        # nvcc through a wrapper that keeps ptxas's resource report of each object.
        nvcc = os.path.join(cuda_home, "bin", "nvcc")
        os.environ["PYTORCH_NVCC"] = " ".join(
            shlex.quote(a) for a in (sys.executable, os.path.join(ROOT, "tools", "nvcc_log.py"), nvcc)
        )
    from torch.utils import cpp_extension

    sources = cpu_sources()
    # -fopenmp: at::parallel_for is an inline template that runs serially unless _OPENMP is defined;
    # the extension then shares torch's libgomp.so.1 (same soname, loaded first by import torch), so
    # torch.set_num_threads governs cnnfast's kernels too.
    cxx_flags = ["-O3", "-std=c++20", "-fvisibility=hidden", "-fopenmp"]
    link_flags = ["-fopenmp"]
    define_macros = []
    include_dirs = [os.path.join(ROOT, "csrc")]
    if build_cuda and cuda_sources():
        # ATen's CUDA headers include cuBLAS/cuSPARSE headers; the torch wheel ships them.
        import torch

        site = os.path.dirname(os.path.dirname(torch.__file__))
        include_dirs += glob.glob(os.path.join(site, "nvidia", "cu*", "include"))
        ext = cpp_extension.CUDAExtension(
            "cnnfast._C",
            sources + cuda_sources(),
            include_dirs=include_dirs,
            define_macros=define_macros + [("CNNFAST_WITH_CUDA", None)],
            extra_link_args=link_flags,
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-std=c++20", "-Xptxas=-v"]},
            py_limited_api=True,
        )
        archs = os.environ["TORCH_CUDA_ARCH_LIST"]
    else:
        if build_cuda:
            reason += "; no CUDA sources in csrc/cuda yet"
            build_cuda = False
        ext = cpp_extension.CppExtension(
            "cnnfast._C",
            sources,
            include_dirs=include_dirs,
            define_macros=define_macros,
            extra_link_args=link_flags,
            extra_compile_args={"cxx": cxx_flags},
            py_limited_api=True,
        )
        archs = ""
    log(f"CNNFAST_CUDA={CNNFAST_CUDA}: CUDA kernels {'ON' if build_cuda else 'OFF'} ({reason})")
    write_build_config(
        {
            "cuda": build_cuda,
            "cuda_home": cuda_home if build_cuda else None,
            "cuda_archs": archs,
            "cuda_reason": reason,
        }
    )
    build_ext = cpp_extension.BuildExtension.with_options(use_ninja=True)
    return [ext], (cuda_build_ext(build_ext) if build_cuda else build_ext)


ext_modules, build_ext = extensions()
setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext}, options={"bdist_wheel": {"py_limited_api": "cp310"}})
