"""cnnfast bench: suite extraction, roofline arithmetic, the comparator, the JSON schema, the CLI's
argument errors, predictions, and a small real run on the CPU."""
import argparse
import io
import json

import pytest
import torch
from torch import nn

import cnnfast  # noqa: F401  (registers the ops)
from cnnfast import bench, models, testing
from cnnfast.bench import command, report, rivals, roofline, runner, suites, timing


def parse(*argv):
    parser = argparse.ArgumentParser(prog="cnnfast bench")
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def summary(cases):
    return [(c.op, c.describe(), c.count) for c in cases]


# --- suites ---------------------------------------------------------------------------------------

def test_lenet_gives_its_known_cases():
    cases = suites.extract_cases(models.LeNet(fast=False), (1, 28, 28), "lenet", batch=4)
    assert summary(cases) == [
        ("conv2d", "4x1x28x28 w6x1x5x5+b s1 p2", 1),
        ("conv2d_relu", "4x1x28x28 w6x1x5x5+b s1 p2", 1),
        ("relu", "4x6x28x28", 1),
        ("max_pool2d", "4x6x28x28 k2 s2 p0", 1),
        ("conv2d_relu_max_pool2d", "4x1x28x28 w6x1x5x5+b s1 p2 + k2 s2 p0", 1),
        ("conv2d", "4x6x14x14 w16x6x5x5+b s1 p0", 1),
        ("conv2d_relu", "4x6x14x14 w16x6x5x5+b s1 p0", 1),
        ("relu", "4x16x10x10", 1),
        ("max_pool2d", "4x16x10x10 k2 s2 p0", 1),
        ("conv2d_relu_max_pool2d", "4x6x14x14 w16x6x5x5+b s1 p0 + k2 s2 p0", 1),
        ("relu", "4x120", 1),
        ("relu", "4x84", 1),
        ("model", "4x1x28x28 LeNet", 1),
        ("model", "4x1x28x28 LeNet fused", 1),
    ]
    assert cases[0].p["output"] == (4, 6, 28, 28)
    assert cases[5].p["output"] == (4, 16, 10, 10)
    assert cases[4].p["output"] == (4, 6, 14, 14) and cases[4].p["conv_output"] == (4, 6, 28, 28)
    # the model cases (converted, and converted with fuse=True): their layers (without the fusion
    # cases) and the linear layers' FLOPs
    for model, fuse in zip(cases[-2:], (False, True)):
        assert model.p["fuse"] is fuse
        assert [layer.op for layer, _ in model.p["layers"]] == [
            c.op for c in cases[:-2] if c.op not in ("conv2d_relu", "conv2d_relu_max_pool2d", "model")]
        assert model.p["linear_flops"] == 2 * 4 * (400 * 120 + 120 * 84 + 84 * 10)


def test_distinct_cases_of_a_small_model_with_batchnorm_and_reuse():
    torch.manual_seed(0)
    relu = nn.ReLU()  # one module used twice
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), relu,
        nn.Conv2d(8, 8, 3, padding=1), relu,
        nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
    )
    cases = suites.extract_cases(model, (3, 16, 16), "toy", batch=2)
    assert summary(cases) == [
        ("conv2d", "2x3x16x16 w8x3x3x3 s1 p1", 1),
        ("relu", "2x8x16x16", 3),  # BatchNorm sits between: no conv2d_relu for the first conv
        ("conv2d", "2x8x16x16 w8x8x3x3+b s1 p1", 2),
        ("conv2d_relu", "2x8x16x16 w8x8x3x3+b s1 p1", 2),
        ("max_pool2d", "2x8x16x16 k3 s2 p1 ceil", 1),
        # the pool reads the last conv's ReLU output: the fused op's case
        ("conv2d_relu_max_pool2d", "2x8x16x16 w8x8x3x3+b s1 p1 + k3 s2 p1 ceil", 1),
        ("model", "2x3x16x16 Sequential", 1),
        ("model", "2x3x16x16 Sequential fused", 1),
    ]
    assert cases[4].p["output"] == (2, 8, 9, 9)  # ceil((16 + 2 - 3) / 2) + 1
    assert len({c.id for c in cases}) == len(cases)


