#!/usr/bin/env python3
"""make gpu-check: turn a machine with a CUDA GPU into a checked comparison of cnnfast with cuDNN.

Stages, each in its own time box (a subprocess that is killed, with everything it started, when its
time is up; the later stages still run):

  env        the device (name, SMs, compute capability, memory, driver), torch, CUDA, cuDNN, nvcc,
             CPU cores; without a CUDA device the run stops here with "no CUDA device: ..."
  build      setup.py build_ext --inplace with the python3 and torch found here (no venv, no
             downloads), CNNFAST_CUDA=1, TORCH_CUDA_ARCH_LIST = the device's own arch, MAX_JOBS = the
             CPU cores; a build error stops the run with the tail of the compiler's output
  tests      pytest -m cuda tests (every test whose CUDA half is skipped without a GPU), with a
             per-test time limit (tools/pytest_time_limit.py), junit XML
  bench      cnnfast bench --device cuda on the lenet, mnist-cnn, resnet-cifar, resnet18 and resnet50
             suites, in float32 with TF32 off, float32 with TF32 on (convolutions and models only:
             TF32 changes nothing else), float16 and bfloat16, fwd and fwdbwd (a model's fwdbwd
             is a training step); every row checked against float64; cuDNN with
             cudnn.benchmark = True; CUDA events
  sanitizer  compute-sanitizer --tool memcheck and --tool racecheck on one small case of each
             kernel, forward and backward (tools/gpu_sanitize_cases.py), where the tool exists

Everything goes under $OUT when it is set, else gpu-check/: gpu-check.log (every command and its
output), summary.md (stages, environment, the table of speed-ups against cuDNN, sanitizer findings;
rewritten after every stage, so a stopped run still leaves one), bench.json (each variant's
`cnnfast bench` document), bench.png, junit.xml and kernel-report.json (ptxas's registers, shared
memory and spills of every kernel, from the build): six files in one folder, each kept under 16 MiB.
The short table printed last repeats the stages and the geometric-mean speed-ups.

The whole run is kept under --total seconds (default 470: 8 minutes, less what ending a command
and writing the files can add): each stage gets the smaller of its own budget and what the total
leaves after keeping a minimum for the stages after it, so time a quick build leaves goes on.

--dry-run exercises every stage on the CPU, with no GPU: env without the device requirement, the
build replaced by printing the command it would run, the GPU tests run (and skipped, for want of a
device) with the same plugin and junit XML, the bench on the CPU with a tiny suite, and the
sanitizer cases run without compute-sanitizer. tests/test_gpu_check.py runs it.

Exit status: 0 when every stage passed and completed, 1 when a stage failed, timed out, was skipped
or left work undone, 2 for a usage error, 3 when there is no CUDA device (and no --dry-run).
"""
import argparse
import datetime
import glob
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"

STAGES = ("env", "build", "tests", "bench", "sanitizer")
# Seconds each stage may take at most, and what is kept for a stage when earlier ones run long.
BUDGETS = {"env": 60, "build": 180, "tests": 90, "bench": 280, "sanitizer": 90}
RESERVES = {"env": 10, "build": 60, "tests": 30, "bench": 60, "sanitizer": 40}
TOTAL_BUDGET = 470  # 8 minutes, less what killing a command and writing the files can add
PER_TEST_LIMIT = 60
PER_TEST_GRACE = 20
BENCH_SUITES = ("lenet", "mnist-cnn", "resnet-cifar", "resnet18", "resnet50")
BENCH_DIRECTIONS = ("fwd", "fwdbwd")
BENCH_REPEAT = 5
BENCH_WARMUP = 2
# A row can take a while (cuDNN's autotuning of a new shape, a float64 model as reference): a
# variant's --time-limit leaves this much of its share for the row under way and for writing, and
# only a variant this far past its share is killed (a hang: the time it leaves goes to the next).
BENCH_ROW_MARGIN = 8
BENCH_KILL_AFTER = 30
CONV_OPS = "conv2d,conv2d_relu,conv2d_relu_max_pool2d,model"
VARIANTS = {
    "fp32": {"dtype": "float32", "tf32": "off", "ops": None, "title": "float32, TF32 off"},
    "tf32": {"dtype": "float32", "tf32": "on", "ops": CONV_OPS, "title": "float32, TF32 on (convolutions, models)"},
    "fp16": {"dtype": "float16", "tf32": "off", "ops": None, "title": "float16"},
    "bf16": {"dtype": "bfloat16", "tf32": "off", "ops": None, "title": "bfloat16"},
}
SANITIZER_TOOLS = ("memcheck", "racecheck")
# The dry run's stand-ins: the bench on the CPU with a tiny suite.
DRY_BENCH = {"suites": ("lenet",), "batch": 2, "repeat": 1, "warmup": 1}

LOG_NAME, SUMMARY_NAME = "gpu-check.log", "summary.md"
BENCH_JSON, BENCH_PNG, JUNIT_XML, KERNEL_REPORT = "bench.json", "bench.png", "junit.xml", "kernel-report.json"
OUTPUT_NAMES = (LOG_NAME, SUMMARY_NAME, BENCH_JSON, BENCH_PNG, JUNIT_XML, KERNEL_REPORT)
MAX_FILES = 8
MAX_FILE_BYTES = 15 << 20  # under the 16 MiB a file may have to come back from the GPU machine

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_DEVICE = 0, 1, 2, 3
ENV_MARK = "GPU_CHECK_ENV "

# Run by the python under test: versions, the device, and why there is none.
PROBE = r"""
import json, os, platform, sys
info = {"python": platform.python_version(), "executable": sys.executable}
try:
    import torch
except Exception as e:
    info["torch_error"] = f"{type(e).__name__}: {e}"
else:
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.version.cuda
    try:
        v = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        info["cudnn"] = f"{v // 10000}.{v % 10000 // 100}.{v % 100}" if isinstance(v, int) and v >= 10000 else v
    except Exception:
        info["cudnn"] = None
    info["cuda_available"] = bool(torch.cuda.is_available())
    if info["cuda_available"]:
        p = torch.cuda.get_device_properties(0)
        info["device_count"] = torch.cuda.device_count()
        info["device"] = {"name": p.name, "sms": p.multi_processor_count, "capability": [p.major, p.minor],
                          "memory_bytes": p.total_memory}
        try:
            d = torch._C._cuda_getDriverVersion()
            info["cuda_driver_api"] = f"{d // 1000}.{d % 1000 // 10}"
        except Exception:
            pass
    try:
        import torchvision
        info["torchvision"] = torchvision.__version__
    except Exception as e:
        info["torchvision"] = None
        info["torchvision_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
print("GPU_CHECK_ENV " + json.dumps(info), flush=True)
"""

# Run after the build: what was built.
BUILT_PROBE = r"""
import json
import cnnfast
from cnnfast import _build_config as b
print("GPU_CHECK_ENV " + json.dumps({"cuda": bool(b.cuda), "archs": b.cuda_archs, "reason": b.cuda_reason,
                                     "file": cnnfast.__file__}), flush=True)
"""


