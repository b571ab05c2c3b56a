"""cnnfast: fast CNN layers for PyTorch.

C++ (CPU) and CUDA kernels for conv2d, max_pool2d, ReLU and conv2d+bias+ReLU, registered as
``torch.ops.cnnfast.*`` ops with fake kernels and autograd, a ``torch.nn.functional``-like API
(:mod:`cnnfast.functional`), drop-in layers (:mod:`cnnfast.nn`) and :func:`cnnfast.convert`,
which swaps them into an existing model.
"""
import torch  # noqa: F401  (loads libtorch before the extension)

try:
    from . import _C  # noqa: F401  (registers torch.ops.cnnfast.*)
except ImportError as e:  # pragma: no cover - only without a build
    raise ImportError(
        "cnnfast's C++ extension (cnnfast._C) is not built or does not load: "
        f"{e}. Build it with `pip install --no-build-isolation .` (or `make build`)."
    ) from e

from . import backends  # noqa: E402
backends.seed_from_environment()  # the CPU settings, read from the environment once
from . import ops  # noqa: E402,F401  (fake kernels and autograd)
from . import functional, nn  # noqa: E402
from .convert import convert  # noqa: E402
from .memory import cpu_cache_stats, empty_cpu_cache  # noqa: E402

__version__ = "0.1.0"
__all__ = ["backends", "functional", "nn", "convert", "cpu_cache_stats", "empty_cpu_cache", "__version__"]