def test_resnet18_suite_from_torchvision():
    pytest.importorskip("torchvision")
    cases = suites.suite_cases("resnet18", batch=1)
    convs = [c for c in cases if c.op == "conv2d"]
    assert len(convs) == 11 and sum(c.count for c in convs) == 20
    assert convs[0].describe() == "1x3x224x224 w64x3x7x7 s2 p3"
    pools = [c for c in cases if c.op == "max_pool2d"]
    assert [c.describe() for c in pools] == ["1x64x112x112 k3 s2 p1"]
    relus = [c for c in cases if c.op == "relu"]
    assert len(relus) == 5 and sum(c.count for c in relus) == 17
    assert not [c for c in cases if c.op == "conv2d_relu"]  # BatchNorm after every conv


def test_suite_cases_filter_ops_and_batch():
    cases = suites.suite_cases("lenet", batch=3, ops=("max_pool2d",))
    assert [c.describe() for c in cases] == ["3x6x28x28 k2 s2 p0", "3x16x10x10 k2 s2 p0"]
    with pytest.raises(ValueError, match="unknown suite"):
        suites.suite_cases("vgg")


# --- roofline -------------------------------------------------------------------------------------

def _case(op, **params):
    return suites.Case("t", op, tuple(sorted(params.items())))


CONV = _case("conv2d", input=(64, 1, 28, 28), weight=(6, 1, 5, 5), bias=True, stride=(1, 1), padding=(2, 2),
             dilation=(1, 1), groups=1, output=(64, 6, 28, 28))


def test_conv_flops_and_bytes_by_hand():
    # 2*N*K*P*Q*(C/g)*R*S = 2*64*6*28*28*1*5*5
    assert roofline.flops(CONV, "fwd") == 15_052_800
    assert roofline.flops(CONV, "bwd") == 2 * 15_052_800
    assert roofline.flops(CONV, "fwdbwd") == 3 * 15_052_800
    # input 50176 + weight 150 + bias 6 + output 301056 elements, 4 bytes each
    assert roofline.min_bytes(CONV, "fwd", 4) == 4 * 351_388
    # backward: read dy (301056), x (50176), w (150); write dx (50176), dw (150), db (6)
    assert roofline.min_bytes(CONV, "bwd", 4) == 4 * 401_714
    assert roofline.min_bytes(CONV, "fwdbwd", 8) == 8 * (351_388 + 401_714)
    # floor at 1 TFLOP/s and 100 GB/s: compute 15.05 us > memory 14.06 us
    assert roofline.case_floor(CONV, "fwd", 4, 1e12, 1e11) == pytest.approx(15.0528e-6)
    assert roofline.bound(CONV, "fwd", 4, 1e12, 1e11) == "compute"
    assert roofline.bound(CONV, "fwd", 4, 1e12, 1e10) == "memory"


def test_grouped_conv_and_pool_and_relu_by_hand():
    grouped = _case("conv2d_relu", input=(2, 8, 10, 10), weight=(4, 2, 3, 3), bias=False, stride=(1, 1),
                    padding=(0, 0), dilation=(1, 1), groups=4, output=(2, 4, 8, 8))
    assert roofline.flops(grouped, "fwd") == 2 * 2 * 4 * 8 * 8 * 2 * 3 * 3
    # conv2d_relu's backward also reads the output (the ReLU mask)
    assert roofline.min_bytes(grouped, "bwd", 4) == 4 * (512 + 1600 + 72 + 1600 + 72 + 512)
    pool = _case("max_pool2d", input=(1, 2, 4, 4), kernel_size=(2, 2), stride=(2, 2), padding=(0, 0),
                 dilation=(1, 1), ceil_mode=False, output=(1, 2, 2, 2))
    assert roofline.flops(pool, "fwd") == 8 * 4
    assert roofline.min_bytes(pool, "fwd", 4) == 4 * (32 + 8)
    fused = _case("conv2d_relu_max_pool2d", input=(2, 8, 10, 10), weight=(4, 2, 3, 3), bias=True, stride=(1, 1),
                  padding=(0, 0), dilation=(1, 1), groups=4, conv_output=(2, 4, 8, 8), output=(2, 4, 4, 4),
                  kernel_size=(2, 2), pool_stride=(2, 2), pool_padding=(0, 0), pool_dilation=(1, 1), ceil_mode=False)
    assert roofline.flops(fused, "fwdbwd") == 3 * roofline.flops(grouped, "fwd")  # the convolution's
    # the pooled output (128) in place of the convolution's (512): x 1600, w 72, b 4
    assert roofline.min_bytes(fused, "fwd", 4) == 4 * (1600 + 72 + 4 + 128)
    assert roofline.min_bytes(fused, "bwd", 4) == 4 * (2 * 128 + 1600 + 72 + 1600 + 72 + 4)
    # grad-weight and grad-bias sum over the convolution's output pixels, not the pooled ones
    assert runner.reduction_lengths(fused, "fwdbwd") == [2 * 3 * 3, 1 * 3 * 3, 2 * 8 * 8, 2 * 8 * 8]
    relu = _case("relu", input=(10, 10))
    assert roofline.min_bytes(relu, "fwdbwd", 2) == 2 * (200 + 300)
    assert roofline.case_floor(relu, "fwd", 4, 1e12, 1e9) == pytest.approx(800 / 1e9)