class NoDevice(Exception):
    """No CUDA device here: the run stops before building anything."""


# --- running commands in a time box ---------------------------------------------------------------

class Log:
    """The run's log file (and the console): every line of every command, under a size cap."""

    def __init__(self, path, verbose=False):
        self.path = path
        self.verbose = verbose
        self.f = open(path, "w", encoding="utf-8", errors="replace")
        self.bytes = 0
        self.truncated = False
        self.lock = threading.Lock()

    def write(self, line, console=False, force=False):
        """One line to the log; to the console too when ``console`` (or --verbose)."""
        with self.lock:
            if console or self.verbose:
                print(line, flush=True)
            if self.f.closed:
                return
            if self.bytes + len(line) + 1 > MAX_FILE_BYTES - 65536 and not force:
                if not self.truncated:
                    self.truncated = True
                    self.f.write("[gpu-check: the log reached its size cap; command output from here on is left out]\n")
                return
            self.f.write(line + "\n")
            self.bytes += len(line.encode("utf-8", "replace")) + 1
            self.f.flush()

    def say(self, line=""):
        self.write(line, console=True, force=True)

    def close(self):
        with self.lock:
            self.f.close()


class Result:
    def __init__(self, rc, timed_out, seconds, tail, lines):
        self.rc, self.timed_out, self.seconds, self.tail, self.lines = rc, timed_out, seconds, tail, lines


def _kill_group(proc, log):
    """End the process and everything it started (its own session), politely first."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
    log.write(f"[gpu-check: process {proc.pid} did not end after SIGKILL]")


def run_command(log, cmd, timeout, env=None, cwd=ROOT, keep_lines=False, tail_lines=80):
    """Run ``cmd`` with its output (stdout and stderr together) into the log; kill it after ``timeout``
    seconds. Returns a Result (rc None when it was killed)."""
    log.write(f"$ {shlex.join(str(c) for c in cmd)}   [time box {timeout:.0f} s]", force=True)
    started = time.monotonic()
    tail = deque(maxlen=tail_lines)
    kept = [] if keep_lines else None
    try:
        proc = subprocess.Popen([str(c) for c in cmd], cwd=str(cwd), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as e:
        log.write(f"[gpu-check: cannot start {cmd[0]}: {e}]", force=True)
        return Result(127, False, 0.0, [f"cannot start {cmd[0]}: {e}"], [])

    def read():
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            tail.append(line)
            if kept is not None:
                kept.append(line)
            log.write(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=max(timeout, 0.1))
    except subprocess.TimeoutExpired:
        timed_out = True
        log.write(f"[gpu-check: time box of {timeout:.0f} s over; ending the command]", force=True)
        _kill_group(proc, log)
    except BaseException:
        _kill_group(proc, log)
        raise
    finally:
        # Whatever the command left behind in its session (a compiler it started) goes too, and
        # with it the last holder of the pipe, so the reader reaches its end.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        reader.join(timeout=10)
    seconds = time.monotonic() - started
    rc = None if timed_out else proc.returncode
    log.write(f"[gpu-check: {'killed' if timed_out else f'exit status {rc}'} after {seconds:.1f} s]", force=True)
    return Result(rc, timed_out, seconds, list(tail), kept or [])


def _env_mark(lines):
    for line in reversed(lines):
        if line.startswith(ENV_MARK):
            try:
                return json.loads(line[len(ENV_MARK):])
            except ValueError:
                return None
    return None


# --- the run --------------------------------------------------------------------------------------

class Stage:
    def __init__(self, name):
        self.name = name
        self.status = "not run"  # ok, failed, timed out, incomplete, skipped, not run
        self.seconds = 0.0
        self.budget = None
        self.note = ""


class Run:
    def __init__(self, args, out):
        self.args = args
        self.out = out
        self.dry = args.dry_run
        self.python = args.python
        self.started = time.monotonic()
        self.deadline = self.started + args.total
        self.date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        self.stages = {name: Stage(name) for name in STAGES}
        self.selected = [s for s in STAGES if s == "env" or s in args.stages]
        self.env = {"cpu_count": os.cpu_count(), "cpu_affinity": _affinity(), "cpu": _cpu_name(),
                    "machine": platform.machine(), "host_python": platform.python_version()}
        self.build = {}
        self.tests = {}
        self.bench = {}  # variant -> {"status", "doc", "note", "seconds"}
        self.sanitizer = {}  # tool -> dict
        self.bench_missing_suites = []
        self.tmp = tempfile.TemporaryDirectory(prefix="gpu-check-")
        self.log = Log(out / LOG_NAME, verbose=args.verbose)

    # -- time --
    def time_box(self, name):
        """The seconds stage ``name`` may use: its budget, or less when the total runs out."""
        later = [s for s in self.selected if STAGES.index(s) > STAGES.index(name)]
        left = self.deadline - time.monotonic() - sum(min(RESERVES[s], self.args.budget[s]) for s in later)
        return min(self.args.budget[name], left)

    def child_env(self, **extra):
        env = dict(os.environ)
        path = [str(ROOT), str(TOOLS)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        env["PYTHONPATH"] = os.pathsep.join(path)
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("NO_COLOR", "1")
        if self.dry:  # the dry run is a CPU run, on a machine with a GPU too
            env["CUDA_VISIBLE_DEVICES"] = ""
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def hang(self, name):
        """The dry run's stand-in for a stage that hangs (--dry-run-hang)."""
        return [self.python, "-c", "import time\nprint('dry run: this stage hangs', flush=True)\ntime.sleep(3600)"]


def _affinity():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _which(name, extra_dirs=()):
    found = shutil.which(name)
    if found:
        return found
    for d in extra_dirs:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def _cuda_bin_dirs():
    dirs = [os.path.join(os.environ[v], "bin") for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)]
    dirs += ["/usr/local/cuda/bin"] + sorted(glob.glob("/usr/local/cuda-*/bin"), reverse=True)
    return dirs


