"""Bad input gets a clear error naming the argument and its value, raised before any output is written."""
import os
import subprocess
import sys

import pytest
import torch

import cnnfast

F = cnnfast.functional


def x4(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype) if dtype.is_floating_point else torch.ones(*shape, dtype=dtype)


CONV_ERRORS = [
    # (what, call, words the message must contain)
    ("input rank", lambda: F.conv2d(x4(3, 8), x4(4, 3, 3, 3)), ["3D (unbatched) or 4D (batched)", "[3, 8]"]),
    ("weight rank", lambda: F.conv2d(x4(1, 3, 8, 8), x4(4, 3, 3)), ["4D weight", "[4, 3, 3]"]),
    ("channels vs weight x groups", lambda: F.conv2d(x4(1, 3, 8, 8), x4(4, 2, 3, 3)),
     ["groups=1", "to have 2 channels, but got 3 channels"]),
    ("groups divides out channels", lambda: F.conv2d(x4(1, 4, 8, 8), x4(3, 2, 3, 3), groups=2),
     ["groups=2", "divisible by 2", "[3, 2, 3, 3]"]),
    ("groups divides in channels", lambda: F.conv2d(x4(1, 5, 8, 8), x4(4, 2, 3, 3), groups=2),
     ["groups=2", "to have 4 channels, but got 5"]),
    ("groups positive", lambda: F.conv2d(x4(1, 4, 8, 8), x4(4, 4, 3, 3), groups=0), ["groups=0"]),
    ("stride positive", lambda: F.conv2d(x4(1, 3, 8, 8), x4(4, 3, 3, 3), stride=(1, 0)), ["stride", "[1, 0]"]),
    ("dilation positive", lambda: F.conv2d(x4(1, 3, 8, 8), x4(4, 3, 3, 3), dilation=0), ["dilation", "[0, 0]"]),
    ("padding non-negative", lambda: F.conv2d(x4(1, 3, 8, 8), x4(4, 3, 3, 3), padding=(-1, 0)),
     ["negative padding", "[-1, 0]"]),
    ("kernel larger than padded input", lambda: F.conv2d(x4(1, 3, 2, 2), x4(4, 3, 3, 3)),
     ["padded input size", "(2 x 2)", "(3 x 3)"]),
    ("dilated kernel larger than padded input", lambda: F.conv2d(x4(1, 3, 5, 5), x4(4, 3, 3, 3), dilation=3),
     ["(5 x 5)", "(7 x 7)"]),
    ("weight dtype", lambda: F.conv2d(x4(1, 3, 8, 8), x4(4, 3, 3, 3, dtype=torch.float64)),
     ["weight.dtype=Double", "input.dtype=Float"]),
    ("bias dtype", lambda: F.conv2d(x4(1, 3, 8, 8), x4(4, 3, 3, 3), x4(4, dtype=torch.float64)),
     ["bias.dtype=Double"]),
    ("bias size", lambda: F.conv2d(x4(1, 3, 8, 8), x4(4, 3, 3, 3), x4(5)), ["bias", "4 elements", "[5]"]),
    ("weight device", lambda: F.conv2d(x4(1, 3, 8, 8), x4(4, 3, 3, 3).to("meta")), ["same device", "meta"]),
    ("integer dtype", lambda: F.conv2d(x4(1, 3, 8, 8, dtype=torch.int32), x4(4, 3, 3, 3, dtype=torch.int32)),
     ["input has dtype Int", "Float, Double"]),
    ("bool dtype", lambda: F.conv2d(x4(1, 3, 8, 8, dtype=torch.bool), x4(4, 3, 3, 3, dtype=torch.bool)),
     ["input has dtype Bool"]),
    ("half dtype on CPU", lambda: F.conv2d(x4(1, 3, 8, 8, dtype=torch.float16), x4(4, 3, 3, 3, dtype=torch.float16)),
     ["input has dtype Half", "cpu"]),
    ("stride tuple length", lambda: F.conv2d(x4(1, 3, 8, 8), x4(4, 3, 3, 3), stride=(1, 1, 1)),
     ["stride", "(1, 1, 1)"]),
]


