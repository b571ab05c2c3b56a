"""Shared body of the benchmark tests: one side of one case, checked once, then timed."""
import torch

from cnnfast.bench import roofline, runner


def bench_one(benchmark, case, direction, side, device):
    prepared = runner.Prepared(case, direction, torch.float32, "nchw", device)
    impl = runner.cnnfast_impl() if side == "cnnfast" else runner.reference_impl()
    if side == "cnnfast":
        # the same check as `cnnfast bench`: against a float64 computation, PyTorch's error as yardstick
        result = runner.check(prepared, impl, runner.reference_impl())
        assert result["passed"], result["message"]
    benchmark.group = f"{case.id} {direction}"
    benchmark.extra_info.update(
        side=side, suite=case.suite, op=case.op, args=case.describe(), direction=direction,
        flops=roofline.flops(case, direction), min_bytes=roofline.min_bytes(case, direction, 4),
    )
    fn = prepared.fn(impl)
    if torch.device(device).type == "cuda":
        def timed():
            fn()
            torch.cuda.synchronize()
    else:
        timed = fn
    benchmark(timed)