def test_datasheet_rates():
    assert roofline.gpu_peaks("a100-sxm4-80gb", "float32") == (19.5e12, 2039e9)
    assert roofline.gpu_peaks("a100-sxm4-80gb", "float32", tf32=True)[0] == 156e12
    assert roofline.gpu_peaks("a100-sxm4-80gb", "bfloat16")[0] == 312e12
    assert roofline.gpu_peaks("h100-sxm", "float16") == (989.4e12, 3350e9)
    assert roofline.gpu_peaks("h100-sxm", "float32", tf32=True)[0] == 494.7e12
    assert roofline.gpu_peaks("h100-sxm", "float32")[0] == 67e12


def test_model_floor_is_the_sum_of_its_layers():
    case = suites.suite_cases("lenet", batch=2, ops=("model",))[0]
    layers = case.p["layers"]
    expected = sum(n * roofline.case_floor(layer, "fwd", 4, 1e11, 1e10) for layer, n in layers)
    expected += case.p["linear_flops"] / 1e11
    assert roofline.case_floor(case, "fwd", 4, 1e11, 1e10) == pytest.approx(expected)


# --- the comparator -------------------------------------------------------------------------------

def _wrong_impl(delta):
    ref = runner.reference_impl()

    def conv2d(x, w, b, *args):
        return torch.nn.functional.conv2d(x, w, b, *args) + delta

    return runner.Impl("wrong", conv2d, ref.conv2d_relu, ref.max_pool2d,
                       lambda x: torch.relu(x) * (1 + delta), ref.convert)


@pytest.mark.parametrize("direction", ["fwd", "fwdbwd"])
def test_a_wrong_kernel_fails_and_the_right_one_passes(direction):
    case = _case("conv2d", input=(2, 3, 8, 8), weight=(4, 3, 3, 3), bias=True, stride=(1, 1), padding=(1, 1),
                 dilation=(1, 1), groups=1, output=(2, 4, 8, 8))
    prepared = runner.Prepared(case, direction, torch.float32, "nchw", "cpu")
    good = runner.check(prepared, runner.cnnfast_impl(), runner.reference_impl())
    assert good["passed"], good
    assert good["max_abs"] < 1e-5
    bad = runner.check(prepared, _wrong_impl(1e-3), runner.reference_impl())
    assert not bad["passed"]
    assert bad["max_abs"] == pytest.approx(1e-3, rel=1e-2)
    assert "tolerance" in bad["message"]


def test_an_exact_op_allows_no_real_error():
    relu = _case("relu", input=(4, 5))
    prepared = runner.Prepared(relu, "fwd", torch.float32, "nchw", "cpu")
    assert runner.check(prepared, runner.cnnfast_impl(), runner.reference_impl())["passed"]
    assert not runner.check(prepared, _wrong_impl(1e-5), runner.reference_impl())["passed"]


def test_compare_flags_shapes_and_nan():
    t = torch.ones(3)
    res = testing.compare([torch.ones(4)], [t], [t.double()], [1], torch.float32)
    assert not res["passed"] and "shape" in res["message"]
    res = testing.compare([torch.tensor([1.0, float("nan"), 1.0])], [t], [t.double()], [1], torch.float32)
    assert not res["passed"]


