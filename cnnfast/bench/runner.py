"""Run a case both ways: cnnfast and the PyTorch reference on the same inputs, checked against a float64
computation, then timed interleaved.

The two sides are :class:`Impl` objects (the four functional ops and a model converter), so a test can
feed a deliberately wrong kernel to the same comparator.
"""
import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..testing import compare
from . import roofline, timing
from .suites import build_model

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}



@dataclass
class Impl:
    """One side of the comparison."""

    name: str
    conv2d: Callable
    conv2d_relu: Callable
    max_pool2d: Callable
    relu: Callable
    convert: Callable  # (model, fuse) -> model running on this side's layers
    # (x, w, b, stride, padding, dilation, groups, kernel_size, pool_stride, pool_padding, pool_dilation, ceil_mode)
    conv2d_relu_max_pool2d: Callable = None


def reference_impl():
    """PyTorch's own ops (oneDNN on the CPU, cuDNN on the GPU): the reference."""
    tF = torch.nn.functional

    def conv2d_relu(*args):
        return torch.relu(tF.conv2d(*args))

    def conv2d_relu_max_pool2d(*args):
        return tF.max_pool2d(torch.relu(tF.conv2d(*args[:7])), *args[7:])

    return Impl("torch", tF.conv2d, conv2d_relu, tF.max_pool2d, tF.relu, lambda model, fuse=False: model,
                conv2d_relu_max_pool2d)


def cnnfast_impl():
    """cnnfast's ops (torch.ops.cnnfast.* through cnnfast.functional) and cnnfast.convert."""
    import cnnfast  # noqa: PLC0415
    from cnnfast import functional as F  # noqa: PLC0415

    def conv2d_relu_max_pool2d(x, w, b, stride, padding, dilation, groups, kernel_size, pool_stride, pool_padding,
                               pool_dilation, ceil_mode):
        return F.conv2d_relu_max_pool2d(x, w, b, stride, padding, dilation, groups, kernel_size=kernel_size,
                                        pool_stride=pool_stride, pool_padding=pool_padding,
                                        pool_dilation=pool_dilation, ceil_mode=ceil_mode)

    return Impl("cnnfast", F.conv2d, F.conv2d_relu, F.max_pool2d, F.relu,
                lambda model, fuse=False: cnnfast.convert(model, fuse=fuse), conv2d_relu_max_pool2d)


def cnnfast_supported_dtypes(device):
    from cnnfast.ops import supported_dtypes  # noqa: PLC0415

    return tuple(supported_dtypes(device))


# The ops whose arguments are a convolution's (input, weight, bias) and whose check compares the
# convolution's gradients.
CONV_OPS = ("conv2d", "conv2d_relu", "conv2d_relu_max_pool2d")


# --- inputs ---------------------------------------------------------------------------------------

def _cast(t, dtype, device, layout, requires_grad=False):
    if t is None:
        return None
    t = t.to(device=device, dtype=dtype)
    if layout == "channels_last" and t.dim() == 4:
        t = t.contiguous(memory_format=torch.channels_last)
    else:
        t = t.contiguous()
    return t.requires_grad_(requires_grad)


def _base_tensors(case, seed):
    """float64 CPU tensors for an op case: args (x[, weight, bias]) and the incoming gradient."""
    g = torch.Generator().manual_seed(seed)
    p = case.p
    x = torch.randn(p["input"], generator=g, dtype=torch.float64)
    if case.op in CONV_OPS:
        k, cg, r, s = p["weight"]
        w = torch.randn(p["weight"], generator=g, dtype=torch.float64) / math.sqrt(cg * r * s)
        b = torch.randn(k, generator=g, dtype=torch.float64) * 0.1 if p["bias"] else None
        args = [x, w, b]
        out_shape = p["output"]
    elif case.op == "max_pool2d":
        args, out_shape = [x], p["output"]
    else:
        args, out_shape = [x], p["input"]
    gy = torch.randn(out_shape, generator=g, dtype=torch.float64)
    return args, gy


