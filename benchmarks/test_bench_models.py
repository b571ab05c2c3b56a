"""Whole models: an inference forward (fwd) and a training step (fwdbwd: forward, loss, backward),
``cnnfast.convert(model)`` (and with ``fuse=True``) against the unconverted model."""
from _common import bench_one


def test_model(benchmark, model_case, side, bench_device):
    case, direction = model_case
    bench_one(benchmark, case, direction, side, bench_device)