@pytest.mark.parametrize("op", [F.conv2d, F.conv2d_relu], ids=["conv2d", "conv2d_relu"])
@pytest.mark.parametrize("what,call,words", CONV_ERRORS, ids=[c[0] for c in CONV_ERRORS])
def test_conv2d_bad_input(op, what, call, words):
    # The table is written against conv2d; run each call through `op` by swapping the module attribute.
    original = F.conv2d
    try:
        F.conv2d = op
        with pytest.raises((RuntimeError, TypeError)) as info:
            call()
    finally:
        F.conv2d = original
    for w in words:
        assert w in str(info.value), f"{what}: {w!r} not in {info.value}"


def _add_relu(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """conv2d_add_relu with a residual of the right shape when torch can give one (the conv2d table's
    calls then fail on the same argument), else of any shape."""
    try:
        shape = torch.nn.functional.conv2d(x.float(), w.float(), None, stride, padding, dilation, groups).shape
    except Exception:
        shape = (1,)
    return F.conv2d_add_relu(x, w, b, torch.randn(shape, dtype=x.dtype if x.dtype.is_floating_point else None),
                             stride, padding, dilation, groups)


@pytest.mark.parametrize("what,call,words", CONV_ERRORS, ids=[c[0] for c in CONV_ERRORS])
def test_conv2d_add_relu_bad_conv_arguments(what, call, words):
    original = F.conv2d
    try:
        F.conv2d = _add_relu
        with pytest.raises((RuntimeError, TypeError, ValueError)) as info:
            call()
    finally:
        F.conv2d = original
    for w in words:
        assert w in str(info.value), f"{what}: {w!r} not in {info.value}"


@pytest.mark.parametrize("what,residual,words", [
    ("size", x4(2, 4, 6, 5), ["cnnfast::conv2d_add_relu", "residual", "[2, 4, 6, 6]", "[2, 4, 6, 5]"]),
    ("broadcast size", x4(1, 4, 1, 1), ["residual", "[2, 4, 6, 6]", "[1, 4, 1, 1]"]),
    ("dtype", x4(2, 4, 6, 6, dtype=torch.float64), ["residual.dtype=Double", "input.dtype=Float"]),
    ("device", torch.empty(2, 4, 6, 6, device="meta"), ["residual", "same device", "meta"]),
])
def test_conv2d_add_relu_bad_residual(what, residual, words):
    x, w = x4(2, 3, 8, 8), x4(4, 3, 3, 3)
    for call in (lambda: F.conv2d_add_relu(x, w, None, residual),
                 lambda: torch.ops.cnnfast.conv2d_add_relu(x, w, None, residual, [1, 1], [0, 0], [1, 1], 1)):
        with pytest.raises(RuntimeError) as info:
            call()
        for word in words:
            assert word in str(info.value), f"{what}: {word!r} not in {info.value}"


def test_conv2d_padding_string_errors():
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        F.conv2d(x4(1, 3, 8, 8), x4(4, 3, 3, 3), stride=2, padding="same")
    with pytest.raises(ValueError, match="invalid padding string 'full'"):
        F.conv2d(x4(1, 3, 8, 8), x4(4, 3, 3, 3), padding="full")


POOL_ERRORS = [
    ("input rank", lambda: F.max_pool2d(x4(3, 8), 2), ["3D (unbatched) or 4D (batched)", "[3, 8]"]),
    ("empty channels", lambda: F.max_pool2d(x4(2, 0, 8, 8), 2), ["non-zero C, H and W", "[2, 0, 8, 8]"]),
    ("kernel positive", lambda: F.max_pool2d(x4(1, 3, 8, 8), 0), ["kernel_size", "[0, 0]"]),
    ("stride positive", lambda: F.max_pool2d(x4(1, 3, 8, 8), 2, stride=0), ["stride", "[0, 0]"]),
    ("dilation positive", lambda: F.max_pool2d(x4(1, 3, 8, 8), 2, dilation=(1, 0)), ["dilation", "[1, 0]"]),
    ("padding non-negative", lambda: F.max_pool2d(x4(1, 3, 8, 8), 3, padding=-1), ["negative padding", "[-1, -1]"]),
    ("padding over half the window", lambda: F.max_pool2d(x4(1, 3, 8, 8), 2, padding=2),
     ["at most half", "padding=[2, 2]", "kernel_size=[2, 2]"]),
    ("window larger than padded input", lambda: F.max_pool2d(x4(1, 3, 2, 2), 3),
     ["(3x2x2)", "(3x0x0)", "too small"]),
    ("integer dtype", lambda: F.max_pool2d(x4(1, 3, 8, 8, dtype=torch.int64), 2), ["input has dtype Long"]),
]


@pytest.mark.parametrize("what,call,words", POOL_ERRORS, ids=[c[0] for c in POOL_ERRORS])
def test_max_pool2d_bad_input(what, call, words):
    with pytest.raises(RuntimeError) as info:
        call()
    for w in words:
        assert w in str(info.value), f"{what}: {w!r} not in {info.value}"


def test_relu_bad_dtype():
    with pytest.raises(RuntimeError, match="input has dtype Int"):
        F.relu(torch.ones(3, dtype=torch.int32))
    with pytest.raises(RuntimeError, match="input has dtype Bool"):
        F.relu(torch.ones(3, dtype=torch.bool), inplace=True)


def test_backward_ops_check_their_arguments():
    x, w = x4(2, 3, 8, 8), x4(4, 3, 3, 3)
    with pytest.raises(RuntimeError, match=r"grad_output .*\[2, 4, 6, 6\].*\[2, 4, 5, 5\]"):
        torch.ops.cnnfast.conv2d_backward(x4(2, 4, 5, 5), x, w, [1, 1], [0, 0], [1, 1], 1, [True, True, True])
    with pytest.raises(RuntimeError, match="grad_output.dtype=Double"):
        torch.ops.cnnfast.relu_backward(x4(3, dtype=torch.float64), x4(3))
    _, idx = torch.ops.cnnfast.max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], False)
    with pytest.raises(RuntimeError, match=r"indices must lie in \[0, H\*W\) = \[0, 64\)"):
        torch.ops.cnnfast.max_pool2d_backward(x4(2, 3, 4, 4), x, idx + 64, [2, 2], [2, 2], [0, 0], [1, 1], False)
    with pytest.raises(RuntimeError, match=r"grad_output .*the pooling's output, \[2, 3, 4, 4\].*\[2, 3, 5, 5\]"):
        torch.ops.cnnfast.max_pool2d_backward(x4(2, 3, 5, 5), x, idx, [2, 2], [2, 2], [0, 0], [1, 1], False)