def device_nodes_present():
    """Whether this machine shows any NVIDIA GPU at all (device files, or an nvidia-smi to ask)."""
    return bool(glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/dxg") or shutil.which("nvidia-smi"))


# --- stage: env -----------------------------------------------------------------------------------

def stage_env(run, stage, timeout):
    res = run_command(run.log, [run.python, "-c", PROBE], timeout, env=run.child_env())
    if res.timed_out:
        return "timed out", f"the torch probe did not answer in {timeout:.0f} s"
    info = _env_mark(res.tail)
    if info is None:
        return "failed", "the torch probe printed nothing: " + " | ".join(res.tail[-3:])
    run.env.update(info)
    if "torch_error" in info:
        if not run.dry:
            raise NoDevice(f"{run.python} cannot import torch ({info['torch_error']})")
        return "failed", f"no torch: {info['torch_error']}"
    tools = {}
    for tool in ("nvcc", "compute-sanitizer", "ncu", "cuobjdump", "nvdisasm", "nvidia-smi", "ninja"):
        tools[tool] = _which(tool, _cuda_bin_dirs() + [os.path.dirname(run.python)])
    run.env["tools"] = tools
    if tools["nvcc"]:
        v = run_command(run.log, [tools["nvcc"], "--version"], 20)
        m = re.search(r"release (\d+\.\d+)", "\n".join(v.tail))
        run.env["nvcc"] = m.group(1) if m else None
    if tools["nvidia-smi"]:
        for fields in ("name,driver_version,memory.total,clocks.max.sm,power.limit", "name,driver_version"):
            q = run_command(run.log, [tools["nvidia-smi"], f"--query-gpu={fields}", "--format=csv,noheader"], 20)
            parts = [p.strip() for p in q.tail[0].split(",")] if q.rc == 0 and q.tail else []
            if len(parts) >= 2:
                run.env["driver"] = parts[1]
                run.env["nvidia_smi"] = f"{fields}: {q.tail[0].strip()}"
                break
    if not info.get("cuda_available"):
        if info.get("torch_cuda") is None:
            why = f"torch {info.get('torch')} is a CPU-only build"
        else:
            why = f"torch {info.get('torch')} (CUDA {info['torch_cuda']}) sees no device (torch.cuda.is_available() is False)"
        run.env["no_device"] = why
        if not run.dry:
            raise NoDevice(why)
    for line in env_lines(run.env, run.dry):
        run.log.say("  " + line)
    note = "dry run: no device required" if run.dry else ""
    return "ok", note


def env_lines(env, dry=False):
    dev = env.get("device")
    lines = []
    if dev:
        cc = ".".join(map(str, dev["capability"]))
        lines.append(f"device: {dev['name']}, {dev['sms']} SMs, compute capability {cc} (sm_{cc.replace('.', '')}), "
                     f"{dev['memory_bytes'] / 2**30:.1f} GiB, driver {env.get('driver') or '?'} "
                     f"(CUDA driver API {env.get('cuda_driver_api') or '?'})")
    else:
        lines.append(f"device: none{' (dry run on the CPU)' if dry else ''}: {env.get('no_device', '?')}")
    cudnn = env.get("cudnn")
    lines.append(f"torch {env.get('torch', '?')}, CUDA {env.get('torch_cuda') or '-'}, cuDNN {cudnn or '-'}, "
                 f"torchvision {env.get('torchvision') or 'none'}, nvcc {env.get('nvcc') or 'none'}, "
                 f"python {env.get('python', '?')} ({env.get('executable', '?')})")
    lines.append(f"CPU: {env.get('cpu')}, {env.get('cpu_count')} logical cores ({env.get('cpu_affinity')} usable)")
    tools = env.get("tools") or {}
    if tools:
        lines.append("tools: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in tools.items()))
    return lines


# --- stage: build ---------------------------------------------------------------------------------

def _arch_list(run):
    if run.args.archs:
        return run.args.archs
    dev = run.env.get("device")
    return f"{dev['capability'][0]}.{dev['capability'][1]}" if dev else "9.0"


def build_command(run):
    jobs = run.args.jobs or run.env.get("cpu_affinity") or os.cpu_count() or 1
    extra = {"CNNFAST_CUDA": "1", "TORCH_CUDA_ARCH_LIST": _arch_list(run), "MAX_JOBS": str(jobs)}
    cmd = [run.python, "setup.py", "build_ext", "--inplace"]
    return cmd, extra


def stage_build(run, stage, timeout):
    cmd, extra = build_command(run)
    run.build.update({"command": shlex.join(cmd), **extra})
    env = run.child_env(**extra)
    # ninja (the pip package) may sit beside the python without being on the PATH
    bin_dirs = [os.path.dirname(run.python)]
    try:
        import ninja  # noqa: PLC0415

        bin_dirs.append(ninja.BIN_DIR)
    except Exception:
        pass
    env["PATH"] = os.pathsep.join(bin_dirs + [env.get("PATH", "")])
    run.build["ninja"] = bool(shutil.which("ninja", path=env["PATH"]))
    if run.dry:
        shown = " ".join(f"{k}={v}" for k, v in extra.items()) + " " + shlex.join(cmd)
        res = run_command(run.log, [run.python, "-c", f"print({('dry run: would run: ' + shown)!r})"], timeout, env=env)
        if res.timed_out:
            return "timed out", f"over its time box of {timeout:.0f} s"
        return ("ok" if res.rc == 0 else "failed"), "dry run: not built; would run " + shown
    if not run.build["ninja"]:
        run.log.say("  note: no ninja on the PATH: torch builds one file at a time (slow)")
    res = run_command(run.log, cmd, timeout, env=env, keep_lines=True)
    run.build["seconds"] = res.seconds
    if res.timed_out or res.rc != 0:
        what = f"over its time box of {timeout:.0f} s" if res.timed_out else f"exit status {res.rc}"
        errors, first = build_errors(res.lines)
        run.log.say(f"  build failed ({what}); the compiler's error lines, then the end of its output:")
        for line in errors[:30]:
            run.log.say("  ! " + line[:400])
        for line in res.tail[-15:]:
            run.log.say("  | " + line[:400])
        run.build["error"] = (first or (res.tail[-1] if res.tail else ""))[:300]
        return ("timed out" if res.timed_out else "failed"), f"{what}: {run.build['error']}"
    probe = run_command(run.log, [run.python, "-c", BUILT_PROBE], 60, env=run.child_env())
    built = _env_mark(probe.tail)
    if not built:
        return "failed", "built, but cnnfast does not import: " + " | ".join(probe.tail[-3:])
    run.build.update(built)
    if not built["cuda"]:
        return "failed", f"built without CUDA kernels: {built['reason']}"
    report = ROOT / "cnnfast" / "_kernel_report.json"
    if report.is_file() and report.stat().st_size < MAX_FILE_BYTES:
        shutil.copyfile(report, run.out / KERNEL_REPORT)
        run.build["kernels"] = _kernel_summary(report)
    return "ok", f"CUDA kernels for {built['archs']} in {res.seconds:.0f} s with MAX_JOBS={extra['MAX_JOBS']}"


def build_errors(lines):
    """The compiler's messages in a build's output (ninja shows them under "FAILED: <object>"), without
    the compile commands themselves, and the first error among them (None when there is none)."""
    errors = [ln for ln in lines if re.search(r"\berror\b|FAILED:|fatal", ln, re.IGNORECASE)
              and not re.match(r"\s*(\[\d+/\d+\]|\S*(c\+\+|g\+\+|gcc|nvcc|python[\d.]*)\s)", ln)]
    first = next((ln for ln in errors if re.search(r"error", ln, re.IGNORECASE) and "FAILED:" not in ln), None)
    return errors, first or (errors[0] if errors else None)


def _kernel_summary(path):
    try:
        kernels = json.loads(path.read_text()).get("kernels", [])
    except (OSError, ValueError):
        return None
    spills = [k for k in kernels if k.get("spill_stores") or k.get("spill_loads") or k.get("stack_bytes")]
    return {"count": len(kernels), "archs": sorted({k.get("arch") for k in kernels if k.get("arch")}),
            "with_spills_or_stack": len(spills), "max_registers": max((k.get("registers") or 0 for k in kernels), default=0)}


# --- stage: tests ---------------------------------------------------------------------------------

# Test files that hold no CUDA test and import what a GPU machine's own python may lack (the rivals
# extra): left out of the collection, where their import would stop the whole stage.
NO_CUDA_TESTS = ("tests/test_bench_rivals.py",)


def tests_command(run, junit, state):
    return [run.python, "-m", "pytest", "tests", *(f"--ignore={t}" for t in NO_CUDA_TESTS), "-m", "cuda", "-v",
            "-p", "pytest_time_limit",
            "-p", "no:cacheprovider", "--per-test-limit", str(run.args.per_test_limit),
            "--per-test-grace", str(PER_TEST_GRACE), "--per-test-state", str(state), "--junitxml", str(junit)]


def stage_tests(run, stage, timeout):
    junit = run.out / JUNIT_XML
    state = Path(run.tmp.name) / "pytest-current-test"
    cmd = run.hang("tests") if run.args.dry_run_hang == "tests" else tests_command(run, junit, state)
    res = run_command(run.log, cmd, timeout, env=run.child_env())
    run.tests["command"] = shlex.join(str(c) for c in tests_command(run, junit, state))
    stuck = state.read_text().strip() if state.is_file() else ""
    counts = parse_junit(junit) if junit.is_file() and not res.timed_out else None
    if counts is None:
        why = (f"over its time box of {timeout:.0f} s" if res.timed_out else
               f"pytest ended with status {res.rc} without a junit XML")
        if stuck:
            why += f", while running {stuck}"
        write_stand_in_junit(junit, why, res.seconds)
        run.tests.update({"error": why})
        return ("timed out" if res.timed_out else "failed"), why
    run.tests.update(counts)
    total, failed = counts["tests"], counts["failures"] + counts["errors"]
    note = f"{total} tests: {counts['passed']} passed, {failed} failed, {counts['skipped']} skipped"
    if res.rc == 5 or total == 0:
        return "failed", "no test selected by -m cuda"
    if failed:
        return "failed", note
    if counts["skipped"] == total and not run.dry:
        return "failed", note + " (all skipped on a GPU machine: " + (counts["skip_reasons"][:1] or ["?"])[0] + ")"
    if run.dry:
        note += " (dry run: skipped for want of a device)" if counts["skipped"] else ""
    return ("ok" if res.rc == 0 else "failed"), note


def parse_junit(path):
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        return None
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0, "failed": [], "skip_reasons": []}
    for case in root.iter("testcase"):
        counts["tests"] += 1
        counts["time"] += float(case.get("time") or 0)
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        for kind, key in (("failure", "failures"), ("error", "errors")):
            el = case.find(kind)
            if el is not None:
                counts[key] += 1
                msg = (el.get("message") or el.text or "").strip().splitlines()
                counts["failed"].append(f"{name}: {msg[0][:200] if msg else kind}")
        skip = case.find("skipped")
        if skip is not None:
            counts["skipped"] += 1
            reason = (skip.get("message") or "").strip()
            if reason and reason not in counts["skip_reasons"]:
                counts["skip_reasons"].append(reason)
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def write_stand_in_junit(path, why, seconds):
    """A junit XML that says the test stage ended before pytest could write its own."""
    suite = ET.Element("testsuite", name="gpu-check tests", tests="1", errors="1", failures="0", skipped="0",
                       time=f"{seconds:.1f}")
    case = ET.SubElement(suite, "testcase", classname="gpu_check", name="tests_stage", time=f"{seconds:.1f}")
    ET.SubElement(case, "error", message=f"the test stage ended early: {why}").text = why
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


# --- stage: bench ---------------------------------------------------------------------------------

def bench_argv(run, variant, json_path, time_limit):
    spec = VARIANTS[variant]
    if run.dry:
        suites, batch = DRY_BENCH["suites"], DRY_BENCH["batch"]
        repeat, warmup = DRY_BENCH["repeat"], DRY_BENCH["warmup"]
    else:
        suites, batch, repeat, warmup = run.args.suites, run.args.batch, run.args.repeat, run.args.warmup
    argv = ["bench", "--device", "cpu" if run.dry else "cuda", "--suite", ",".join(suites),
            "--dtype", spec["dtype"], "--tf32", spec["tf32"], "--direction", ",".join(run.args.directions),
            "--repeat", str(repeat), "--warmup", str(warmup), "--json", str(json_path),
            "--time-limit", str(max(1, int(time_limit)))]
    if spec["ops"]:
        argv += ["--ops", spec["ops"]]
    if batch:
        argv += ["--batch", str(batch)]
    return argv


def available_suites():
    """The suite names cnnfast bench knows, read from its source (no import: that needs torch)."""
    import ast  # noqa: PLC0415

    try:
        tree = ast.parse((ROOT / "cnnfast" / "bench" / "__init__.py").read_text())
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "SUITE_NAMES" for t in node.targets):
            try:
                return tuple(ast.literal_eval(node.value))
            except ValueError:
                return None
    return None