def test_a_failing_row_is_red_and_fails_the_run():
    case = suites.suite_cases("lenet", batch=2, ops=("conv2d",))[0]
    peaks = {"flops": {"float32": 1e11}, "bytes": 1e10}
    row = runner.run_case(case, "fwd", "float32", "nchw", "cpu", 1, 1, peaks, _wrong_impl(1e-2),
                          runner.reference_impl(), (torch.float32,))
    assert row["status"] == "fail" and row["passed"] is False
    good = runner.run_case(case, "fwd", "float32", "nchw", "cpu", 1, 1, peaks, runner.cnnfast_impl(),
                           runner.reference_impl(), (torch.float32,))
    assert good["status"] == "ok" and good["speedup"] > 0 and good["floor_s"] > 0
    doc = {"command": "cnnfast bench", "environment": report.environment("cpu", 2, False),
           "settings": {"batch": {"lenet": 2}, "repeat": 1, "warmup": 1}, "peaks": peaks, "rows": [good, row]}
    doc["suites"] = report.suite_summaries(doc["rows"])
    text = report.format_report(doc, color=True)
    red_lines = [line for line in text.splitlines() if line.startswith(report.RED)]
    assert any("FAIL" in line and "conv2d" in line for line in red_lines)
    assert not any(" ok" in line and "conv2d " in line for line in red_lines)
    assert doc["suites"]["lenet"]["failed"] == 1
    assert "FAILED: 1 row(s)" in text


