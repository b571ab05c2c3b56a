"""Benchmark suites, read from real models: each suite is the list of distinct (op, shape, arguments)
cases that occur when the model runs, found by running it once with forward hooks, plus two
whole-model cases (inference forward and training step, converted and converted with fusion, against
unconverted).

The same case list feeds ``cnnfast bench`` and the pytest-benchmark suite in ``benchmarks/``.
"""
from dataclasses import dataclass, field

import torch

from . import DEFAULT_SUITES, OP_NAMES, SUITE_NAMES

# suite -> (builder name, per-sample input shape, default batch, description)
SUITES = {
    "lenet": ("lenet", (1, 28, 28), 64, "LeNet-5 on 28x28 digits (cnnfast.models.LeNet)"),
    "mnist-cnn": ("mnist-cnn", (1, 28, 28), 64, "MNIST CNN with BatchNorm (cnnfast.models.MnistCNN)"),
    "resnet-cifar": ("resnet-cifar", (3, 32, 32), 16, "CIFAR-10 ResNet-20 (cnnfast.models.ResNetCifar)"),
    "resnet18": ("resnet18", (3, 224, 224), 2, "torchvision resnet18 at 224x224"),
    "resnet50": ("resnet50", (3, 224, 224), 1, "torchvision resnet50 at 224x224"),
}
OPS = OP_NAMES
assert tuple(SUITES) == SUITE_NAMES
LAYER_OPS = ("conv2d", "max_pool2d", "relu", "conv2d_relu", "conv2d_relu_max_pool2d")
# The fusion cases: their work is already in the model's layer list as its separate ops.
FUSED_OPS = ("conv2d_relu", "conv2d_relu_max_pool2d")


@dataclass(frozen=True)
class Case:
    """One distinct benchmark case. ``params`` is a sorted tuple of (name, value) items (a dict is not
    hashable); :attr:`p` gives it as a dict. ``count`` (how often it occurs in the model) is not
    part of its identity."""

    suite: str
    op: str
    params: tuple
    count: int = field(default=1, compare=False)

    @property
    def p(self):
        return dict(self.params)

    @property
    def input_shape(self):
        return tuple(self.p["input"])

    def describe(self):
        """Shape and arguments, e.g. ``64x1x28x28 w6x1x5x5+b s1 p2``."""
        p = self.p
        shape = "x".join(map(str, p["input"]))
        if self.op in ("conv2d", "conv2d_relu", "conv2d_relu_max_pool2d"):
            text = f"{shape} w{'x'.join(map(str, p['weight']))}{'+b' if p['bias'] else ''}"
            text += f" s{_pair_str(p['stride'])} p{_pair_str(p['padding'])}"
            if tuple(p["dilation"]) != (1, 1):
                text += f" d{_pair_str(p['dilation'])}"
            if p["groups"] != 1:
                text += f" g{p['groups']}"
            if self.op == "conv2d_relu_max_pool2d":  # then the pool's window, e.g. "+ k2 s2 p0"
                text += " + " + _pool_text(p["kernel_size"], p["pool_stride"], p["pool_padding"], p["pool_dilation"],
                                           p["ceil_mode"])
            return text
        if self.op == "max_pool2d":
            return f"{shape} " + _pool_text(p["kernel_size"], p["stride"], p["padding"], p["dilation"], p["ceil_mode"])
        if self.op == "model":
            return f"{shape} {p['model']}" + (" fused" if p.get("fuse") else "")
        return shape

    @property
    def id(self):
        """A stable name for the case (pytest ids, JSON): suite, op, shape and arguments."""
        return f"{self.suite}:{self.op}:{self.describe().replace(' ', '_')}"


def _pool_text(kernel_size, stride, padding, dilation, ceil_mode):
    text = f"k{_pair_str(kernel_size)} s{_pair_str(stride)} p{_pair_str(padding)}"
    if tuple(dilation) != (1, 1):
        text += f" d{_pair_str(dilation)}"
    return text + (" ceil" if ceil_mode else "")


def _pair_str(v):
    v = tuple(v)
    return str(v[0]) if len(v) == 2 and v[0] == v[1] else ",".join(map(str, v))


def _pair(v):
    return (int(v), int(v)) if isinstance(v, int) else tuple(int(x) for x in v)


def build_model(suite, fast=False, seed=0):
    """The model of ``suite`` built from plain torch layers (``fast=False``), or from cnnfast's."""
    torch.manual_seed(seed)
    if suite in ("lenet", "mnist-cnn", "resnet-cifar"):
        from .. import models  # noqa: PLC0415

        cls = {"lenet": models.LeNet, "mnist-cnn": models.MnistCNN, "resnet-cifar": models.ResNetCifar}[suite]
        return cls(num_classes=10, fast=fast)
    if suite in ("resnet18", "resnet50"):
        import torchvision  # noqa: PLC0415

        if fast:
            raise ValueError("torchvision models are built from torch layers; use cnnfast.convert on them")
        return getattr(torchvision.models, suite)(weights=None)
    raise ValueError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")


def _with_batch(shape, batch):
    return (int(batch),) + tuple(int(s) for s in shape[1:])


