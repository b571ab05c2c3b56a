"""The cnnfast command: check, info, and python -m cnnfast."""
import dataclasses
import io
import subprocess
import sys

import pytest
import torch

from cnnfast import cli
from cnnfast.bench import runner


def run_cli(*argv):
    out = io.StringIO()
    args = cli.build_parser([argv[0]]).parse_args(list(argv))
    return args._run(args, out=out), out.getvalue()


def test_check_prints_a_passing_table():
    code, text = run_cli("check", "--suite", "lenet", "--batch", "1")
    assert code == 0, text
    assert "max abs err" in text and "lenet conv2d" in text and "1x1x28x28 w6x1x5x5+b s1 p2" in text
    assert "lenet conv2d_relu_max_pool2d" in text and "+ k2 s2 p0" in text
    assert text.strip().endswith("12 passed, 0 failed")


def test_check_fails_on_a_wrong_kernel(monkeypatch):
    good = runner.cnnfast_impl()

    def wrong():  # conv2d 0.1% off: a thousand times past a float32 tolerance
        return dataclasses.replace(good, conv2d=lambda *a: good.conv2d(*a) * 1.001)

    monkeypatch.setattr(runner, "cnnfast_impl", wrong)
    code, text = run_cli("check", "--suite", "lenet", "--batch", "1")
    assert code == 1
    assert "FAIL" in text and "2 failed" in text  # the two plain conv2d cases


def test_info_names_versions_and_build():
    code, text = run_cli("info")
    assert code == 0
    assert f"torch {torch.__version__}" in text and "CUDA kernels:" in text and "CPU capability" in text


def test_python_dash_m_and_unknown_command():
    done = subprocess.run([sys.executable, "-m", "cnnfast", "info"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "cnnfast 0.1.0" in done.stdout
    with pytest.raises(SystemExit) as e:
        cli.main(["no-such-command"])
    assert e.value.code == 2