def stage_bench(run, stage, timeout):
    stage_deadline = time.monotonic() + timeout
    variants = list(run.args.variants)
    known = available_suites()
    if known is not None and not run.dry:
        run.bench_missing_suites = [s for s in run.args.suites if s not in known]
        run.args.suites = [s for s in run.args.suites if s in known]
        if run.bench_missing_suites:
            run.log.say(f"  note: cnnfast bench has no suite named {', '.join(run.bench_missing_suites)}")
        if not run.args.suites:
            return "failed", "none of the suites asked for exists in cnnfast bench"
    for i, variant in enumerate(variants):
        left = stage_deadline - time.monotonic()
        if left < 15:
            run.bench[variant] = {"status": "skipped", "note": "no time left in the bench's time box", "doc": None}
            continue
        share = left / (len(variants) - i)
        limit = max(5.0, share - BENCH_ROW_MARGIN)
        box = min(left, share + BENCH_KILL_AFTER)
        json_path = Path(run.tmp.name) / f"bench-{variant}.json"
        argv = bench_argv(run, variant, json_path, limit)
        if run.args.dry_run_hang == "bench":
            cmd = run.hang("bench")
        else:
            cmd = [run.python, "-m", "cnnfast"] + argv
        run.log.say(f"  bench {variant} ({VARIANTS[variant]['title']}): rows until {limit:.0f} s, time box {box:.0f} s")
        res = run_command(run.log, cmd, box, env=run.child_env())
        shown = [json_path.name if a == str(json_path) else a for a in argv]
        entry = {"command": "cnnfast " + shlex.join(shown), "seconds": res.seconds, "doc": None}
        if json_path.is_file():
            try:
                entry["doc"] = json.loads(json_path.read_text())
            except ValueError as e:
                entry["note"] = f"unreadable JSON: {e}"
        doc = entry["doc"]
        if res.timed_out:
            entry.update(status="timed out", note=f"killed at its time box of {box:.0f} s")
        elif doc is None:
            entry.update(status="failed", note=f"exit status {res.rc}: " + " | ".join(res.tail[-3:])[:300])
        else:
            rows = doc.get("rows", [])
            failed = [r for r in rows if r.get("passed") is False]
            not_run = len(doc.get("not_run") or [])
            parts = [f"{len(rows)} rows, {len(failed)} failed"]
            if not_run:
                parts.append(f"{not_run} not run at the time limit")
            status = "failed" if failed or res.rc != 0 else ("incomplete" if not_run else "ok")
            if res.rc not in (0, 1):
                parts.append(f"exit status {res.rc}")
            entry.update(status=status, note=", ".join(parts))
        run.bench[variant] = entry
        write_bench_json(run)
        run.log.say(f"  bench {variant}: {entry['status']} ({entry.get('note', '')}, {res.seconds:.0f} s)")
    write_bench_json(run)
    plot = write_bench_plot(run)
    statuses = [e["status"] for e in run.bench.values()]
    note = "; ".join(f"{v} {e['status']}" + (f" ({e['note']})" if e.get("note") else "") for v, e in run.bench.items())
    if plot:
        note += f"; {plot}"
    for worst in ("timed out", "failed", "skipped", "incomplete"):
        if worst in statuses:
            return worst, note
    return "ok", note