def test_a_failed_call_writes_nothing():
    # In-place ReLU on an unsupported dtype must leave the input untouched.
    x = torch.tensor([-1, 2, -3], dtype=torch.int32)
    with pytest.raises(RuntimeError):
        F.relu(x, inplace=True)
    assert x.tolist() == [-1, 2, -3]
    # A bad max_pool2d backward (indices out of range) must not partially fill anything either: it
    # returns no tensor at all, and the gradient it was given is unchanged.
    gy = torch.ones(1, 1, 2, 2)
    with pytest.raises(RuntimeError):
        torch.ops.cnnfast.max_pool2d_backward(gy, x4(1, 1, 4, 4), torch.full((1, 1, 2, 2), 99), [2, 2], [2, 2],
                                              [0, 0], [1, 1], False)
    assert torch.equal(gy, torch.ones(1, 1, 2, 2))


# Second derivatives are not implemented: a gradient taken with create_graph=True keeps its value, and
# differentiating it again raises an error naming the op (never a silent zero).
DOUBLE_BACKWARD = {
    "conv2d": lambda x, w: cnnfast.functional.conv2d(x, w, padding=1),
    "conv2d_relu": lambda x, w: cnnfast.functional.conv2d_relu(x, w, padding=1),
    "conv2d_add_relu": lambda x, w: cnnfast.functional.conv2d_add_relu(x, w, None, x[:, :1].expand(-1, 4, -1, -1) * w.sum(), padding=1),
    "conv2d_relu_max_pool2d": lambda x, w: cnnfast.functional.conv2d_relu_max_pool2d(x, w, padding=1, kernel_size=2),
    "max_pool2d": lambda x, w: cnnfast.functional.max_pool2d(x * w.sum(), 2),
    "relu": lambda x, w: cnnfast.functional.relu(x * w.sum()),
}
REFERENCE = {
    "conv2d": lambda x, w: torch.nn.functional.conv2d(x, w, padding=1),
    "conv2d_relu": lambda x, w: torch.relu(torch.nn.functional.conv2d(x, w, padding=1)),
    "conv2d_add_relu": lambda x, w: torch.relu(torch.nn.functional.conv2d(x, w, padding=1) + x[:, :1].expand(-1, 4, -1, -1) * w.sum()),
    "conv2d_relu_max_pool2d": lambda x, w: torch.nn.functional.max_pool2d(
        torch.relu(torch.nn.functional.conv2d(x, w, padding=1)), 2),
    "max_pool2d": lambda x, w: torch.nn.functional.max_pool2d(x * w.sum(), 2),
    "relu": lambda x, w: torch.relu(x * w.sum()),
}


