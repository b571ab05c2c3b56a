import torch
from torch._prims_common import suggest_memory_format

from ..backends import dtype_set


def cuda_built():
    from .. import _build_config

    return bool(getattr(_build_config, "cuda", False))


def supported_dtypes(device):
    """The dtypes cnnfast has kernels for on ``device`` (empty where it has none)."""
    device_type = torch.device(device).type
    if device_type == "cuda" and not cuda_built():
        return ()
    return dtype_set(device_type) if device_type in ("cpu", "cuda") else ()


def empty_in_format_of(like, size=None):
    """An empty tensor in the memory format torch suggests for ``like``: the layout every cnnfast
    kernel gives its gradients (the C++ glue uses ``suggest_memory_format`` the same way)."""
    return torch.empty(
        like.shape if size is None else size,
        dtype=like.dtype,
        device=like.device,
        memory_format=suggest_memory_format(like),
    )


def check_same_device(op, ref_name, ref, **others):
    """A call mixing devices reaches the Meta (fake) kernel first, whatever the real devices are, so the
    fake kernels repeat the C++ kernels' device check (csrc/checks.cpp) in the same words."""
    for name, t in others.items():
        if t is not None and t.device != ref.device:
            raise RuntimeError(
                f"{op}: expected {name} and {ref_name} to be on the same device, but got "
                f"{name}.device={t.device} and {ref_name}.device={ref.device}"
            )