def write_bench_json(run):
    doc = {"schema": "cnnfast-gpu-check-bench/1", "date": run.date, "dry_run": run.dry,
           "environment": {k: v for k, v in run.env.items() if k != "tools"},
           "variants": {v: {"title": VARIANTS[v]["title"], "status": e["status"], "note": e.get("note", ""),
                            "command": e.get("command"), "seconds": e.get("seconds"), "bench": e.get("doc")}
                        for v, e in run.bench.items()}}
    path = run.out / BENCH_JSON
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    if tmp.stat().st_size > MAX_FILE_BYTES:  # the per-sample times are what makes it big
        for e in doc["variants"].values():
            for r in (e["bench"] or {}).get("rows", []):
                for side in ("cnnfast", "reference"):
                    if isinstance(r.get(side), dict):
                        r[side].pop("samples_s", None)
        with open(tmp, "w") as f:
            json.dump(doc, f)
    os.replace(tmp, path)


def _group(row):
    if row["op"] == "model":
        return "model fused" if str(row.get("args", "")).endswith("fused") else "model"
    return row["op"]


GROUPS = ("conv2d", "conv2d_relu", "conv2d_relu_max_pool2d", "max_pool2d", "relu", "model", "model fused")


def geomean(values):
    values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def ratio_cells(run):
    """{(suite, group, variant, direction): (geomean speed-up, timed rows, failed rows, not supported rows)}"""
    cells = {}
    for variant, entry in run.bench.items():
        for row in (entry.get("doc") or {}).get("rows", []):
            for group in (_group(row), "all"):
                key = (row["suite"], group, variant, row["direction"])
                c = cells.setdefault(key, {"speedups": [], "failed": 0, "ns": 0})
                if row.get("status") == "not supported":
                    c["ns"] += 1
                if row.get("passed") is False:
                    c["failed"] += 1
                if row.get("speedup"):
                    c["speedups"].append(row["speedup"])
    return {k: (geomean(c["speedups"]), len(c["speedups"]), c["failed"], c["ns"]) for k, c in cells.items()}


def _cell(value):
    if value is None:
        return "-"
    gm, n, failed, ns = value
    text = f"{gm:.2f}x" if gm is not None else ("n/s" if ns else "-")
    if failed:
        text += f" ({failed} FAIL)"
    return text


def write_bench_plot(run):
    """bench.png: geometric-mean speed-up per suite and op, one panel per variant."""
    cells = ratio_cells(run)
    variants = [v for v in run.bench if run.bench[v].get("doc")]
    if not variants:
        return None
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
        from matplotlib.patches import Patch  # noqa: PLC0415
        from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: PLC0415
    except Exception as e:
        return f"no bench.png ({type(e).__name__}: matplotlib)"
    suites = [s for s in BENCH_SUITES if any(k[0] == s for k in cells)] or sorted({k[0] for k in cells})
    colors = dict(zip(GROUPS, ("#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974", "#64b5cd", "#dd8452")))
    fig, axes = plt.subplots(len(variants), 1, figsize=(15, 3.3 * len(variants) + 0.8), squeeze=False)
    ref = "PyTorch, CPU (dry run)" if run.dry else "cuDNN / PyTorch"
    for ax, variant in zip(axes[:, 0], variants):
        x = 0.0
        ticks, labels, heights = [], [], []
        for suite in suites:
            start = x
            for group in GROUPS:
                for direction in run.args.directions:
                    v = cells.get((suite, group, variant, direction))
                    if not v or v[0] is None:
                        continue
                    ax.bar(x, v[0], color=colors[group], hatch="//" if direction != "fwd" else None,
                           edgecolor="red" if v[2] else "white", linewidth=1.5 if v[2] else 0.5)
                    ax.text(x, v[0], f"{v[0]:.2f}", ha="center", va="bottom", fontsize=5.5, rotation=90)
                    heights.append(v[0])
                    x += 1
            if x > start:
                ticks.append((start + x - 1) / 2)
                gm = cells.get((suite, "all", variant, run.args.directions[-1]))
                labels.append(suite + (f"\n{run.args.directions[-1]} geomean {gm[0]:.2f}x" if gm and gm[0] else ""))
                x += 1.5
        ax.axhline(1.0, color="black", linewidth=1)
        ax.set_yscale("log")
        if heights:
            lo, hi = min(heights + [1.0]) / 1.6, max(heights + [1.0]) * 1.9
            ax.set_ylim(lo, hi)
            ax.set_yticks([t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) if lo <= t <= hi])
        else:
            ax.text(0.5, 0.75, "no timed rows (n/s: cnnfast has no kernel for this dtype on this device)",
                    transform=ax.transAxes, ha="center", va="center", fontsize=9)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(ticks)
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel(f"speed-up vs {ref}", fontsize=8)
        ax.set_title(f"{VARIANTS[variant]['title']} ({run.bench[variant]['status']}): geometric mean per suite "
                     "and op; plain: fwd, hatched: fwdbwd; red edge: a row failed its check", fontsize=9)
    handles = [Patch(color=colors[g], label=g) for g in GROUPS]
    dev = (run.env.get("device") or {}).get("name", "the CPU")
    fig.suptitle(f"cnnfast vs {ref} on {dev}, torch {run.env.get('torch', '?')}, {run.date}", fontsize=10, y=0.995)
    top = 1 - 0.75 / fig.get_figheight()
    fig.legend(handles=handles, loc="upper center", ncol=len(GROUPS), fontsize=8, bbox_to_anchor=(0.5, top + 0.02))
    fig.tight_layout(rect=(0, 0, 1, top - 0.01))
    fig.savefig(run.out / BENCH_PNG, dpi=100)
    plt.close(fig)
    return None