# --- the command ----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--suite", "vgg"], "unknown 'vgg'"),
    (["--ops", "conv2d,softmax"], "unknown 'softmax'"),
    (["--direction", "sideways"], "unknown 'sideways'"),
    (["--dtype", "int8"], "unknown 'int8'"),
    (["--memory-format", "nhwc"], "unknown 'nhwc'"),
    (["--batch", "0"], "must be a positive integer"),
    (["--repeat", "two"], "not an integer"),
    (["--threads", "-1"], "must be a positive integer"),
    (["--device", "tpu"], "invalid choice"),
    (["--rivals", "onnxruntime,tvm"], "unknown 'tvm'"),
    (["--rivals", ""], "empty list"),
])
def test_argument_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        parse(*argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_defaults():
    args = parse()
    assert args.suite == ["lenet", "mnist-cnn", "resnet-cifar"]
    assert args.ops == ["conv2d", "max_pool2d", "relu", "conv2d_relu", "conv2d_relu_max_pool2d", "model"]
    assert args.direction == ["fwd", "fwdbwd"] and args.dtype == ["float32"] and args.memory_format == ["nchw"]
    assert parse("--suite", "all").suite == list(suites.SUITES)
    assert args.rivals == []
    assert parse("--rivals", "all").rivals == ["onnxruntime", "openvino", "inductor"]
    assert parse("--rivals", "inductor,onnxruntime,inductor").rivals == ["inductor", "onnxruntime"]


def test_usage_errors_at_run_time(capsys):
    assert command.main(parse("--predict")) == 2
    assert "--device cuda" in capsys.readouterr().err
    assert command.main(parse("--device", "cuda", "--predict", "--plot", "x.png")) == 2
    assert command.main(parse("--json", "/nonexistent-dir/b.json")) == 2
    assert "no directory" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert command.main(parse("--device", "cuda")) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_bench_is_a_cnnfast_command():
    from cnnfast import cli

    assert cli.COMMANDS["bench"] == "cnnfast.bench"
    assert bench.__doc__.strip().splitlines()[0]


@pytest.fixture
def quick_timing(monkeypatch):
    """Real measurements, but short: one call per sample, brief peak measurements."""
    import functools

    monkeypatch.setattr(timing, "interleaved", functools.partial(timing.interleaved, min_sample_s=0))
    monkeypatch.setattr(timing, "block", functools.partial(timing.block, min_sample_s=0))
    monkeypatch.setattr(timing, "measure_peaks", functools.partial(timing.measure_peaks, seconds=0.05))


def test_small_real_run_on_cpu(tmp_path, quick_timing):
    out = io.StringIO()
    args = parse("--device", "cpu", "--suite", "lenet", "--batch", "2", "--repeat", "2", "--warmup", "1",
                 "--direction", "fwd,bwd,fwdbwd", "--memory-format", "nchw,channels_last",
                 "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png"))
    assert command.main(args, out=out) == 0, out.getvalue()
    text = out.getvalue()
    assert "device: CPU" in text and "threads:" in text and "measured peaks" in text and "oneDNN" in text
    assert "float32 FMA" in text and f"({cnnfast.backends.cpu.capability}, " in text and "matrix product (torch.mm)" in text
    assert "threads kept busy" in text
    assert "lenet: geometric mean speed-up" in text and "all rows match the reference" in text
    assert "rival runtimes" not in text and "\nrivals: " not in text  # without --rivals: as it was
    doc = json.loads((tmp_path / "b.json").read_text())
    assert doc["settings"]["rivals"] == [] and "rivals" not in doc["environment"]
    assert not any(k in r for r in doc["rows"] for k in ("rivals", "fastest_rival"))
    assert report.validate(doc) == []
    peaks = doc["peaks"]
    assert peaks["flops_probe"] == "fma" and peaks["flops"]["float32"] == peaks["fma"]["float32"]["flops"] > 0
    assert peaks["matmul_flops"]["float32"] > 0
    # 12 layer cases x 2 layouts x 3 directions + 2 model cases x 2 layouts x 2 (no separate model backward)
    assert len(doc["rows"]) == 12 * 2 * 3 + 2 * 2 * 2
    assert all(r["passed"] for r in doc["rows"])
    row = doc["rows"][0]
    assert row["speedup"] == pytest.approx(row["reference"]["median_s"] / row["cnnfast"]["median_s"])
    assert doc["environment"]["device"] == "cpu" and doc["kind"] == "measured"
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unsupported_dtype_rows(tmp_path, quick_timing):
    out = io.StringIO()
    args = parse("--device", "cpu", "--suite", "lenet", "--batch", "1", "--repeat", "1", "--warmup", "1",
                 "--ops", "relu", "--direction", "fwd", "--dtype", "float16,float64", "--json", str(tmp_path / "b.json"))
    assert command.main(args, out=out) == 0, out.getvalue()
    doc = json.loads((tmp_path / "b.json").read_text())
    assert report.validate(doc) == []
    by_dtype = {}
    for r in doc["rows"]:
        by_dtype.setdefault(r["dtype"], set()).add(r["status"])
    assert by_dtype == {"float16": {"not supported"}, "float64": {"ok"}}
    assert "n/s" in out.getvalue()


def test_json_schema_rejects_a_broken_document():
    assert report.validate({"schema": report.SCHEMA}) != []
    doc = {"schema": report.SCHEMA, "kind": "measured", "command": "x", "environment": {}, "settings": {},
           "rows": [{"suite": "lenet"}], "suites": {}, "passed": True}
    problems = report.validate(doc)
    assert any("environment: missing 'device'" in p for p in problems)
    assert any("rows[0]: missing 'op'" in p for p in problems)
    assert "document: a measurement holds no 'peaks'" in problems
    doc["peaks"] = {"flops": {}, "flops_probe": "fma", "matmul_flops": {}, "bytes": 1.0,
                    "fma": {"float32": {"flops": 1.0, "capability": "avx2", "threads": "2", "chains": 12}}}
    problems = report.validate(doc)
    assert "peaks.fma[float32]: missing 'lanes'" in problems
    assert "peaks.fma[float32]: 'threads' is str, expected int" in problems


