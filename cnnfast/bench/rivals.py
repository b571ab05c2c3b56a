"""Rival runtimes for ``cnnfast bench --rivals``: ONNX Runtime, OpenVINO and torch.compile (inductor) run
the same layer or model as a row, with the same weights and inputs, on the CPU.

Each rival is built first (ONNX export, conversion, compilation: never timed), checked against PyTorch
with the rule every row uses (``cnnfast/testing.py``), then timed in a block of its own: its warm-up
and all its samples together, so that a thread pool of one runtime that is still spinning never
shares the cores with the next one's samples. A rival that fails its check is reported as failed
and is not timed. Rivals run on the float32 NCHW forward rows of the layer ops that have an ONNX
operator (conv2d, conv2d_relu, conv2d_relu_max_pool2d, max_pool2d) and of the whole models
(inference, eval mode: the unconverted torch model). On the models' training-step rows (forward,
cross-entropy, backward) inductor, the one rival that trains, runs the compiled unconverted model,
checked and timed as cnnfast's side of the row is.
"""
import copy
import gc
import importlib.metadata
import importlib.util
import os
import tempfile
import time

import torch

from ..testing import compare
from . import RIVAL_NAMES, timing
from .runner import Impl, _cast, _op_fn, check, reference_impl

RIVAL_OPS = ("conv2d", "conv2d_relu", "conv2d_relu_max_pool2d", "max_pool2d", "model")
# The rivals that run a training step (the ONNX runtimes run inference only).
TRAINING_RIVALS = ("inductor",)

# rival -> the Python modules it needs, each installed by the PyPI package of the same name; the
# ``rivals`` extra installs them all. The ONNX file is made by torch.onnx.export's dynamo exporter,
# which needs onnx and onnxscript; OpenVINO reads the same file, so both ONNX runtimes run one graph.
REQUIRES = {
    "onnxruntime": ("onnxruntime", "onnx", "onnxscript"),
    "openvino": ("openvino", "onnx", "onnxscript"),
    "inductor": (),
}
assert tuple(REQUIRES) == RIVAL_NAMES
INSTALL_HINT = "pip install 'cnnfast[rivals]'"