# --- stage: sanitizer -----------------------------------------------------------------------------

def sanitizer_command(run, tool, binary, plain=False):
    """compute-sanitizer on the cases: only cnnfast's kernels checked (their names hold "cnnfast"), CUDA
    API errors of torch's own probing not counted; ``plain``: the options every version knows."""
    extra = [] if plain else ["--kernel-name", "kns=cnnfast", "--print-limit", "20", "--report-api-errors", "no"]
    return [binary, "--tool", tool, "--error-exitcode", "99", *extra,
            run.python, str(TOOLS / "gpu_sanitize_cases.py"), "--device", "cuda"]


_UNKNOWN_OPTION = re.compile(r"(unrecognized|unknown|invalid|unsupported) (command[- ]line )?(option|argument)",
                             re.IGNORECASE)


def stage_sanitizer(run, stage, timeout):
    binary = (run.env.get("tools") or {}).get("compute-sanitizer")
    stage_deadline = time.monotonic() + timeout
    if not binary and not run.dry:
        return "skipped", "compute-sanitizer not found on the PATH or in the CUDA toolkit"
    for i, tool in enumerate(SANITIZER_TOOLS):
        left = stage_deadline - time.monotonic()
        if left < 2:
            run.sanitizer[tool] = {"status": "skipped", "note": "no time left"}
            continue
        box = left / (len(SANITIZER_TOOLS) - i)
        if run.args.dry_run_hang == "sanitizer":
            cmd = run.hang("sanitizer")
        elif run.dry:  # the cases themselves, on the CPU, without the tool
            cmd = [run.python, str(TOOLS / "gpu_sanitize_cases.py"), "--device", "cpu"]
        else:
            cmd = sanitizer_command(run, tool, binary)
        env = run.child_env(PYTORCH_NO_CUDA_MEMORY_CACHING=1)
        started = time.monotonic()
        res = run_command(run.log, cmd, box, env=env, keep_lines=True)
        if (not run.dry and res.rc not in (0, None) and res.seconds < 15
                and _UNKNOWN_OPTION.search("\n".join(res.lines))):  # an older tool: again with plain options
            run.log.say(f"  {tool}: this compute-sanitizer refused an option; again without the kernel filter")
            res = run_command(run.log, sanitizer_command(run, tool, binary, plain=True),
                              box - (time.monotonic() - started), env=env, keep_lines=True)
        text = "\n".join(res.lines)
        entry = {"seconds": res.seconds, "rc": res.rc}
        m = re.search(r"ERROR SUMMARY: (\d+) error", text)
        entry["errors"] = int(m.group(1)) if m else None
        m = re.search(r"RACECHECK SUMMARY: (\d+) hazards? displayed \((\d+) errors?, (\d+) warnings?\)", text)
        if m:
            entry["hazards"], entry["errors"], entry["warnings"] = (int(g) for g in m.groups())
        m = re.search(r"sanitizer cases on \w+: (\d+) ok, (\d+) failed, (\d+) skipped", text)
        entry["cases"] = m.group(0).split(": ", 1)[1] if m else None
        findings = [ln.strip("= ").strip() for ln in res.lines if re.match(r"=+ +(Invalid|Race|Error|Warning|.*hazard)", ln)]
        entry["findings"] = findings[:10]
        bad_cases = [ln for ln in res.lines if ln.startswith("case ") and ("MISMATCH" in ln or "ERROR" in ln)]
        entry["bad_cases"] = bad_cases[:10]
        if res.timed_out:
            entry.update(status="timed out", note=f"killed at its time box of {box:.0f} s")
        elif res.rc == 0 and (entry["errors"] in (0, None)) and not bad_cases:
            entry.update(status="ok", note=("dry run: the cases alone, on the CPU, without compute-sanitizer"
                                            if run.dry else f"0 errors; cases {entry['cases']}"))
        else:
            entry.update(status="failed", note=f"exit status {res.rc}, {entry['errors']} errors; "
                                               f"{(findings or bad_cases or res.tail[-1:] or [''])[0][:200]}")
        run.sanitizer[tool] = entry
        run.log.say(f"  {tool}: {entry['status']} ({entry['note']}, {res.seconds:.0f} s)")
        for line in findings[:5] + bad_cases[:5]:
            run.log.say("    " + line[:300])
    statuses = [e["status"] for e in run.sanitizer.values()]
    note = "; ".join(f"{t} {e['status']}" for t, e in run.sanitizer.items())
    for worst in ("timed out", "failed", "skipped"):
        if worst in statuses:
            return worst, note
    return "ok", note


# --- summary --------------------------------------------------------------------------------------

def _md_table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return out


def _fmt_s(s):
    return f"{s:.0f} s" if s is not None else "-"


def stage_rows(run):
    rows = []
    for name in STAGES:
        st = run.stages[name]
        budget = f"{st.budget:.0f} s" if st.budget is not None else "-"
        rows.append([name, st.status, _fmt_s(st.seconds) if st.status != "not run" else "-", budget, st.note])
    return rows


def bench_table(run, overall_only=False):
    """Headers and rows of the speed-up table: one row per suite (and op), a column per variant and direction."""
    cells = ratio_cells(run)
    variants = list(run.bench)
    cols = [(v, d) for v in variants for d in run.args.directions]
    headers = ["suite", "op"] + [f"{v} {d}" for v, d in cols]
    rows = []
    suites = [s for s in BENCH_SUITES if any(k[0] == s for k in cells)] + sorted(
        {k[0] for k in cells if k[0] not in BENCH_SUITES})
    for suite in suites:
        groups = ["all"] if overall_only else [g for g in GROUPS if any(k[:2] == (suite, g) for k in cells)] + ["all"]
        for group in groups:
            label = "all rows" if group == "all" else group
            rows.append([suite, label] + [_cell(cells.get((suite, group, v, d))) for v, d in cols])
    return headers, rows


