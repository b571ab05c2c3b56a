"""cnnfast's switches, in the manner of ``torch.backends``: ``cnnfast.backends.cpu``.

The CPU kernels take one snapshot of these settings per op call; nothing reads the environment after
import. Each setting is seeded once, when cnnfast is imported, from an environment variable:

==========================  ===============================  =========================================
setting                     environment variable             values
==========================  ===============================  =========================================
``capability``              ``CNNFAST_CPU_CAPABILITY``       ``"avx512"``, ``"avx2"``, ``"default"``
``winograd``                ``CNNFAST_CPU_WINOGRAD``         ``"auto"``, ``"on"``, ``"off"``
``images_per_vector``       ``CNNFAST_CPU_IMAGES_PER_VECTOR`` ``"auto"``, ``"on"``, ``"off"``
``output_cache_mb``         ``CNNFAST_CPU_OUTPUT_CACHE_MB``  an int >= 0 (0: no cache)
==========================  ===============================  =========================================

``capability`` is the SIMD path the kernels take: setting it can only lower it below what the CPU
supports (``supported_capability``); reading it gives the path in use. ``winograd`` (Winograd
F(2x2, 3x3) for 3x3 stride-1 float32 layers) and ``images_per_vector`` (sixteen images per vector for
float32 layers on small images) are ``"auto"`` (the measured rule of csrc/cpu/conv2d/path.h), ``"on"``
(wherever the algorithm applies) or ``"off"``; environment values ``1`` and ``0`` mean on and off.
``output_cache_mb`` bounds the CPU output cache (:mod:`cnnfast.memory`). Bad values raise a
ValueError naming the setting (or the variable) and the value.

>>> with cnnfast.backends.cpu.flags(capability="avx2", winograd="off"):
...     y = cnnfast.functional.conv2d(x, w)
"""
import contextlib
import os

import torch

from . import _C

__all__ = ["cpu"]

_CAPABILITIES = ("avx512", "avx2", "default")
_SWITCHES = ("auto", "on", "off")
_ENV = {
    "capability": "CNNFAST_CPU_CAPABILITY",
    "winograd": "CNNFAST_CPU_WINOGRAD",
    "images_per_vector": "CNNFAST_CPU_IMAGES_PER_VECTOR",
    "output_cache_mb": "CNNFAST_CPU_OUTPUT_CACHE_MB",
}
# Variables of earlier releases: setting one is an error that names its successor (never silently ignored).
_RENAMED = {"CNNFAST_CPU_BATCH16": "CNNFAST_CPU_IMAGES_PER_VECTOR", "CNNFAST_CPU_CACHE_MB": "CNNFAST_CPU_OUTPUT_CACHE_MB"}
_MAX_CACHE_MB = 1 << 30


def _switch_value(name, value):
    if value is True:
        return "on"
    if value is False:
        return "off"
    if isinstance(value, str) and value in _SWITCHES:
        return value
    raise ValueError(f"cnnfast.backends.cpu.{name} must be 'auto', 'on' or 'off' (or True/False), got {value!r}")