def test_predict_without_a_gpu(tmp_path):
    pytest.importorskip("torchvision")  # the resnet50 suite is read from torchvision's model
    out = io.StringIO()
    args = parse("--device", "cuda", "--predict", "--suite", "lenet,resnet50", "--dtype", "float32,bfloat16",
                 "--json", str(tmp_path / "p.json"))
    assert command.main(args, out=out) == 0
    text = out.getvalue()
    assert "PREDICTION ONLY" in text and "h100-sxm floor us" in text and "a100-sxm4-80gb floor us" in text
    assert " ms" not in text.split("PREDICTION ONLY")[1].split("\n\n")[1]  # no measured column
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["kind"] == "predicted" and report.validate(doc) == []
    row = next(r for r in doc["rows"] if r["op"] == "conv2d" and r["dtype"] == "float32" and r["direction"] == "fwd")
    assert row["flops"] == 2 * 64 * 6 * 28 * 28 * 1 * 5 * 5  # lenet's first conv at its default batch, 64
    assert row["min_bytes"] == 4 * (64 * 28 * 28 + 150 + 6 + 64 * 6 * 28 * 28)
    h100 = row["predicted"]["h100-sxm"]
    assert h100["floor_s"] == pytest.approx(max(row["flops"] / 67e12, row["min_bytes"] / 3350e9))
    assert h100["bound"] == "memory"
    assert not any(k in r for r in doc["rows"] for k in ("cnnfast", "reference", "speedup"))
    # float32 with TF32 off runs on FFMA: no tensor-core tile. bfloat16 forward convolutions have one.
    assert "mma" not in h100
    assert "h100-sxm tile, CTAs, waves, quantized floor us" in text
    from harness import missing  # noqa: PLC0415  (why the CUDA-on-CPU build cannot run here, or None)

    if missing is not None:
        pytest.skip(f"the tile choice needs the CUDA-on-CPU build of the engine's host code: {missing}")
    assert "mma_choice" not in doc["settings"], doc["settings"]["mma_choice"]
    bf = next(r for r in doc["rows"] if r["op"] == "conv2d" and r["dtype"] == "bfloat16" and r["direction"] == "fwd")
    mma = {g: bf["predicted"][g]["mma"] for g in ("h100-sxm", "a100-sxm4-80gb")}
    # lenet's first conv: M = 64*28*28 = 50176 pixels, K = 6 filters: the narrow 128x32 tile, 392 CTAs;
    # 132 SMs hold 132 * 2 of them at once (shared memory), 108 SMs 216.
    assert mma["h100-sxm"]["tile"] == "128x32" and mma["h100-sxm"]["ctas"] == 392
    assert mma["h100-sxm"]["waves"] == pytest.approx(392 / 264, abs=1e-3)
    assert mma["a100-sxm4-80gb"]["waves"] == pytest.approx(392 / 216, abs=1e-3)
    # two whole waves of 128x32 tiles over R*S*C = 25 padded to one 32-element slice, at 989.4 TFLOP/s
    assert mma["h100-sxm"]["quantized_floor_s"] == pytest.approx(2 * 264 * 2 * 128 * 32 * 32 / 989.4e12)
    assert all(r["predicted"]["h100-sxm"].get("mma") is None for r in doc["rows"] if r["direction"] != "fwd")


