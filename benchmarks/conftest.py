"""pytest-benchmark suite over the same cases as ``cnnfast bench`` (the case list comes from
cnnfast.bench.suites, read from the models with hooks).

    pytest benchmarks/ --benchmark-only                      # default suites, cnnfast and torch
    pytest benchmarks/ --benchmark-only --benchmark-autosave # save, then after a change:
    pytest benchmarks/ --benchmark-only --benchmark-compare  # compare with the last saved run

Every case gives two benchmarks, ``[...-cnnfast]`` and ``[...-torch]``, in one group named after
the case, so the table puts them side by side and ``--benchmark-compare`` matches them by name
across commits. Options below choose suites, batch, directions and device.
"""
import pytest
import torch

from cnnfast.bench import DEFAULT_SUITES, DIRECTIONS, SUITE_NAMES, suites


def pytest_addoption(parser):
    group = parser.getgroup("cnnfast bench")
    group.addoption("--bench-suites", default=",".join(DEFAULT_SUITES),
                    help=f"comma-separated suites ({', '.join(SUITE_NAMES)}); default: {','.join(DEFAULT_SUITES)}")
    group.addoption("--bench-batch", type=int, default=None, help="batch for every suite (default: per suite)")
    group.addoption("--bench-directions", default="fwd,fwdbwd", help="comma-separated fwd, bwd, fwdbwd")
    group.addoption("--bench-device", default=None, help="cpu or cuda (default: cuda when present)")


def _split(text, choices, what):
    items = [t for t in text.split(",") if t]
    bad = [t for t in items if t not in choices]
    if bad:
        raise pytest.UsageError(f"unknown {what} {bad}; choose from {', '.join(choices)}")
    return items


def pytest_generate_tests(metafunc):
    config = metafunc.config
    wanted = [n for n in ("layer_case", "model_case") if n in metafunc.fixturenames]
    if not wanted:
        return
    names = _split(config.getoption("--bench-suites"), SUITE_NAMES, "suite")
    directions = _split(config.getoption("--bench-directions"), DIRECTIONS, "direction")
    batch = config.getoption("--bench-batch")
    params, ids = [], []
    for case in suites.all_cases(names, batch):
        if (case.op == "model") != (wanted[0] == "model_case"):
            continue
        for direction in directions:
            if case.op == "model" and direction == "bwd":
                continue
            params.append((case, direction))
            ids.append(f"{case.id}-{direction}")
    metafunc.parametrize(wanted[0], params, ids=ids)
    metafunc.parametrize("side", ["cnnfast", "torch"])


@pytest.fixture(scope="session")
def bench_device(pytestconfig):
    device = pytestconfig.getoption("--bench-device")
    if device is None:
        from cnnfast.bench.command import best_device

        device = best_device()
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device present")
    return device
