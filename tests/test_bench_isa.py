"""``cnnfast bench --cpu-isa``: both sides on one instruction set, in a fresh process."""
import argparse
import json
import os
import subprocess
import sys

import pytest
import torch

import cnnfast
from cnnfast import bench
from cnnfast.bench import isa, report

from test_cpu_capability import PATHS


def parse(*argv):
    parser = argparse.ArgumentParser(prog="cnnfast bench")
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_every_name_sets_every_switch_of_both_sides():
    assert set(isa.ENVIRONMENT) == set(isa.NAMES)
    for name, env in isa.ENVIRONMENT.items():
        assert set(env) == set(isa.KEYS)
        assert env["CNNFAST_CPU_CAPABILITY"] == name and env["ATEN_CPU_CAPABILITY"] == name
    # inductor's compiled kernels are kept apart per set (a shared cache served AVX-512 code to AVX2 runs)
    assert len({env["TORCHINDUCTOR_CACHE_DIR"] for env in isa.ENVIRONMENT.values()}) == len(isa.NAMES)
    assert isa.in_effect("avx2", dict(isa.ENVIRONMENT["avx2"]))
    assert not isa.in_effect("avx2", {**isa.ENVIRONMENT["avx2"], "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"})
    assert not isa.in_effect("avx2", {})


def test_an_unknown_name_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        parse("--cpu-isa", "sse2")
    assert "invalid choice: 'sse2'" in capsys.readouterr().err


def test_a_set_this_cpu_lacks_is_refused_naming_it(monkeypatch, capsys):
    monkeypatch.setattr(type(cnnfast.backends.cpu), "supported_capability", property(lambda self: "avx2"))
    assert isa.check("avx512") == "--cpu-isa avx512: this CPU supports at most avx2"
    assert isa.check("avx2") is None and isa.check("default") is None
    assert bench.run(parse("--cpu-isa", "avx512")) == 2
    assert "--cpu-isa avx512: this CPU supports at most avx2" in capsys.readouterr().err


@pytest.mark.parametrize("name", PATHS)
def test_the_run_restarts_with_both_sides_lowered(tmp_path, name):
    """The command restarts itself once with the switches set; the JSON says what each side ran on."""
    out = tmp_path / "b.json"
    env = {k: v for k, v in os.environ.items() if k not in isa.KEYS}
    proc = subprocess.run(
        [sys.executable, "-m", "cnnfast", "bench", "--cpu-isa", name, "--device", "cpu", "--suite", "lenet",
         "--ops", "relu", "--direction", "fwd", "--batch", "2", "--repeat", "1", "--warmup", "1",
         "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"(both sides lowered by --cpu-isa {name})" in proc.stdout
    doc = json.loads(out.read_text())
    assert report.validate(doc) == []
    assert doc["settings"]["cpu_isa"] == name
    sets = doc["environment"]["instruction_sets"]
    assert sets["cnnfast"] == name and sets["aten"] == name.upper()
    assert sets["onednn_max"] == isa.ENVIRONMENT[name]["ONEDNN_MAX_CPU_ISA"]
    assert doc["peaks"]["fma"]["float32"]["capability"] == name


def test_without_the_flag_each_side_runs_at_its_best():
    sets = isa.describe()
    assert sets["cnnfast"] == cnnfast.backends.cpu.capability
    assert sets["aten"] == torch.backends.cpu.get_cpu_capability()


def test_the_rivals_line_says_which_rivals_are_lowered():
    doc = {"environment": {"threads": 2, "rivals": {}}, "settings": {"rivals": ["onnxruntime", "openvino"]}}
    assert "--cpu-isa" not in report.rivals_header(doc)
    doc["settings"]["cpu_isa"] = "avx2"
    line = report.rivals_header(doc)
    assert "--cpu-isa avx2 lowers inductor and OpenVINO too, not ONNX Runtime" in line
    doc["settings"]["rivals"] = ["inductor"]
    assert "ONNX Runtime" not in report.rivals_header(doc).split("; --cpu-isa")[1]