def test_pytest_benchmark_suite_runs():
    """benchmarks/ (not part of this test run) collects the same cases and runs them: here once
    each, with timing disabled, on LeNet at batch 1."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/", "-q", "-p", "no:cacheprovider", "--benchmark-disable",
         "--bench-suites", "lenet", "--bench-batch", "1", "--bench-device", "cpu"],
        cwd=root, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    n_layer_rows = 12 * 2  # LeNet's 12 layer cases x (fwd, fwdbwd)
    assert f"{(n_layer_rows + 4) * 2} passed" in proc.stdout  # + 2 model cases x 2 rows, each cnnfast and torch


def test_busy_threads_counts_working_threads():
    x = torch.randn(8, 16, 32, 32)
    w = torch.randn(32, 16, 3, 3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert timing.busy_threads(lambda: torch.nn.functional.conv2d(x, w, padding=1), seconds=0.3) == 1
    finally:
        torch.set_num_threads(threads)


# --- whole-model rows: each side against a truth that takes its ReLU branches --------------------------

def test_replayed_relu_masks_set_the_branches_and_must_pair_up():
    model = nn.Sequential(nn.ReLU(inplace=True))
    x = torch.tensor([-1.0, 2.0, -3.0, 4.0], dtype=torch.float64, requires_grad=True)
    runner._replay_relu_masks(model, [torch.tensor([True, False, False, True])])
    y = model(x.clone())
    assert y.tolist() == [-1.0, 0.0, -0.0, 4.0]  # input * mask: the recorded decisions, not x > 0
    (g,) = torch.autograd.grad(y.sum(), x)
    assert g.tolist() == [1.0, 0.0, 0.0, 1.0]
    with pytest.raises(runner._ReplayMismatch):  # a second ReLU call has no recorded mask
        model(x.clone())
    recorded = []
    runner._record_relu_masks(nn.Sequential(nn.ReLU()), recorded)
    assert recorded == []  # hooks record at call time only


def test_model_training_step_check_still_catches_a_wrong_layer():
    case = suites.suite_cases("lenet", batch=2, ops=("model",))[0]
    prepared = runner.Prepared(case, "fwdbwd", torch.float32, "nchw", "cpu")
    good = runner.check(prepared, runner.cnnfast_impl(), runner.reference_impl())
    assert good["passed"], good
    ref = runner.reference_impl()

    def wrong_convert(model, fuse=False):
        model = runner.cnnfast_impl().convert(model, fuse=fuse)
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.register_forward_hook(lambda mod, inp, out: out * (1 + 1e-3))
        return model

    wrong = runner.Impl("wrong", ref.conv2d, ref.conv2d_relu, ref.max_pool2d, ref.relu, wrong_convert)
    bad = runner.check(prepared, wrong, ref)
    assert not bad["passed"], bad


# --- rivals: the errors before anything runs, and the check every rival goes through ------------------

def test_a_rival_that_is_not_installed_is_a_usage_error(monkeypatch, capsys):
    # torch is there wherever the tests run; the other module is absent
    monkeypatch.setitem(rivals.REQUIRES, "openvino", ("torch", "cnnfast_test_absent_module"))
    assert command.main(parse("--device", "cpu", "--rivals", "inductor,openvino")) == 2
    err = capsys.readouterr().err
    assert "--rivals openvino needs the Python package 'cnnfast_test_absent_module'" in err
    assert "pip install 'cnnfast[rivals]'" in err and "pip install cnnfast_test_absent_module" in err
    monkeypatch.setitem(rivals.REQUIRES, "onnxruntime", ("cnnfast_test_absent_a", "cnnfast_test_absent_b"))
    assert command.main(parse("--device", "cpu", "--rivals", "onnxruntime")) == 2
    assert "packages 'cnnfast_test_absent_a', 'cnnfast_test_absent_b'" in capsys.readouterr().err
    assert rivals.missing(["inductor"]) is None  # torch.compile needs nothing more


def test_rivals_run_on_the_cpu_only(capsys):
    assert command.main(parse("--device", "cuda", "--rivals", "inductor")) == 2
    assert "--rivals runs inductor on the CPU: use it with --device cpu" in capsys.readouterr().err
    assert command.main(parse("--device", "cuda", "--predict", "--rivals", "inductor")) == 2
    assert "without --predict" in capsys.readouterr().err


def test_which_rows_have_rivals():
    cases = {c.op: c for c in suites.suite_cases("lenet", batch=2)}
    names = ["onnxruntime", "openvino", "inductor"]
    assert rivals.applicable(names, cases["conv2d_relu_max_pool2d"], "fwd", "float32", "nchw", "cpu") == names
    assert rivals.applicable(names[::-1], cases["model"], "fwd", "float32", "nchw", "cpu") == names[::-1]
    # a training step: only the rivals that train
    assert rivals.applicable(names, cases["model"], "fwdbwd", "float32", "nchw", "cpu") == ["inductor"]
    assert rivals.applicable(names[:2], cases["model"], "fwdbwd", "float32", "nchw", "cpu") == []
    assert rivals.applicable(names, cases["relu"], "fwd", "float32", "nchw", "cpu") == []
    assert rivals.applicable(names, cases["conv2d"], "fwdbwd", "float32", "nchw", "cpu") == []
    assert rivals.applicable(names, cases["conv2d"], "bwd", "float32", "nchw", "cpu") == []
    assert rivals.applicable(names, cases["conv2d"], "fwd", "float64", "nchw", "cpu") == []
    assert rivals.applicable(names, cases["conv2d"], "fwd", "float32", "channels_last", "cpu") == []


def _eager_rival(delta):
    """A rival that runs the row's torch module itself, off by ``delta``: through the same path as the
    real ones (build, check, time)."""
    def build(subject, threads):
        def run():
            with torch.no_grad():
                return subject.module(subject.x) + delta
        return run
    return build


def test_a_rival_that_fails_its_check_is_reported_and_not_timed(monkeypatch, quick_timing):
    monkeypatch.setitem(rivals.BUILDERS, "onnxruntime", _eager_rival(0.0))
    monkeypatch.setitem(rivals.BUILDERS, "openvino", _eager_rival(1e-3))
    case = suites.suite_cases("lenet", batch=2, ops=("conv2d_relu_max_pool2d",))[0]
    peaks = {"flops": {"float32": 1e11}, "bytes": 1e10}
    row = runner.run_case(case, "fwd", "float32", "nchw", "cpu", 2, 1, peaks, runner.cnnfast_impl(),
                          runner.reference_impl(), (torch.float32,))
    prepare = lambda: runner.Prepared(case, "fwd", torch.float32, "nchw", "cpu")  # noqa: E731
    rivals.Rivals(["onnxruntime", "openvino"], torch.get_num_threads(), 2, 1).add(row, case, prepare)
    good, bad = row["rivals"]["onnxruntime"], row["rivals"]["openvino"]
    assert good["status"] == "ok" and good["error"]["passed"] and good["error"]["max_abs"] < 1e-5
    assert good["ratio"] == pytest.approx(good["time"]["median_s"] / row["cnnfast"]["median_s"])
    assert bad["status"] == "fail" and not bad["passed"] and "tolerance" in bad["message"]
    assert bad["error"]["max_abs"] == pytest.approx(1e-3, rel=1e-2)
    assert "time" not in bad and "ratio" not in bad
    assert row["fastest_rival"] == {"name": "onnxruntime", "ratio": good["ratio"]}
    doc = {"command": "cnnfast bench", "environment": report.environment("cpu", 2, False),
           "settings": {"batch": {"lenet": 2}, "repeat": 2, "warmup": 1, "rivals": ["onnxruntime", "openvino"]},
           "peaks": peaks, "rows": [row]}
    doc["suites"] = report.suite_summaries(doc["rows"])
    text = report.format_report(doc, color=True)
    assert "onnxruntime/cnnfast" in text and "openvino/cnnfast" in text
    assert any(line.startswith(report.RED) and "openvino FAILED its check on lenet conv2d_relu_max_pool2d" in line
               for line in text.splitlines())
    assert doc["suites"]["lenet"]["rivals_geomean"] == {"onnxruntime": pytest.approx(good["ratio"]), "openvino": None}


def test_a_training_rival_is_checked_on_every_gradient(monkeypatch, quick_timing):
    """The training step's check holds a rival to the loss and every parameter's gradient: a layer off
    by 1e-3 fails it, the plain model (eager, through the same path) passes."""
    ref = runner.reference_impl()

    def scaled_conv(model, fuse=False):
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.register_forward_hook(lambda mod, inp, out: out * (1 + 1e-3))
        return model

    case = suites.suite_cases("lenet", batch=2, ops=("model",))[0]
    peaks = {"flops": {"float32": 1e11}, "bytes": 1e10}
    row = runner.run_case(case, "fwdbwd", "float32", "nchw", "cpu", 2, 1, peaks, runner.cnnfast_impl(), ref,
                          (torch.float32,))
    prepare = lambda: runner.Prepared(case, "fwdbwd", torch.float32, "nchw", "cpu")  # noqa: E731
    for convert, status in ((ref.convert, "ok"), (scaled_conv, "fail")):
        impl = runner.Impl("inductor", ref.conv2d, ref.conv2d_relu, ref.max_pool2d, ref.relu, convert)
        monkeypatch.setitem(rivals.TRAINING_IMPLS, "inductor", lambda impl=impl: impl)
        row.pop("rivals", None)
        rivals.Rivals(["onnxruntime", "inductor"], torch.get_num_threads(), 2, 1).add(row, case, prepare)
        assert list(row["rivals"]) == ["inductor"]  # ONNX Runtime runs no training step
        entry = row["rivals"]["inductor"]
        assert entry["status"] == status, entry["message"]
        assert ("ratio" in entry) == (status == "ok")