def write_summary(run, final=False):
    lines = [f"# cnnfast gpu-check{' (dry run on the CPU)' if run.dry else ''}", ""]
    elapsed = time.monotonic() - run.started
    lines.append(f"{run.date}; commit {_git_commit() or '?'}; command `{' '.join(shlex.quote(a) for a in sys.argv)}`; "
                 f"{'finished' if final else 'in progress'} after {elapsed:.0f} s (total time box {run.args.total:.0f} s).")
    lines.append("")
    lines.append("## Stages")
    lines.append("")
    lines += _md_table(["stage", "status", "time", "time box", "note"], stage_rows(run))
    lines += ["", "## Environment", ""]
    lines += [f"- {ln}" for ln in env_lines(run.env, run.dry)]
    if run.env.get("nvidia_smi"):
        lines.append(f"- nvidia-smi: {run.env['nvidia_smi']}")
    if run.build:
        lines += ["", "## Build", ""]
        b = run.build
        lines.append(f"- `{' '.join(f'{k}={b[k]}' for k in ('CNNFAST_CUDA', 'TORCH_CUDA_ARCH_LIST', 'MAX_JOBS') if k in b)} "
                     f"{b.get('command', '')}` (ninja: {'yes' if b.get('ninja') else 'no'})")
        if b.get("seconds") is not None:
            lines.append(f"- took {b['seconds']:.0f} s; CUDA kernels: {b.get('cuda', '?')}, archs {b.get('archs', '?')}")
        if b.get("kernels"):
            k = b["kernels"]
            lines.append(f"- kernel report ({KERNEL_REPORT}): {k['count']} kernels for {', '.join(k['archs'])}, "
                         f"{k['with_spills_or_stack']} with spills or a stack frame, at most {k['max_registers']} registers")
        if b.get("error"):
            lines.append(f"- error: `{b['error']}`")
    if run.tests:
        t = run.tests
        lines += ["", "## GPU tests (pytest -m cuda)", ""]
        if "tests" in t:
            lines.append(f"- {t['tests']} tests: {t['passed']} passed, {t['failures']} failed, {t['errors']} errors, "
                         f"{t['skipped']} skipped ({t['time']:.0f} s in tests; per-test limit {run.args.per_test_limit:g} s)")
            for f in t.get("failed", [])[:20]:
                lines.append(f"  - FAILED {f}")
            for r in t.get("skip_reasons", [])[:3]:
                lines.append(f"  - skipped: {r}")
        if t.get("error"):
            lines.append(f"- {t['error']}")
    if run.bench:
        ref = "PyTorch on the CPU (dry run)" if run.dry else "cuDNN (convolutions; ATen's own kernels for max_pool2d and ReLU)"
        lines += ["", f"## cnnfast vs {ref}", ""]
        lines.append("Speed-up = reference time / cnnfast time (above 1: cnnfast is faster), the geometric mean over "
                     "the rows of each suite and op; every row is checked against float64 (FAIL: rows that did not "
                     "pass; n/s: no cnnfast kernel for that dtype there). "
                     + ("" if run.dry else "cudnn.benchmark = True, CUDA events, TF32 set the same on both sides."))
        lines.append("")
        for v, e in run.bench.items():
            lines.append(f"- {v}: {VARIANTS[v]['title']}: {e['status']}" + (f" ({e['note']})" if e.get("note") else "")
                         + (f"; `{e['command']}`" if e.get("command") else ""))
        lines.append("")
        headers, rows = bench_table(run)
        lines += _md_table(headers, rows)
        failed = [(v, r) for v, e in run.bench.items() for r in (e.get("doc") or {}).get("rows", [])
                  if r.get("passed") is False]
        if failed:
            lines += ["", f"Failed rows ({len(failed)}):", ""]
            for v, r in failed[:40]:
                lines.append(f"- {v} {r['suite']} {r['op']} {r['args']} {r['direction']} {r['dtype']}: "
                             f"{r.get('status')}: {r.get('message', '')}")
        not_run = [(v, len((e.get("doc") or {}).get("not_run") or [])) for v, e in run.bench.items()]
        if any(n for _, n in not_run):
            lines += ["", "Not run at the time limit: " + ", ".join(f"{v} {n} rows" for v, n in not_run if n)]
        for suite in run.bench_missing_suites:
            lines += ["", f"cnnfast bench has no {suite} suite: not run."]
    if run.sanitizer:
        lines += ["", "## compute-sanitizer", ""]
        rows = []
        for tool, e in run.sanitizer.items():
            rows.append([tool, e["status"], e.get("errors") if e.get("errors") is not None else "-",
                         e.get("cases") or "-", _fmt_s(e.get("seconds")), e.get("note", "")])
        lines += _md_table(["tool", "status", "errors", "cases", "time", "note"], rows)
        for tool, e in run.sanitizer.items():
            for f in (e.get("findings") or []) + (e.get("bad_cases") or []):
                lines.append(f"- {tool}: `{f[:300]}`")
    lines += ["", "## Files", ""]
    for name in OUTPUT_NAMES:
        p = run.out / name
        if p.is_file():
            lines.append(f"- {name} ({p.stat().st_size / 1024:.0f} KiB)")
    path = run.out / SUMMARY_NAME
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def _git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _text_table(headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return [fmt(headers), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]


def print_short_table(run):
    log = run.log
    log.say("")
    log.say(f"gpu-check{' (dry run)' if run.dry else ''}: {time.monotonic() - run.started:.0f} s, results in {run.out}")
    rows = [[r[0], r[1], r[2], (r[4][:90] + "...") if len(r[4]) > 93 else r[4]] for r in stage_rows(run)]
    for line in _text_table(["stage", "status", "time", "note"], rows):
        log.say(line)
    if any(e.get("doc") for e in run.bench.values()):
        headers, rows = bench_table(run, overall_only=True)
        log.say("")
        log.say("geometric-mean speed-up of cnnfast over " + ("PyTorch (CPU, dry run)" if run.dry else "cuDNN/PyTorch")
                + " per suite (details in summary.md):")
        for line in _text_table([headers[0]] + headers[2:], [[r[0]] + r[2:] for r in rows]):
            log.say(line)


# --- main -----------------------------------------------------------------------------------------

STAGE_FUNCS = {"env": stage_env, "build": stage_build, "tests": stage_tests, "bench": stage_bench,
               "sanitizer": stage_sanitizer}


def check_outputs(run):
    """At most MAX_FILES files, all directly in the output folder, each under the size cap."""
    problems = []
    files = [p for p in run.out.rglob("*") if p.is_file()]
    if len(files) > MAX_FILES:
        problems.append(f"{len(files)} files in {run.out} (at most {MAX_FILES} come back)")
    for p in files:
        if p.parent != run.out:
            problems.append(f"{p} is in a subfolder")
        if p.stat().st_size > MAX_FILE_BYTES:
            problems.append(f"{p.name} is {p.stat().st_size >> 20} MiB")
    return problems


def execute(run):
    """Every selected stage in order, each in its time box; the summary after each. Returns the exit status."""
    build_failed = False
    for name in STAGES:
        st = run.stages[name]
        if name not in run.selected:
            st.status, st.note = "skipped", "not selected (--stages)"
            continue
        if build_failed and name in ("tests", "bench", "sanitizer"):
            st.status, st.note = "skipped", "the build failed"
            write_summary(run)
            continue
        box = run.time_box(name)
        st.budget = max(box, 0)
        if box < 1:
            st.status, st.note = "skipped", "no time left in the total time box"
            write_summary(run)
            continue
        run.log.say(f"== {name} (time box {box:.0f} s) ==")
        t0 = time.monotonic()
        try:
            if run.args.dry_run_hang == name and name in ("env", "build"):
                res = run_command(run.log, run.hang(name), box, env=run.child_env())
                st.status, st.note = ("timed out", f"over its time box of {box:.0f} s") if res.timed_out else ("failed", "")
            else:
                st.status, st.note = STAGE_FUNCS[name](run, st, box)
        except NoDevice:
            raise
        except Exception as e:  # a broken stage is reported; the next one still runs
            st.status, st.note = "failed", f"gpu_check error: {type(e).__name__}: {e}"
            run.log.write(f"[gpu-check: stage {name} raised {type(e).__name__}: {e}]", force=True)
        st.seconds = time.monotonic() - t0
        run.log.say(f"== {name}: {st.status} in {st.seconds:.0f} s{': ' + st.note if st.note else ''}")
        if name == "build" and st.status != "ok":
            build_failed = True
        write_summary(run)
    all_ok = all(run.stages[s].status == "ok" for s in STAGES if s in run.selected)
    return EXIT_OK if all_ok else EXIT_FAILED


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="tools/gpu_check.py", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="where the files go (default: $OUT when set, else gpu-check/ in the checkout)")
    parser.add_argument("--dry-run", action="store_true",
                        help="run every stage's plumbing on the CPU with stand-ins (no GPU needed)")
    parser.add_argument("--python", default=sys.executable,
                        help="the python (with torch) to build and test with (default: the one running this)")
    parser.add_argument("--stages", default=",".join(STAGES), type=_stage_list,
                        help=f"comma-separated stages to run ({','.join(STAGES)}; env always runs; default: all)")
    parser.add_argument("--budget", action="append", default=[], metavar="STAGE=SECONDS",
                        help="a stage's time box, e.g. --budget bench=300 (defaults: "
                             + ", ".join(f"{k} {v}" for k, v in BUDGETS.items()) + "); may be repeated")
    parser.add_argument("--total", type=float, default=TOTAL_BUDGET, metavar="SECONDS",
                        help=f"time box of the whole run (default: {TOTAL_BUDGET}); later stages keep a minimum "
                             "(" + ", ".join(f"{k} {v}" for k, v in RESERVES.items() if k != "env") + " s)")
    parser.add_argument("--per-test-limit", type=float, default=PER_TEST_LIMIT, metavar="SECONDS",
                        help=f"per-test time limit of the GPU tests (default: {PER_TEST_LIMIT}; a test stuck outside "
                             f"Python ends the pytest run {PER_TEST_GRACE} s later)")
    parser.add_argument("--archs", default=None, help="TORCH_CUDA_ARCH_LIST (default: the device's, e.g. 9.0)")
    parser.add_argument("--jobs", type=int, default=None, help="MAX_JOBS for the build (default: the CPU cores)")
    parser.add_argument("--suites", default=",".join(BENCH_SUITES), type=_csv,
                        help=f"bench suites (default: {','.join(BENCH_SUITES)})")
    parser.add_argument("--variants", default=",".join(VARIANTS), type=_variant_list,
                        help="bench variants, in the order run: " + "; ".join(f"{k} = {v['title']}" for k, v in VARIANTS.items())
                             + f" (default: {','.join(VARIANTS)})")
    parser.add_argument("--directions", default=",".join(BENCH_DIRECTIONS), type=_csv,
                        help=f"bench directions: fwd, bwd, fwdbwd (default: {','.join(BENCH_DIRECTIONS)})")
    parser.add_argument("--repeat", type=int, default=BENCH_REPEAT, help=f"bench --repeat (default: {BENCH_REPEAT})")
    parser.add_argument("--warmup", type=int, default=BENCH_WARMUP, help=f"bench --warmup (default: {BENCH_WARMUP})")
    parser.add_argument("--batch", type=int, default=None, help="bench --batch for every suite (default: each suite's)")
    parser.add_argument("--verbose", action="store_true", help="print every command's output, not only the log's")
    parser.add_argument("--dry-run-hang", default=None, choices=STAGES, metavar="STAGE",
                        help="with --dry-run: replace STAGE by a command that hangs, to watch its time box end it "
                             "and the later stages run")
    args = parser.parse_args(argv)
    budgets = dict(BUDGETS)
    for item in args.budget:
        name, sep, value = item.partition("=")
        try:
            if not sep or name not in BUDGETS:
                raise ValueError
            budgets[name] = float(value)
        except ValueError:
            parser.error(f"--budget takes STAGE=SECONDS with STAGE one of {', '.join(STAGES)}, got {item!r}")
    args.budget = budgets
    if args.dry_run_hang and not args.dry_run:
        parser.error("--dry-run-hang needs --dry-run")
    return args


