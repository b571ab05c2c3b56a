"""The CUDA-on-CPU harness as the tests load it (cnnfast/_cuda_on_cpu.py, loaded without importing
the cnnfast package, which needs the main extension).

Where the harness cannot build (no g++, no CUDA headers), its tests skip with the reason on a
developer's machine; under CI (the CI environment variable set) they fail instead, since a fresh
CI machine has g++ and nvcc and a skip there would hide a broken set-up.
"""
import importlib.util
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_spec = importlib.util.spec_from_file_location("cnnfast_cuda_on_cpu", ROOT / "cnnfast" / "_cuda_on_cpu.py")
coc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(coc)

try:
    coc.cuda_include_dir()
    missing = None if shutil.which(os.environ.get("CXX", "g++")) else "no g++"
except coc.BuildError as e:
    missing = str(e)

if missing is not None and os.environ.get("CI"):
    raise RuntimeError(f"CUDA-on-CPU harness cannot build on this CI machine: {missing}")

# Mark for a test (or a module's pytestmark) that needs the harness.
needs_harness = pytest.mark.skipif(missing is not None, reason=f"CUDA-on-CPU harness cannot build: {missing}")