def _op_fn(case, impl):
    p = case.p
    if case.op == "conv2d":
        return lambda x, w, b: impl.conv2d(x, w, b, p["stride"], p["padding"], p["dilation"], p["groups"])
    if case.op == "conv2d_relu":
        return lambda x, w, b: impl.conv2d_relu(x, w, b, p["stride"], p["padding"], p["dilation"], p["groups"])
    if case.op == "conv2d_relu_max_pool2d":
        return lambda x, w, b: impl.conv2d_relu_max_pool2d(
            x, w, b, p["stride"], p["padding"], p["dilation"], p["groups"], p["kernel_size"], p["pool_stride"],
            p["pool_padding"], p["pool_dilation"], p["ceil_mode"])
    if case.op == "max_pool2d":
        return lambda x: impl.max_pool2d(x, p["kernel_size"], p["stride"], p["padding"], p["dilation"], p["ceil_mode"])
    if case.op == "relu":
        return lambda x: impl.relu(x)
    raise ValueError(f"unknown op {case.op!r}")


def reduction_lengths(case, direction):
    """K of every tensor the case's check compares (output, then gradients in argument order)."""
    p = case.p
    if case.op in CONV_OPS:
        # the convolution's own output: grad-weight and grad-bias sum over it (after a pool, over the
        # elements the windows chose, at most as many)
        n, k, pp, q = p.get("conv_output", p["output"])
        _, cg, r, s = p["weight"]
        groups = p["groups"]
        out = [cg * r * s]
        grads = [(k // groups) * r * s, n * pp * q] + ([n * pp * q] if p["bias"] else [])
    elif case.op == "max_pool2d":
        (r, s), (sh, sw) = p["kernel_size"], p["stride"]
        out, grads = [1], [math.ceil(r / sh) * math.ceil(s / sw)]
    elif case.op == "relu":
        out, grads = [1], [1]
    else:
        raise ValueError(f"no per-op reduction lengths for op {case.op!r}")
    return out if direction == "fwd" else out + grads


class Prepared:
    """A case made ready for one (direction, dtype, layout, device): ``fn(impl)`` gives the zero-argument
    callable to time, ``outputs(impl)`` the tensors to check."""

    def __init__(self, case, direction, dtype, layout, device, seed=0):
        self.case, self.direction, self.dtype, self.layout, self.device = case, direction, dtype, layout, device
        self.seed = seed
        if case.op == "model":
            self._prepare_model()
        else:
            self.args64, self.gy64 = _base_tensors(case, seed)
            self.lengths = reduction_lengths(case, direction)

    # -- layer ops --
    def _op_callable(self, impl, dtype):
        fn = _op_fn(self.case, impl)
        grad = self.direction != "fwd"
        args = [_cast(t, dtype, self.device, self.layout, grad) for t in self.args64]
        gy = _cast(self.gy64, dtype, self.device, self.layout)
        leaves = [a for a in args if a is not None]
        if self.direction == "fwd":
            def run():
                with torch.no_grad():
                    return (fn(*args),)
        elif self.direction == "fwdbwd":
            def run():
                y = fn(*args)
                return (y, *torch.autograd.grad(y, leaves, gy))
        else:  # bwd: the forward once, then only the backward is timed
            y = fn(*args)

            def run():
                return (y, *torch.autograd.grad(y, leaves, gy, retain_graph=True))
        return run

    # -- whole models --
    def _prepare_model(self):
        case = self.case
        torch.manual_seed(self.seed)
        self.model64 = build_model(case.suite, seed=self.seed).double()
        g = torch.Generator().manual_seed(self.seed)
        self.x64 = torch.randn(case.p["input"], generator=g, dtype=torch.float64)
        self.labels = torch.randint(0, 10 if case.suite not in ("resnet18", "resnet50") else 1000,
                                    (case.p["input"][0],), generator=g)
        layers = case.p["layers"]
        k_fwd = sum(c * reduction_lengths(layer, "fwd")[0] for layer, c in layers) + 1
        if self.direction == "fwd":
            self.lengths = [k_fwd]
        else:
            k_w = max((reduction_lengths(layer, "fwdbwd")[2] for layer, _ in layers if layer.op == "conv2d"), default=1)
            n_params = len(list(self.model64.parameters()))
            self.lengths = [k_fwd, k_fwd] + [k_fwd + k_w] * n_params

    def _model_callable(self, impl, dtype, relu_record=None, relu_replay=None):
        model = copy.deepcopy(self.model64).to(device=self.device, dtype=dtype)
        if self.layout == "channels_last":
            model = model.to(memory_format=torch.channels_last)
        # The mode is set before converting, so a fused inference model folds its BatchNorms.
        model.train(self.direction != "fwd")
        model = impl.convert(model, fuse=bool(self.case.p.get("fuse", False)))
        if relu_record is not None:
            _record_relu_masks(model, relu_record)
        if relu_replay is not None:
            _replay_relu_masks(model, relu_replay)
        x = _cast(self.x64, dtype, self.device, self.layout)
        labels = self.labels.to(self.device)
        params = list(model.parameters())
        if self.direction == "fwd":

            def run():
                with torch.no_grad():
                    return (model(x),)
        else:

            def run():
                for prm in params:
                    prm.grad = None
                out = model(x)
                loss = torch.nn.functional.cross_entropy(out, labels)
                loss.backward()
                return (out, loss, *[prm.grad for prm in params])
        return run

    def fn(self, impl, dtype=None, **relu_masks):
        dtype = self.dtype if dtype is None else dtype
        if self.case.op == "model":
            return self._model_callable(impl, dtype, **relu_masks)
        return self._op_callable(impl, dtype)

    def outputs(self, impl, dtype=None, **relu_masks):
        """The tensors to check, computed once (detached copies). For a whole model,
        ``relu_record=list`` collects its ReLU decisions (output > 0, in call order) and
        ``relu_replay=list`` makes its ReLU modules take those decisions instead (see :func:`check`)."""
        outs = self.fn(impl, dtype, **relu_masks)()
        return [None if o is None else o.detach().clone() for o in outs]


def _is_relu(module):
    """A ReLU module, or cnnfast's fused conv2d + ReLU (whose output is a ReLU's)."""
    if isinstance(module, torch.nn.ReLU):
        return True
    try:
        from cnnfast.nn import Conv2dReLU  # noqa: PLC0415
    except ImportError:
        return False
    return isinstance(module, Conv2dReLU)


def _record_relu_masks(model, masks):
    try:
        from cnnfast.nn import Conv2dReLU, Conv2dReLUMaxPool2d  # noqa: PLC0415
    except ImportError:
        Conv2dReLU = Conv2dReLUMaxPool2d = None

    def pooled_relu_mask(mod, inp, out):
        # The fused conv + ReLU + pool keeps no pre-pool output. Its ReLU decisions are those of
        # conv2d_relu on the same input: the same convolution kernel, so bit-identical values.
        with torch.no_grad():
            masks.append(Conv2dReLU._conv_forward(mod, inp[0], mod.weight, mod.bias) > 0)

    for m in model.modules():
        if Conv2dReLUMaxPool2d is not None and isinstance(m, Conv2dReLUMaxPool2d):
            m.register_forward_hook(pooled_relu_mask)
        elif _is_relu(m):
            m.register_forward_hook(lambda mod, inp, out: masks.append(out.detach() > 0))


class _ReplayMismatch(RuntimeError):
    pass


def _replay_relu_masks(model, masks):
    """Every torch.nn.ReLU of ``model`` (a plain torch model: the reference) returns input * mask with
    the next recorded mask, so its gradient takes the recorded branches."""
    calls = iter(masks)

    def replay(mod, inp, out):
        mask = next(calls, None)
        if mask is None or mask.shape != inp[0].shape:
            raise _ReplayMismatch("the model's ReLU calls do not match the recorded ones")
        return inp[0] * mask.to(device=inp[0].device, dtype=inp[0].dtype)

    for m in model.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False  # the hook needs the ReLU's input as it was
            m.register_forward_hook(replay)


def check(prepared, impl, ref_impl):
    """Run both sides once and compare them with the float64 truth.

    A whole model's truth takes the same ReLU branches as the side it is compared with: an input
    within rounding of zero may land on either side of it in float32, and the gradient of such an
    element then legitimately differs by its whole size (and, through a training-mode BatchNorm,
    moves every gradient upstream). The float64 model replays each side's ReLU decisions (its masks
    in call order), so each side is held to its own computation, not to a coin flip."""
    if prepared.case.op == "model" and prepared.direction != "fwd" and prepared.dtype != torch.float64:
        test_masks, ref_masks = [], []
        test = prepared.outputs(impl, relu_record=test_masks)
        ref = prepared.outputs(ref_impl, relu_record=ref_masks)
        try:
            if len(test_masks) != len(ref_masks):
                raise _ReplayMismatch(f"{len(test_masks)} ReLU calls against {len(ref_masks)}")
            truth = prepared.outputs(ref_impl, torch.float64, relu_replay=test_masks)
            ref_truth = prepared.outputs(ref_impl, torch.float64, relu_replay=ref_masks)
        except _ReplayMismatch:  # ReLU calls that do not pair up: the plain truth, which is stricter
            truth = ref_truth = prepared.outputs(ref_impl, torch.float64)
        return compare(test, ref, truth, prepared.lengths, prepared.dtype, ref_truth=ref_truth)
    test = prepared.outputs(impl)
    ref = prepared.outputs(ref_impl)
    truth = ref if prepared.dtype == torch.float64 else prepared.outputs(ref_impl, torch.float64)
    return compare(test, ref, truth, prepared.lengths, prepared.dtype)


# --- one row --------------------------------------------------------------------------------------

def run_case(case, direction, dtype_name, layout, device, repeat, warmup, peaks, impl, ref_impl,
             supported, seed=0, time_it=True):
    """Check and time one (case, direction, dtype, layout): one row of the table, as a dict."""
    dtype = DTYPES[dtype_name]
    itemsize = roofline.ITEMSIZE[dtype_name]
    row = {
        "suite": case.suite, "op": case.op, "case": case.id, "args": case.describe(), "count": case.count,
        "direction": direction, "dtype": dtype_name, "layout": layout,
        "flops": roofline.flops(case, direction), "min_bytes": roofline.min_bytes(case, direction, itemsize),
        "status": "ok", "passed": True, "message": "",
    }
    if dtype not in supported:
        row.update(status="not supported", passed=None,
                   message=f"cnnfast has no {dtype_name} kernels on {torch.device(device).type}")
        return row
    peak_flops = peaks["flops"].get(dtype_name)
    peak_bytes = peaks["bytes"]
    try:
        prepared = Prepared(case, direction, dtype, layout, device, seed)
        row["error"] = check(prepared, impl, ref_impl)
        row["passed"] = bool(row["error"]["passed"])
        if not row["passed"]:
            row.update(status="fail", message=row["error"]["message"])
        if time_it:
            fa, fb = prepared.fn(impl), prepared.fn(ref_impl)
            sa, sb, inner = timing.interleaved(fa, fb, device, repeat, warmup)
            row["cnnfast"], row["reference"] = timing.summary(sa), timing.summary(sb)
            row["inner"] = inner
            t_a, t_b = row["cnnfast"]["median_s"], row["reference"]["median_s"]
            row["speedup"] = t_b / t_a if t_a > 0 else None
            compute = roofline.is_compute_op(case)
            row["rate_unit"] = "GFLOP/s" if compute else "GB/s"
            amount = row["flops"] if compute else row["min_bytes"]
            row["cnnfast_rate"] = amount / t_a / 1e9
            row["reference_rate"] = amount / t_b / 1e9
            peak = peak_flops if compute else peak_bytes
            row["pct_peak"] = 100.0 * amount / t_a / peak if peak else None
            if peak_flops:
                floor = roofline.case_floor(case, direction, itemsize, peak_flops, peak_bytes)
                row["floor_s"] = floor
                row["bound"] = roofline.bound(case, direction, itemsize, peak_flops, peak_bytes)
                row["cnnfast_x_floor"] = t_a / floor if floor > 0 else None
                row["reference_x_floor"] = t_b / floor if floor > 0 else None
    except Exception as e:  # a crash is a failing row, reported, not the end of the run
        row.update(status="error", passed=False, message=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return row