def _csv(text):
    return [t.strip() for t in text.split(",") if t.strip()]


def _stage_list(text):
    names = _csv(text)
    bad = [n for n in names if n not in STAGES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown stage {', '.join(bad)} (choose from {', '.join(STAGES)})")
    return names


def _variant_list(text):
    names = _csv(text)
    bad = [n for n in names if n not in VARIANTS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown variant {', '.join(bad)} (choose from {', '.join(VARIANTS)})")
    return names


def main(argv=None):
    args = parse_args(argv)
    if not args.dry_run and not device_nodes_present():
        print("gpu-check: no CUDA device: this machine has no NVIDIA device files (/dev/nvidia*) and no nvidia-smi. "
              "`make gpu-check` needs a GPU; `python3 tools/gpu_check.py --dry-run` runs every stage's plumbing "
              "on the CPU.", file=sys.stderr)
        return EXIT_NO_DEVICE
    out = Path(args.out or os.environ.get("OUT") or ROOT / "gpu-check").resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_NAMES:  # a previous run's files would read as this one's
        try:
            (out / name).unlink()
        except FileNotFoundError:
            pass
    run = Run(args, out)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    code = EXIT_FAILED
    try:
        run.log.say(f"gpu-check{' --dry-run' if run.dry else ''}: {run.date}, commit {_git_commit() or '?'}, "
                    f"python {run.python}, output in {out}")
        code = execute(run)
    except NoDevice as e:
        run.log.say(f"gpu-check: no CUDA device: {e}")
        print(f"gpu-check: no CUDA device: {e}", file=sys.stderr)
        run.stages["env"].status, run.stages["env"].note = "failed", f"no CUDA device: {e}"
        code = EXIT_NO_DEVICE
    except (KeyboardInterrupt, SystemExit) as e:
        run.log.say(f"gpu-check: stopped ({type(e).__name__}); writing what there is")
        code = EXIT_FAILED
    finally:
        try:
            write_summary(run, final=True)
            if code != EXIT_NO_DEVICE:
                print_short_table(run)
            problems = check_outputs(run)
            for p in problems:
                run.log.say(f"gpu-check: output problem: {p}")
            if problems and code == EXIT_OK:
                code = EXIT_FAILED
        finally:
            run.log.close()
            run.tmp.cleanup()
    return code


if __name__ == "__main__":
    sys.exit(main())