@pytest.mark.parametrize("op", list(DOUBLE_BACKWARD))
def test_double_backward_raises_instead_of_a_silent_zero(op):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(DOUBLE_BACKWARD[op](x, w).pow(2).sum(), x, create_graph=True)
    (expected,) = torch.autograd.grad(REFERENCE[op](x, w).pow(2).sum(), x)
    torch.testing.assert_close(gx, expected)  # float64, the same sums: the first order is unchanged
    assert gx.requires_grad
    with pytest.raises(RuntimeError, match=f"cnnfast::{op}: second derivatives"):
        gx.sum().backward()


# The environment variables seed cnnfast.backends.cpu once, at import: a value outside the documented
# ones is an error (ValueError) naming the variable and the value, raised by `import cnnfast` (never
# silently the default); a variable of an earlier release names its successor.
def import_with(var, value):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNFAST_CPU_")}
    env[var] = value
    code = ("import torch, cnnfast; from cnnfast import functional as F; "
            "F.conv2d(torch.randn(16, 1, 12, 12), torch.randn(4, 1, 5, 5)); F.relu(torch.randn(4, 4)); "
            "print(repr(cnnfast.backends.cpu))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("var, value, words", [
    ("CNNFAST_CPU_CAPABILITY", "sse2", ["CNNFAST_CPU_CAPABILITY", "avx512, avx2 or default", "'sse2'"]),
    ("CNNFAST_CPU_CAPABILITY", "avx-512", ["'avx-512'"]),
    ("CNNFAST_CPU_WINOGRAD", "yes", ["CNNFAST_CPU_WINOGRAD", "0 (never), 1", "'yes'"]),
    ("CNNFAST_CPU_IMAGES_PER_VECTOR", "2", ["CNNFAST_CPU_IMAGES_PER_VECTOR", "'2'"]),
    ("CNNFAST_CPU_OUTPUT_CACHE_MB", "-1", ["CNNFAST_CPU_OUTPUT_CACHE_MB", "megabytes >= 0", "'-1'"]),
    ("CNNFAST_CPU_BATCH16", "1", ["CNNFAST_CPU_BATCH16 was renamed CNNFAST_CPU_IMAGES_PER_VECTOR"]),
    ("CNNFAST_CPU_CACHE_MB", "0", ["CNNFAST_CPU_CACHE_MB was renamed CNNFAST_CPU_OUTPUT_CACHE_MB"]),
])
def test_a_bad_environment_switch_is_a_clear_error(var, value, words):
    out = import_with(var, value)
    assert out.returncode != 0
    assert "ValueError" in out.stderr
    for w in words:
        assert w in out.stderr, out.stderr


@pytest.mark.parametrize("var, value, shown", [
    ("CNNFAST_CPU_CAPABILITY", "AVX2", "capability='avx2'"), ("CNNFAST_CPU_WINOGRAD", "auto", "winograd='auto'"),
    ("CNNFAST_CPU_IMAGES_PER_VECTOR", "", "images_per_vector='auto'"),
    ("CNNFAST_CPU_WINOGRAD", "0", "winograd='off'"), ("CNNFAST_CPU_IMAGES_PER_VECTOR", "on", "images_per_vector='on'"),
    ("CNNFAST_CPU_OUTPUT_CACHE_MB", "64", "output_cache_mb=64"),
])
def test_documented_environment_values_are_accepted(var, value, shown):
    out = import_with(var, value)
    assert out.returncode == 0, out.stderr
    if var != "CNNFAST_CPU_CAPABILITY" or cnnfast.backends.cpu.supported_capability != "default":
        assert shown in out.stdout