def extract_cases(model, sample_shape, suite, batch):
    """The distinct (op, shape, arguments) cases of ``model`` on inputs of shape (batch, *sample_shape),
    in order of first occurrence, each with its count, plus the whole-model case.

    The model runs once (eval mode, no grad, batch 1) with hooks on every ``torch.nn.Conv2d``,
    ``MaxPool2d`` and ``ReLU`` (and subclasses, so cnnfast's layers count too); a ReLU module whose input
    is exactly a convolution's output also yields a ``conv2d_relu`` case, and a max-pooling whose input is
    exactly that ReLU's output a ``conv2d_relu_max_pool2d`` case (the fusions cnnfast offers).
    Shapes are then rescaled to ``batch``."""
    found = {}  # (op, params) -> count, insertion-ordered
    linear_flops = [0]
    last_conv = {}  # id(conv output) -> conv params, for conv2d_relu
    last_relu = {}  # id(ReLU output after a conv) -> conv params, for conv2d_relu_max_pool2d
    relu_of_conv = {}  # id(ReLU module) -> conv params while that ReLU runs on a conv's output
    handles = []

    def add(op, params):
        key = (op, tuple(sorted(params.items())))
        found[key] = found.get(key, 0) + 1

    def conv_hook(module, inputs, output):
        x = inputs[0]
        if x.dim() != 4:  # unbatched input never occurs here (we feed a batch)
            return
        if module.padding_mode != "zeros":
            # cnnfast pads with torch first, then convolves without padding: bench the convolution.
            ph, pw = _pair(module.padding)
            padding = (0, 0)
            in_shape = (x.shape[0], x.shape[1], x.shape[2] + 2 * ph, x.shape[3] + 2 * pw)
        else:
            padding = module.padding if isinstance(module.padding, str) else _pair(module.padding)
            in_shape = tuple(x.shape)
        params = {
            "input": _with_batch(in_shape, batch),
            "weight": tuple(module.weight.shape),
            "bias": module.bias is not None,
            "stride": _pair(module.stride),
            "padding": padding,
            "dilation": _pair(module.dilation),
            "groups": int(module.groups),
            "output": _with_batch(output.shape, batch),
        }
        add("conv2d", params)
        last_conv.clear()
        last_conv[id(output)] = (output, params)

    def pool_hook(module, inputs, output):
        x = inputs[0]
        out = output[0] if isinstance(output, tuple) else output
        params = {
            "input": _with_batch(x.shape, batch),
            "kernel_size": _pair(module.kernel_size),
            "stride": _pair(module.stride if module.stride is not None else module.kernel_size),
            "padding": _pair(module.padding),
            "dilation": _pair(module.dilation),
            "ceil_mode": bool(module.ceil_mode),
            "output": _with_batch(out.shape, batch),
        }
        add("max_pool2d", params)
        hit = last_relu.get(id(x))
        if hit is not None and hit[0] is x:
            conv = hit[1]
            add("conv2d_relu_max_pool2d", {**conv, "conv_output": conv["output"], "output": params["output"],
                                           "kernel_size": params["kernel_size"], "pool_stride": params["stride"],
                                           "pool_padding": params["padding"], "pool_dilation": params["dilation"],
                                           "ceil_mode": params["ceil_mode"]})

    def relu_pre_hook(module, inputs):
        x = inputs[0]
        hit = last_conv.get(id(x))
        if hit is not None and hit[0] is x:
            add("conv2d_relu", hit[1])
        add("relu", {"input": _with_batch(x.shape, batch)})
        last_relu.clear()
        if hit is not None and hit[0] is x:
            relu_of_conv[id(module)] = hit[1]

    def relu_hook(module, inputs, output):
        conv = relu_of_conv.pop(id(module), None)
        if conv is not None:
            last_relu[id(output)] = (output, conv)

    def linear_hook(module, inputs, output):
        # 2*in*out per sample row (the bias add not counted), at the bench batch.
        rows = inputs[0].numel() // inputs[0].shape[-1] // inputs[0].shape[0] * batch
        linear_flops[0] += 2 * rows * module.in_features * module.out_features

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, torch.nn.MaxPool2d):
            handles.append(m.register_forward_hook(pool_hook))
        elif isinstance(m, torch.nn.ReLU):
            handles.append(m.register_forward_pre_hook(relu_pre_hook))
            handles.append(m.register_forward_hook(relu_hook))
        elif isinstance(m, torch.nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            param = next(model.parameters(), None)
            dtype = param.dtype if param is not None else torch.float32
            device = param.device if param is not None else "cpu"
            model(torch.randn((1,) + tuple(sample_shape), dtype=dtype, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    cases = [Case(suite, op, params, count) for (op, params), count in found.items()]
    layers = tuple((Case(c.suite, c.op, c.params), c.count) for c in cases if c.op not in FUSED_OPS)
    model_params = {
        "input": _with_batch((1,) + tuple(sample_shape), batch),
        "model": type(model).__name__,
        "layers": layers,
        "linear_flops": linear_flops[0],
    }
    # Two whole-model cases: cnnfast.convert(model), and cnnfast.convert(model, fuse=True) (Conv->ReLU and
    # Conv->ReLU->MaxPool as one op; in inference also BatchNorm folded into the convolution), each against
    # the unconverted model.
    model_cases = [Case(suite, "model", tuple(sorted({**model_params, "fuse": fuse}.items()))) for fuse in (False, True)]
    return cases + model_cases


_CACHE = {}


def suite_cases(suite, batch=None, ops=OPS):
    """The cases of ``suite`` at ``batch`` (its default batch when None), restricted to ``ops``."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    _, sample_shape, default_batch, _ = SUITES[suite]
    batch = default_batch if batch is None else int(batch)
    key = (suite, batch)
    if key not in _CACHE:
        _CACHE[key] = extract_cases(build_model(suite), sample_shape, suite, batch)
    return [c for c in _CACHE[key] if c.op in ops]


def all_cases(suites=DEFAULT_SUITES, batch=None, ops=OPS):
    return [c for s in suites for c in suite_cases(s, batch, ops)]
