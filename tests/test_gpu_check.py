"""make gpu-check (tools/gpu_check.py) without a GPU: it refuses at once, and its --dry-run runs every
stage's plumbing on the CPU (time boxes, output files, summary); the per-test time limit plugin it
gives pytest; the bench's --time-limit it relies on."""
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "gpu_check.py"

_spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)


def run_script(*args, timeout=240, env=None):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def stage_statuses(summary):
    """{stage: status} from summary.md's stage table."""
    found = {}
    for line in summary.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] in gpu_check.STAGES:
            found.setdefault(cells[0], cells[1])
    return found


# --- without a GPU ---------------------------------------------------------------------------------

no_gpu_here = pytest.mark.skipif(gpu_check.device_nodes_present(), reason="this machine shows an NVIDIA GPU")


@no_gpu_here
def test_without_a_gpu_it_stops_at_once_with_the_reason(tmp_path):
    out = tmp_path / "out"
    started = time.monotonic()
    done = run_script("--out", out, timeout=60)
    assert done.returncode == gpu_check.EXIT_NO_DEVICE
    assert "no CUDA device: " in done.stderr and "--dry-run" in done.stderr
    assert time.monotonic() - started < 10  # no torch import, no build: at once
    assert not out.exists()  # nothing written


@no_gpu_here
@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_gpu_check_fails_without_a_gpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out")}
    done = subprocess.run(["make", "-s", "gpu-check", f"PYTHON={sys.executable}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode != 0
    assert "no CUDA device: " in done.stderr
    assert not (tmp_path / "out").exists()


def test_help_documents_every_flag():
    done = run_script("--help", timeout=30)
    assert done.returncode == 0
    for flag in ("--out", "--dry-run", "--python", "--stages", "--budget", "--total", "--per-test-limit", "--archs",
                 "--jobs", "--suites", "--variants", "--directions", "--repeat", "--warmup", "--batch", "--verbose",
                 "--dry-run-hang"):
        assert flag in done.stdout, flag
    assert "Exit status" in done.stdout and "$OUT" in done.stdout


def test_usage_errors():
    assert run_script("--budget", "bench", timeout=30).returncode == 2
    assert run_script("--budget", "nosuch=3", timeout=30).returncode == 2
    assert run_script("--variants", "fp8", timeout=30).returncode == 2
    done = run_script("--dry-run-hang", "tests", timeout=30)
    assert done.returncode == 2 and "--dry-run-hang needs --dry-run" in done.stderr


# --- the dry run -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """One dry run of every stage, with the last stage made to hang past its 6 s time box (3 s a tool)."""
    out = tmp_path_factory.mktemp("gpu-check")
    started = time.monotonic()
    done = run_script("--dry-run", "--out", out, "--variants", "fp32,bf16", "--dry-run-hang", "sanitizer",
                      "--budget", "sanitizer=6", timeout=400)
    return done, out, time.monotonic() - started


def test_dry_run_stages_and_exit_status(dry_run):
    done, out, _ = dry_run
    summary = (out / "summary.md").read_text()
    assert stage_statuses(summary) == {"env": "ok", "build": "ok", "tests": "ok", "bench": "ok",
                                       "sanitizer": "timed out"}, done.stdout + done.stderr
    assert done.returncode == gpu_check.EXIT_FAILED  # a stage timed out


def test_dry_run_writes_its_files_within_the_limits(dry_run):
    _, out, _ = dry_run
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(["gpu-check.log", "summary.md", "bench.json", "bench.png", "junit.xml"])
    assert all(p.is_file() and p.stat().st_size < 16 << 20 for p in out.iterdir())
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = (out / "gpu-check.log").read_text()
    for stage in gpu_check.STAGES:
        assert f"== {stage} (time box" in log
    assert "$ " in log and "setup.py build_ext --inplace" in log


def test_dry_run_runs_the_gpu_tests_with_the_time_limit_plugin(dry_run):
    _, out, _ = dry_run
    root = ET.parse(out / "junit.xml").getroot()
    cases = list(root.iter("testcase"))
    # every test carrying the cuda marker (82 when this was written), each skipped here for want of a GPU
    assert len(cases) >= 50
    assert all(c.find("skipped") is not None for c in cases)
    assert all("cuda" in (c.find("skipped").get("message") or "").lower() for c in cases)
    log = (out / "gpu-check.log").read_text()
    assert "-m cuda" in log and "per-test time limit: 60 s" in log


def test_dry_run_bench_json_holds_each_variant(dry_run):
    _, out, _ = dry_run
    from cnnfast.bench import report

    doc = json.loads((out / "bench.json").read_text())
    assert doc["schema"] == "cnnfast-gpu-check-bench/1" and doc["dry_run"] is True
    assert list(doc["variants"]) == ["fp32", "bf16"]
    fp32, bf16 = (doc["variants"][v]["bench"] for v in ("fp32", "bf16"))
    for bench in (fp32, bf16):
        assert report.validate(bench) == []
        assert bench["environment"]["device"] == "cpu"
        assert bench["settings"]["time_limit"] is not None
    assert fp32["rows"] and all(r["passed"] for r in fp32["rows"])
    assert {r["status"] for r in bf16["rows"]} == {"not supported"}  # no bfloat16 kernels on the CPU


def test_dry_run_summary_has_the_environment_and_the_speed_up_table(dry_run):
    done, out, _ = dry_run
    import torch

    summary = (out / "summary.md").read_text()
    assert "## Environment" in summary and f"torch {torch.__version__}" in summary
    assert "logical cores" in summary
    assert "| suite | op | fp32 fwd | fp32 fwdbwd | bf16 fwd | bf16 fwdbwd |" in summary
    row = next(line for line in summary.splitlines() if line.startswith("| lenet | all rows |"))
    fp32_fwd, _, bf16_fwd, _ = [c.strip() for c in row.strip("|").split("|")][2:]
    assert re.fullmatch(r"\d+\.\d\dx", fp32_fwd) and bf16_fwd == "n/s"
    assert "| lenet | conv2d |" in summary and "| lenet | model fused |" in summary
    assert "## GPU tests (pytest -m cuda)" in summary and re.search(r"skipped: .*CUDA", summary)
    assert "## compute-sanitizer" in summary and "| racecheck | timed out |" in summary
    # the short table is printed last: the stages, then the speed-ups per suite
    tail = done.stdout.strip().splitlines()
    assert tail[-1].startswith("lenet ") and re.search(r"\d\.\d\dx", tail[-1])
    assert any(line.startswith("sanitizer  timed out") for line in tail[-12:])


def test_a_hung_stage_is_ended_and_the_later_stages_still_run(tmp_path):
    out = tmp_path / "out"
    started = time.monotonic()
    done = run_script("--dry-run", "--out", out, "--stages", "build", "--dry-run-hang", "env", "--budget", "env=2",
                      timeout=60)
    assert time.monotonic() - started < 30
    assert done.returncode == gpu_check.EXIT_FAILED
    summary = (out / "summary.md").read_text()
    assert stage_statuses(summary) == {"env": "timed out", "build": "ok", "tests": "skipped", "bench": "skipped",
                                       "sanitizer": "skipped"}
    log = (out / "gpu-check.log").read_text()
    assert "time box of 2 s over" in log and "dry run: would run" in log
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "dry run: this stage hangs" not in ps  # the hung command was killed


def test_summary_table_and_geometric_means():
    """The ratio table from rows: geometric means per suite and op, failures and n/s marked."""
    args = gpu_check.parse_args(["--dry-run", "--variants", "fp32,fp16"])
    run = type("R", (), {})()
    run.args = args
    row = {"suite": "lenet", "direction": "fwd", "status": "ok", "passed": True}
    run.bench = {
        "fp32": {"status": "ok", "doc": {"rows": [
            {**row, "op": "conv2d", "args": "a", "speedup": 2.0},
            {**row, "op": "conv2d", "args": "b", "speedup": 8.0},
            {**row, "op": "model", "args": "64x1x28x28 LeNet fused", "speedup": 1.5, "status": "fail", "passed": False},
        ]}},
        "fp16": {"status": "ok", "doc": {"rows": [{**row, "op": "conv2d", "args": "a", "status": "not supported",
                                                   "passed": None}]}},
    }
    headers, rows = gpu_check.bench_table(run)
    assert headers == ["suite", "op", "fp32 fwd", "fp32 fwdbwd", "fp16 fwd", "fp16 fwdbwd"]
    table = {r[1]: r[2:] for r in rows}
    assert table["conv2d"] == ["4.00x", "-", "n/s", "-"]
    assert table["model fused"][0] == "1.50x (1 FAIL)"
    assert table["all rows"][0] == f"{(2 * 8 * 1.5) ** (1 / 3):.2f}x (1 FAIL)"


def test_build_errors_are_the_compilers_lines():
    lines = [
        "[1/23] c++ -MMD -MF /r/build/capability.o.d -O3 -c /r/csrc/cpu/capability.cpp -o /r/build/capability.o",
        "FAILED: /r/build/temp/csrc/cpu/capability.o",
        "c++ -MMD -MF /r/build/capability.o.d -O3 -Wno-error=foo -c /r/csrc/cpu/capability.cpp -o /r/build/capability.o",
        "/r/csrc/cpu/capability.cpp:12:3: error: 'foo' was not declared in this scope",
        "   12 |   foo();",
        "/usr/bin/python3 /r/tools/nvcc_log.py /usr/local/cuda/bin/nvcc -Xcompiler -Werror -c /r/csrc/cuda/pointwise.cu",
        "ninja: build stopped: subcommand failed.",
        "Traceback (most recent call last):",
        "RuntimeError: Error compiling objects for extension",
    ]
    errors, first = gpu_check.build_errors(lines)
    assert errors == [lines[1], lines[3], lines[8]]
    assert first == lines[3]
    assert gpu_check.build_errors(["all good"]) == ([], None)


FAKE_SANITIZER = r'''#!/usr/bin/env python3
import sys
args = sys.argv[1:]
if "--kernel-name" in args:  # an older tool
    print("Error: Unrecognized option: --report-api-errors")
    sys.exit(1)
tool = args[args.index("--tool") + 1]
print("========= COMPUTE-SANITIZER")
print("sanitizer cases on cuda: 14 ok, 0 failed, 0 skipped in 1.0 s")
if tool == "memcheck":
    print("========= Invalid __global__ write of size 4 bytes")
    print("=========     at void cnnfast::cuda::relu_kernel<float>(const float *, float *, long, bool)+0x70")
    print("========= ERROR SUMMARY: 1 error")
    sys.exit(99)
print("========= RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)")
'''


def test_sanitizer_stage_reads_what_the_tool_found(tmp_path):
    """The real (not dry) sanitizer stage against a stand-in compute-sanitizer: an option it refuses
    makes it try again with plain options; a memcheck error fails the stage and is named."""
    fake = tmp_path / "compute-sanitizer"
    fake.write_text(FAKE_SANITIZER)
    fake.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    run = gpu_check.Run(gpu_check.parse_args(["--out", str(out)]), out)
    try:
        run.env["tools"] = {"compute-sanitizer": str(fake)}
        status, note = gpu_check.stage_sanitizer(run, run.stages["sanitizer"], 60)
    finally:
        run.log.close()
        run.tmp.cleanup()
    assert status == "failed" and "memcheck failed" in note and "racecheck ok" in note
    mem, race = run.sanitizer["memcheck"], run.sanitizer["racecheck"]
    assert mem["errors"] == 1 and mem["rc"] == 99
    assert mem["findings"][0] == "Invalid __global__ write of size 4 bytes"
    assert race["status"] == "ok" and race["hazards"] == 0 and race["cases"] == "14 ok, 0 failed, 0 skipped"
    log = (out / "gpu-check.log").read_text()
    assert "refused an option" in log and "--kernel-name kns=cnnfast" in log


# --- the per-test time limit ------------------------------------------------------------------------

TIMED_TESTS = '''
import signal, time

def test_fast():
    pass

def test_slow():
    time.sleep(30)

def test_after_the_slow_one():
    pass
'''

STUCK_TEST = '''
import signal, time

def test_stuck_where_no_signal_reaches():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(30)

def test_never_reached():
    pass
'''


def _pytest_with_limit(tmp_path, source, *extra):
    (tmp_path / "test_timed.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tools")}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "pytest_time_limit", "-p", "no:cacheprovider",
                           "-q", "--per-test-limit", "1", "--per-test-grace", "1", "--rootdir", str(tmp_path),
                           "-c", os.devnull, *extra, str(tmp_path / "test_timed.py")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)


