"""The CPU kernels' SIMD paths (AVX-512, AVX2, portable), chosen at run time by what the CPU supports
and lowered with cnnfast.backends.cpu.capability (seeded from CNNFAST_CPU_CAPABILITY at import): the
choice itself, `cnnfast info`, and every path against torch (forward and all gradients, through the
project's one tolerance rule) and bit-identical for any thread count. The setting is read at each op
call, so one process can run every path."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import cnnfast
from reference import assert_bit_identical_for_thread_counts
from test_conv2d import GRID, conv, run_conv_case
from test_conv2d_relu import fused, reference

ORDER = ["default", "avx2", "avx512"]
BEST = cnnfast.backends.cpu.supported_capability
PATHS = [pytest.param(c, marks=pytest.mark.skipif(ORDER.index(c) > ORDER.index(BEST), reason=f"CPU lacks {c}"))
         for c in ORDER]


def fresh_process(code, **env):
    """Runs `code` in a new interpreter with the environment variables `env` set (None: unset)."""
    full = {k: v for k, v in os.environ.items() if k not in env}
    full.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full)


def test_best_capability_is_known_and_matches_the_cpu():
    assert BEST in ORDER
    flags = open("/proc/cpuinfo").read() if sys.platform.startswith("linux") else ""
    if " avx512f " in flags and " avx512bw " in flags and " avx512vl " in flags and " avx512dq " in flags:
        assert BEST == "avx512"
    elif " avx2 " in flags and " fma " in flags:
        assert BEST == "avx2"


@pytest.mark.parametrize("want", ORDER)
def test_the_setting_lowers_but_never_raises_the_path(monkeypatch, want):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", want)
    assert cnnfast.backends.cpu.capability == ORDER[min(ORDER.index(want), ORDER.index(BEST))]
    assert cnnfast.backends.cpu.supported_capability == BEST


@pytest.mark.parametrize("bad", ["bogus", "AVX2", "", None, 2])
def test_an_unknown_value_is_an_error_naming_it(bad):
    before = cnnfast.backends.cpu.capability
    with pytest.raises(ValueError, match=r"cnnfast.backends.cpu.capability must be 'avx512', 'avx2' or 'default', "
                                         r"got " + repr(bad).replace("(", r"\(")):
        cnnfast.backends.cpu.capability = bad
    assert cnnfast.backends.cpu.capability == before


def test_flags_restores_the_settings():
    cpu = cnnfast.backends.cpu
    before = (cpu.capability, cpu.winograd, cpu.images_per_vector, cpu.output_cache_mb)
    with cpu.flags(capability="default", winograd="off", images_per_vector=True, output_cache_mb=0):
        assert (cpu.capability, cpu.winograd, cpu.images_per_vector, cpu.output_cache_mb) == ("default", "off", "on", 0)
    assert (cpu.capability, cpu.winograd, cpu.images_per_vector, cpu.output_cache_mb) == before
    with pytest.raises(ValueError, match="images_per_vector must be 'auto', 'on' or 'off'.*got '1'"):
        with cpu.flags(images_per_vector="1"):
            pass
    assert cpu.images_per_vector == before[2]
    with pytest.raises(TypeError, match="unknown settings \\['batch16'\\]"):
        with cpu.flags(batch16="on"):
            pass
    with pytest.raises(AttributeError, match="no setting 'winogard'"):
        cpu.winogard = "on"


def test_dtypes_come_from_the_extension():
    assert cnnfast.backends.cpu.dtypes == (torch.float32, torch.float64)
    assert cnnfast.ops.supported_dtypes("cpu") == (torch.float32, torch.float64)


def test_info_shows_the_chosen_capability(monkeypatch):
    from cnnfast import info

    monkeypatch.setattr(cnnfast.backends.cpu, "capability", "default")
    assert any(line.startswith("CPU capability (cnnfast's): default") for line in info.info_lines())
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", "avx512")
    assert any(line.startswith(f"CPU capability (cnnfast's): {BEST}") for line in info.info_lines())


def test_info_in_a_fresh_process_with_the_variable_set():
    env = dict(os.environ, CNNFAST_CPU_CAPABILITY="default")
    out = subprocess.run([sys.executable, "-m", "cnnfast", "info"], capture_output=True, text=True, env=env,
                         check=True).stdout
    assert "CPU capability (cnnfast's): default" in out


@pytest.mark.parametrize("value, want", [("AVX2", "avx2"), ("default", "default"), ("", BEST)])
def test_the_variable_seeds_the_setting_once_at_import(value, want):
    out = fresh_process("import os, cnnfast; os.environ['CNNFAST_CPU_CAPABILITY'] = 'default'; "
                        "print(cnnfast.backends.cpu.capability)", CNNFAST_CPU_CAPABILITY=value)
    assert out.returncode == 0, out.stderr
    # Lowered to what the CPU supports; changing the variable after import changes nothing.
    assert out.stdout.strip() == ORDER[min(ORDER.index(want), ORDER.index(BEST))]


# Shapes that reach every edge of the register blocking: rows 1..6 past a block of 6, column tails of
# every width up to 15, reductions past the 256-long slice (C*R*S = 288, 576), 1x1 pointwise B,
# strided grad-input through col2im, groups, dilation, and a batch-1 split over output channels.
BLOCK_CASES = [
    (2, 32, 9, 7, 13, 3, 1, 1, 1, 1),        # 63 pixels, 13 rows, reduction 288 (two slices)
    (1, 64, 8, 8, 64, 3, 1, 1, 1, 1),        # one 64-pixel tile, reduction 576
    (2, 16, 5, 3, 7, 1, 1, 0, 1, 1),         # pointwise, 15 pixels (masked tail)
    (3, 8, 11, 11, 17, 3, 2, 1, 1, 1),       # stride 2: col2im grad-input
    (2, 12, 10, 9, 10, 3, 1, 2, 2, 2),       # dilation, groups
    (1, 4, 7, 7, 50, 3, 1, 1, 1, 1),         # batch 1, 49 pixels: output channels split over threads
]

# Grad-weight's dot-product form (<= 16 output channels per group): row and tap tails of its register
# block (4 x 6 on AVX-512, 3 x 4 on AVX2), several samples per call with a remainder, several pixel
# tiles per sample, stride (phase layout), dilation and groups.
DOT_CASES = [
    (5, 1, 28, 28, 6, 5, 1, 2, 1, 1),        # LeNet conv1: 6 channels, 25 taps
    (7, 6, 14, 14, 16, 5, 1, 0, 1, 1),       # LeNet conv2: 2 samples per call, 7 = 3 x 2 + 1
    (2, 3, 30, 30, 16, 3, 1, 1, 1, 1),       # 958 pixels per sample: three tiles, the last partial
    (3, 4, 9, 9, 1, 3, 2, 1, 1, 1),          # one channel, stride 2
    (2, 8, 12, 12, 8, 3, 1, 2, 2, 2),        # dilation 2, groups 2 (4 channels per group)
]


# winograd "0" keeps the direct path's GEMM blocking covered on the 3x3 stride-1 cases that the default
# rule sends to Winograd (tests/test_conv2d_winograd.py covers that one).
@pytest.mark.parametrize("winograd", ["off", None])
@pytest.mark.parametrize("case", GRID[:4] + GRID[-2:] + BLOCK_CASES + DOT_CASES)
@pytest.mark.parametrize("path", PATHS)
def test_every_path_matches_torch(monkeypatch, path, case, winograd):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    if winograd is not None:
        monkeypatch.setattr(cnnfast.backends.cpu, "winograd", winograd)
    assert cnnfast.backends.cpu.capability == path
    n, c, h, w, k, kernel, stride, padding, dilation, groups = case
    run_conv_case(conv, F.conv2d, n, c, h, w, k, kernel, stride, padding, dilation, groups)


# The stride-2 phase split of the direct path's input (csrc/cpu/conv2d/direct.cpp, padded_input: on AVX-512 a row's
# columns are split by parity with permutes, 32 at a time): every parity of the padding, widths around
# the 32-column step, and kernel widths that read both phases (3, 2) or one (1).
PHASE_SPLIT = [(w, pad, kw) for w in (1, 2, 15, 16, 31, 32, 33, 64, 70) for pad in (0, 1, 2, 3) for kw in (1, 2, 3)
               if w + 2 * pad >= kw]


@pytest.mark.parametrize("path", PATHS)
def test_every_path_stride2_phase_split(monkeypatch, path):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    monkeypatch.setattr(cnnfast.backends.cpu, "images_per_vector", "off")
    for w, pad, kw in PHASE_SPLIT:
        run_conv_case(conv, F.conv2d, 2, 3, 5, w, 4, (3, kw), 2, (1, pad), 1, 1, seed=w * 16 + pad * 4 + kw)


@pytest.mark.parametrize("path", PATHS)
def test_every_path_fused_relu_and_channels_last(monkeypatch, path):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    run_conv_case(fused, reference, 2, 32, 9, 7, 13, 3, 1, 1, 1, 1)
    run_conv_case(fused, reference, 2, 6, 14, 14, 16, 5, 1, 0, 1, 1, fmt="channels_last")


# (The rule leaves these 8-channel groups to the direct path; "on" takes Winograd with groups.)
@pytest.mark.parametrize("winograd", ["off", None, "on"])
@pytest.mark.parametrize("path", PATHS)
def test_every_path_bit_identical_for_any_thread_count(monkeypatch, path, winograd):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    if winograd is not None:
        monkeypatch.setattr(cnnfast.backends.cpu, "winograd", winograd)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 32, 9, 11, generator=g, requires_grad=True)
    w = torch.randn(20, 16, 3, 3, generator=g, requires_grad=True)
    b = torch.randn(20, generator=g, requires_grad=True)

    def run():
        outs = []
        # (batch 1 and stride 2: grad-input cuts the input channels into chunks when there are fewer
        # (sample, group) items than two per thread)
        for xs, stride in ((x, 1), (x, 2), (x[:1], 2)):
            y = cnnfast.functional.conv2d_relu(xs, w, b, stride=stride, padding=1, groups=2)
            outs += [y, *torch.autograd.grad(y, (x, w, b), torch.ones_like(y))]
        return outs

    assert_bit_identical_for_thread_counts(run)


@pytest.mark.parametrize("path", PATHS)
def test_every_path_float64_takes_the_portable_kernel_exactly(monkeypatch, path):
    # float64 has no SIMD path: every capability gives the same bits.
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 5, 8, 8, generator=g, dtype=torch.float64)
    w = torch.randn(7, 5, 3, 3, generator=g, dtype=torch.float64)
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", "default")
    expected = cnnfast.functional.conv2d(x, w, padding=1)
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    assert torch.equal(cnnfast.functional.conv2d(x, w, padding=1), expected)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n", [1, 7, 8, 15, 16, 17, 100, 70001])
def test_every_path_relu_and_its_gradient_exact(monkeypatch, path, n):
    monkeypatch.setattr(cnnfast.backends.cpu, "capability", path)
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, generator=g)
    x[:: 5] = -0.0
    x[1:: 7] = float("nan")
    x[2:: 11] = float("-inf")
    y = torch.ops.cnnfast.relu(x)
    assert torch.equal(y.isnan(), torch.relu(x).isnan())
    assert torch.equal(torch.nan_to_num(y), torch.nan_to_num(torch.relu(x)))
    assert torch.equal(torch.signbit(y), torch.signbit(torch.relu(x)))  # -0.0 kept, as clamp_min
    gy = torch.randn(n, generator=g)
    expected = torch.ops.aten.threshold_backward(gy, torch.relu(x), 0)  # torch's rule: NaN passes, +-0 not
    assert torch.equal(torch.ops.cnnfast.relu_backward(gy, y), expected)
