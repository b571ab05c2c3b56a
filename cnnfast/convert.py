"""``cnnfast.convert``: swap cnnfast's layers into an existing model, in the manner of
``torch.nn.SyncBatchNorm.convert_sync_batchnorm``."""
import copy
import warnings

import torch

from . import nn as cnn
from .ops import supported_dtypes

# Exact torch classes (not their subclasses, whose forward may differ) -> cnnfast twin.
TWINS = {
    torch.nn.Conv2d: cnn.Conv2d,
    torch.nn.MaxPool2d: cnn.MaxPool2d,
    torch.nn.ReLU: cnn.ReLU,
}


def _why_not(module, model_tensors):
    """Why cnnfast cannot serve ``module`` (None when it can)."""
    tensors = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
    if not tensors:
        # Parameter-free layers (pooling, ReLU) run on whatever the model's tensors are.
        tensors = model_tensors
    for t in tensors:
        if t.dtype not in supported_dtypes(t.device):
            if not supported_dtypes(t.device):
                return f"cnnfast has no kernels for device {t.device.type!r}"
            return f"dtype {t.dtype} has no cnnfast kernel on {t.device.type} (supported: " + ", ".join(
                str(d) for d in supported_dtypes(t.device)
            ) + ")"
    return None


def _twin(module):
    """The cnnfast twin of ``module``: same state (parameters shared, buffers, hooks, training
    mode), cnnfast's forward."""
    twin = TWINS[type(module)].__new__(TWINS[type(module)])
    twin.__dict__ = module.__dict__.copy()
    for attr in ("_parameters", "_buffers", "_modules"):
        setattr(twin, attr, getattr(module, attr).copy())
    return twin


def convert(model, inplace=False, fuse=False):
    """Return ``model`` with every ``torch.nn.Conv2d``, ``MaxPool2d`` and ``ReLU`` replaced by its
    cnnfast twin (:mod:`cnnfast.nn`), keeping weights, buffers, device, dtype and training mode.

    With ``fuse=True`` the model is first fused (:mod:`cnnfast.fuse`): an eval-mode ``BatchNorm2d``
    after a convolution is folded into its weight and bias, and a convolution followed by ReLU (directly
    or through that BatchNorm) becomes one :class:`cnnfast.nn.Conv2dReLU`, or, when that ReLU module is
    followed by a ``MaxPool2d`` module, one :class:`cnnfast.nn.Conv2dReLUMaxPool2d`; the absorbed
    modules become ``nn.Identity``. Outputs equal the original's within the project's tolerance. Conv->ReLU(->MaxPool)
    fusion holds in training and eval; BatchNorm is folded only in eval mode (a folded model is for
    inference), and in training mode Conv->BN->ReLU is left as it is.

    With ``inplace=False`` (the default) the model is deep-copied first and the original is left
    untouched; with ``inplace=True`` the model's own modules are swapped and their parameters shared.
    A module cnnfast cannot serve (a dtype or device with no kernel) stays as it is; all such modules
    are named, with the reason, in one warning. Subclasses of those torch classes (whose forward may
    differ, lazy modules not yet initialized among them) are left alone.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"convert expects a torch.nn.Module, but got model of type {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    model_tensors = [t for t in list(model.parameters()) + list(model.buffers()) if t.is_floating_point()]
    if fuse:
        from .fuse import fuse as fuse_model

        model, _ = fuse_model(model, can_serve=lambda conv: _why_not(conv, model_tensors) is None)
    skipped = []
    twins = {}  # id(module) -> its twin, so a module used in two places stays one module

    def swap(module, path):
        if type(module) not in TWINS:
            return module
        if id(module) not in twins:
            reason = _why_not(module, model_tensors)
            if reason is not None:
                skipped.append(f"{path or '<model>'} ({type(module).__name__}): {reason}")
            twins[id(module)] = module if reason else _twin(module)
        return twins[id(module)]

    model = swap(model, "")
    for path, module in list(model.named_modules()):
        for name, child in list(module._modules.items()):
            if child is not None:
                new = swap(child, f"{path}.{name}" if path else name)
                if new is not child:
                    module._modules[name] = new
    if skipped:
        warnings.warn(
            "cnnfast.convert left these modules as they are:\n  " + "\n  ".join(skipped), stacklevel=2
        )
    return model