def test_time_limit_fails_a_slow_test_and_goes_on(tmp_path):
    started = time.monotonic()
    done = _pytest_with_limit(tmp_path, TIMED_TESTS, "--junitxml", str(tmp_path / "j.xml"))
    assert time.monotonic() - started < 20
    assert done.returncode == 1
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "j.xml").getroot().iter("testcase")}
    assert set(cases) == {"test_fast", "test_slow", "test_after_the_slow_one"}
    failure = cases["test_slow"].find("failure")
    assert failure is not None and "per-test time limit of 1 s exceeded" in failure.get("message")
    assert cases["test_fast"].find("failure") is None and cases["test_after_the_slow_one"].find("failure") is None


def test_time_limit_ends_a_run_stuck_outside_python(tmp_path):
    state = tmp_path / "state"
    started = time.monotonic()
    done = _pytest_with_limit(tmp_path, STUCK_TEST, "--per-test-state", str(state))
    assert time.monotonic() - started < 20  # 1 s limit + 1 s grace, not the 30 s sleep
    assert done.returncode != 0
    assert "Timeout" in done.stderr and "test_stuck_where_no_signal_reaches" in done.stderr
    assert state.read_text() == "test_timed.py::test_stuck_where_no_signal_reaches"


# --- the bench's time limit ---------------------------------------------------------------------------