def _installed(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing(names):
    """An error message for the first requested rival whose packages are not installed, else None."""
    for name in names:
        absent = [m for m in REQUIRES[name] if not _installed(m)]
        if absent:
            return (f"--rivals {name} needs the Python package{'s' if len(absent) > 1 else ''} "
                    f"{', '.join(map(repr, absent))}, not installed here: install the rivals extra "
                    f"({INSTALL_HINT}) or {'them' if len(absent) > 1 else 'it'} (pip install {' '.join(absent)})")
    return None


def versions(names):
    """The version of each rival's runtime (and of the exporter it relies on), for the header and JSON."""
    out = {}
    for name in names:
        packages = REQUIRES[name] or ("torch",)
        found = {}
        for package in packages:
            try:
                found[package] = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                found[package] = None
        out[name] = found
    return out


def applicable(names, case, direction, dtype, layout, device):
    """The rivals of ``names`` that run on this row (in their order): every one on a forward row of a
    layer or model, the training ones on a model's training step, none elsewhere."""
    if case.op not in RIVAL_OPS or dtype != "float32" or layout != "nchw" or torch.device(device).type != "cpu":
        return []
    if direction == "fwd":
        return list(names)
    if direction == "fwdbwd" and case.op == "model":
        return [n for n in names if n in TRAINING_RIVALS]
    return []


class _Layer(torch.nn.Module):
    """One layer row as a module: the reference's functional op with the row's weight and bias, so
    every rival runs exactly the arguments the row runs."""

    def __init__(self, fn, weight=None, bias=None):
        super().__init__()
        self.fn = fn
        self.conv = weight is not None
        self.weight = torch.nn.Parameter(weight, requires_grad=False) if self.conv else None
        self.bias = torch.nn.Parameter(bias, requires_grad=False) if bias is not None else None

    def forward(self, x):
        return self.fn(x, self.weight, self.bias) if self.conv else self.fn(x)


class Subject:
    """What the rivals run for one row: a float32 eval-mode torch module and its input, with the ONNX
    export made once (in a temporary folder) for the runtimes that read it."""

    def __init__(self, prepared):
        case = prepared.case
        if case.op == "model":
            self.module = copy.deepcopy(prepared.model64).to(torch.float32).eval()
            self.x = _cast(prepared.x64, torch.float32, "cpu", "nchw")
        else:
            fn = _op_fn(case, reference_impl())
            x, *weights = [_cast(t, torch.float32, "cpu", "nchw") for t in prepared.args64]
            self.module = _Layer(fn, *weights).eval()
            self.x = x
        self._dir = tempfile.TemporaryDirectory(prefix="cnnfast-rivals-")
        self._onnx = None
        self.export_s = None

    def onnx(self):
        if self._onnx is None:
            path = os.path.join(self._dir.name, "model.onnx")
            t0 = time.perf_counter()
            with torch.no_grad():
                torch.onnx.export(self.module, (self.x,), path, dynamo=True, external_data=False, verbose=False)
            self.export_s = time.perf_counter() - t0
            self._onnx = path
        return self._onnx

    def close(self):
        self._dir.cleanup()


# --- the runtimes: each builds a zero-argument callable that runs one inference -----------------------

def _onnxruntime(subject, threads):
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle pool threads that spin would keep stealing the cores the next runtime is timed on.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(subject.onnx(), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: subject.x.numpy()}
    outputs = [session.get_outputs()[0].name]
    return lambda: session.run(outputs, feed)[0]


def _openvino(subject, threads):
    import openvino as ov  # noqa: PLC0415

    compiled = ov.Core().compile_model(ov.convert_model(subject.onnx()), "CPU", {
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        # On a CPU with bfloat16 units (AVX512-BF16, AMX) the plugin's default is bfloat16 inference:
        # another computation than the float32 row, which fails the float32 check.
        "INFERENCE_PRECISION_HINT": "f32",
    })
    request = compiled.create_infer_request()
    x = subject.x.numpy()

    def run(compiled=compiled):  # the request needs its compiled model alive
        request.infer({0: x}, share_inputs=True, share_outputs=True)
        return request.get_output_tensor(0).data

    return run


def _inductor(subject, threads):
    # A fresh dynamo state per row: the rows share the module class's forward, and a recompilation of
    # the same code for a new shape would turn to dynamic shapes, and past the recompile limit to eager.
    torch._dynamo.reset()
    compiled = torch.compile(subject.module, dynamic=False)
    x = subject.x

    def run():
        with torch.no_grad():
            return compiled(x)

    return run


BUILDERS = {"onnxruntime": _onnxruntime, "openvino": _openvino, "inductor": _inductor}
assert tuple(BUILDERS) == RIVAL_NAMES


def inductor_impl():
    """torch.compile of the unconverted model as a side of runner's comparison, so that its training
    step is built, checked (with the ReLU branches it took, recorded by hooks that dynamo traces) and
    timed by the code that does it for cnnfast."""
    ref = reference_impl()

    def convert(model, fuse=False):
        torch._dynamo.reset()  # as in _inductor: each model its own static-shape compilation
        return torch.compile(model, dynamic=False)

    return Impl("inductor", ref.conv2d, ref.conv2d_relu, ref.max_pool2d, ref.relu, convert,
                ref.conv2d_relu_max_pool2d)


# rival -> the side of runner's comparison that runs its training step
TRAINING_IMPLS = {"inductor": inductor_impl}
assert tuple(TRAINING_IMPLS) == TRAINING_RIVALS


def _as_tensor(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    import numpy as np  # noqa: PLC0415

    return torch.from_numpy(np.array(value, copy=True))


def measure(name, subject, ref, truth, lengths, threads, repeat, warmup):
    """Build, check and time one rival on ``subject``: its entry of the row's ``rivals``."""
    entry = {"status": "ok", "passed": True, "message": ""}
    try:
        t0 = time.perf_counter()
        run = BUILDERS[name](subject, threads)
        first = _as_tensor(run())  # the first call: compilation for the lazy ones, so part of set-up
        entry["setup_s"] = time.perf_counter() - t0
        entry["error"] = compare([first], ref, truth, lengths, torch.float32)
        if entry["error"]["passed"]:
            _time(entry, run, repeat, warmup)
    except Exception as e:  # a rival that cannot run this row is reported, not the end of the bench
        _crashed(entry, e)
    finally:
        run = None
        gc.collect()  # frees the runtime, and with it its thread pool, before the next one is timed
    return _verdict(entry)


def measure_training(name, prepared, repeat, warmup):
    """Check and time the training step of one rival on a model's fwdbwd row: its entry of ``rivals``."""
    entry = {"status": "ok", "passed": True, "message": ""}
    run = None
    try:
        impl = TRAINING_IMPLS[name]()
        t0 = time.perf_counter()
        entry["error"] = check(prepared, impl, reference_impl())
        if entry["error"]["passed"]:
            run = prepared.fn(impl)
            run()  # compiles the step that is timed (the checked one carried the recording hooks)
            entry["setup_s"] = time.perf_counter() - t0
            _time(entry, run, repeat, warmup)
        else:
            entry["setup_s"] = time.perf_counter() - t0
    except Exception as e:
        _crashed(entry, e)
    finally:
        run = None
        gc.collect()
    return _verdict(entry)


def _time(entry, run, repeat, warmup):
    samples, inner = timing.block(run, "cpu", repeat, warmup)
    entry["time"] = timing.summary(samples)
    entry["inner"] = inner


def _crashed(entry, e):
    entry.update(status="error", passed=False, message=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


def _verdict(entry):
    if entry["status"] == "ok" and not entry["error"]["passed"]:
        entry.update(status="fail", passed=False, message=entry["error"]["message"])
    return entry


class Rivals:
    """Adds the rival columns to the rows of one bench run. The two model rows of a suite (converted,
    and converted with fusion) run the same unconverted model on the rivals' side, so it is measured
    once and both rows take their ratio against it."""

    def __init__(self, names, threads, repeat, warmup):
        self.names, self.threads, self.repeat, self.warmup = list(names), threads, repeat, warmup
        self._models = {}

    def add(self, row, case, prepare):
        """Run the rivals that apply to ``row`` (of ``case``); ``prepare()`` gives its runner.Prepared."""
        names = applicable(self.names, case, row["direction"], row["dtype"], row["layout"], "cpu")
        if not names or not isinstance(row.get("cnnfast"), dict):
            return row
        key = (case.suite, case.p["input"], case.p["model"], row["direction"]) if case.op == "model" else None
        if key is not None and key in self._models:
            first_case, measured, export_s = self._models[key]
            entries = {n: {**e, "same_as": first_case} for n, e in measured.items()}
        elif row["direction"] == "fwd":
            entries, export_s = self._measure(prepare(), names)
        else:
            prepared = prepare()
            entries = {n: measure_training(n, prepared, self.repeat, self.warmup) for n in names}
            export_s = None
        if key is not None and key not in self._models:
            self._models[key] = (case.id, entries, export_s)
        t_cnnfast = row["cnnfast"]["median_s"]
        for entry in entries.values():
            if entry["status"] == "ok" and t_cnnfast > 0:
                entry["ratio"] = entry["time"]["median_s"] / t_cnnfast
        row["rivals"] = entries
        row["onnx_export_s"] = export_s
        timed = [(e["ratio"], n) for n, e in entries.items() if e.get("ratio") is not None]
        row["fastest_rival"] = {"name": min(timed)[1], "ratio": min(timed)[0]} if timed else None
        return row

    def _measure(self, prepared, names):
        ref_impl = reference_impl()
        ref = prepared.outputs(ref_impl)
        truth = prepared.outputs(ref_impl, torch.float64)
        lengths = prepared.lengths[:1]
        subject = Subject(prepared)
        try:
            entries = {name: measure(name, subject, ref, truth, lengths, self.threads, self.repeat, self.warmup)
                       for name in names}
        finally:
            subject.close()
        return entries, subject.export_s