class CpuBackend:
    """The CPU kernels' settings (see the module's documentation)."""

    _SETTINGS = ("capability", "winograd", "images_per_vector", "output_cache_mb")

    @property
    def capability(self):
        return _C._cpu_settings()[0]

    @capability.setter
    def capability(self, value):
        if not isinstance(value, str) or value not in _CAPABILITIES:
            raise ValueError(f"cnnfast.backends.cpu.capability must be 'avx512', 'avx2' or 'default', got {value!r}")
        _C._set_cpu_capability(value)

    @property
    def supported_capability(self):
        """The best SIMD path this CPU supports (read-only)."""
        return _C._cpu_settings()[1]

    @property
    def winograd(self):
        return _C._cpu_settings()[2]

    @winograd.setter
    def winograd(self, value):
        _C._set_cpu_switch("winograd", _switch_value("winograd", value))

    @property
    def images_per_vector(self):
        return _C._cpu_settings()[3]

    @images_per_vector.setter
    def images_per_vector(self, value):
        _C._set_cpu_switch("images_per_vector", _switch_value("images_per_vector", value))

    @property
    def output_cache_mb(self):
        return _C._cpu_cache_stats()[1] >> 20

    @output_cache_mb.setter
    def output_cache_mb(self, value):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_CACHE_MB:
            raise ValueError(
                f"cnnfast.backends.cpu.output_cache_mb must be a whole number of megabytes >= 0 "
                f"(0 turns the CPU output cache off), got {value!r}")
        _C._set_cpu_cache_limit(value << 20)

    @property
    def dtypes(self):
        """The dtypes the CPU kernels take (defined once, in csrc/dtypes.h)."""
        return dtype_set("cpu")

    @contextlib.contextmanager
    def flags(self, **settings):
        """Sets the given settings for the ``with`` block and restores the previous values after it."""
        unknown = sorted(set(settings) - set(self._SETTINGS))
        if unknown:
            raise TypeError(f"cnnfast.backends.cpu.flags() got unknown settings {unknown}; "
                            f"the settings are {list(self._SETTINGS)}")
        saved = {name: getattr(self, name) for name in settings}
        try:
            for name, value in settings.items():
                setattr(self, name, value)
            yield self
        finally:
            for name, value in saved.items():
                setattr(self, name, value)

    def __setattr__(self, name, value):
        if name not in self._SETTINGS:
            raise AttributeError(f"cnnfast.backends.cpu has no setting {name!r}; the settings are "
                                 f"{list(self._SETTINGS)}")
        object.__setattr__(self, name, value)

    def __repr__(self):
        return (f"cnnfast.backends.cpu(capability={self.capability!r} (supported: {self.supported_capability!r}), "
                f"winograd={self.winograd!r}, images_per_vector={self.images_per_vector!r}, "
                f"output_cache_mb={self.output_cache_mb})")


def dtype_set(device_type):
    """The dtypes cnnfast's kernels take on ``device_type`` ("cpu" or "cuda"), from csrc/dtypes.h."""
    names = _C._cpu_dtypes() if device_type == "cpu" else _C._cuda_dtypes()
    return tuple(getattr(torch, name.lower()) for name in names)


def _from_environment(setting, raw):
    var = _ENV[setting]
    if setting == "capability":
        value = raw.strip().lower()
        if value not in _CAPABILITIES:
            raise ValueError(f"cnnfast: the environment variable {var} must be avx512, avx2 or default "
                             f"(or unset), got {raw!r}")
        return value
    if setting == "output_cache_mb":
        if not raw.strip().isdigit() or int(raw) > _MAX_CACHE_MB:
            raise ValueError(f"cnnfast: the environment variable {var} must be a whole number of megabytes >= 0 "
                             f"(0 turns the CPU output cache off), got {raw!r}")
        return int(raw)
    value = {"1": "on", "0": "off"}.get(raw.strip(), raw.strip())
    if value not in _SWITCHES:
        raise ValueError(f"cnnfast: the environment variable {var} must be 0 (never), 1 (wherever it applies) "
                         f"or auto (or on/off, or unset), got {raw!r}")
    return value


def seed_from_environment(environ=None):
    """Sets every CPU setting whose environment variable is set (cnnfast's import does this once)."""
    environ = os.environ if environ is None else environ
    for old, new in _RENAMED.items():
        if environ.get(old):
            raise ValueError(f"cnnfast: the environment variable {old} was renamed {new}; set {new} instead")
    values = {}
    for setting, var in _ENV.items():
        raw = environ.get(var)
        if raw:  # unset or empty: the default
            values[setting] = _from_environment(setting, raw)
    for setting, value in values.items():
        setattr(cpu, setting, value)


cpu = CpuBackend()