def test_bench_time_limit_stops_starting_rows(tmp_path):
    import argparse

    from cnnfast import bench
    from cnnfast.bench import command, report

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    # Measuring the peaks alone takes over a second, so no row starts within a 1 s limit.
    args = parser.parse_args(["--device", "cpu", "--suite", "lenet", "--batch", "1", "--repeat", "1", "--warmup", "1",
                              "--ops", "relu", "--direction", "fwd", "--time-limit", "1",
                              "--json", str(tmp_path / "b.json")])
    out = io.StringIO()
    assert command.main(args, out=out) == 0
    doc = json.loads((tmp_path / "b.json").read_text())
    assert report.validate(doc) == []
    assert doc["rows"] == [] and len(doc["not_run"]) == 4  # lenet's four ReLU cases
    assert doc["not_run"][0]["args"] == "1x6x28x28" and doc["not_run"][0]["direction"] == "fwd"
    assert doc["settings"]["time_limit"] == 1
    assert "time limit of 1 s reached: 0 of 4 rows run, 4 not run (suites: lenet)" in out.getvalue()


def test_the_files_left_out_of_the_gpu_tests_hold_no_cuda_test():
    """They are left out only because their imports may be missing on a GPU machine's python."""
    for name in gpu_check.NO_CUDA_TESTS:
        text = (ROOT / name).read_text()
        assert "mark.cuda" not in text and "needs_cuda" not in text, name
    run = type("Run", (), {"python": sys.executable, "args": type("A", (), {"per_test_limit": 60})()})()
    cmd = gpu_check.tests_command(run, "j.xml", "state")
    assert all(f"--ignore={name}" in cmd for name in gpu_check.NO_CUDA_TESTS)
