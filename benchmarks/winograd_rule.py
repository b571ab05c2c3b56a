"""The measurement behind the Winograd path rule (csrc/cpu/conv2d/path.cpp, use_winograd): on one SIMD
path, every 3x3 stride-1 convolution of the bench suites timed with cnnfast.backends.cpu.winograd
"on" and "off" and against torch, forward and forward+backward, in rounds that run the three in turn
(so each ratio is of timings taken within the same second). Prints, per layer and direction, the
Winograd form's floor (its GEMMs' FLOPs over the path's FMA peak, measured in the same run), the
direct form's, the best time of each, and the ratios off/on and torch/on: of the best times, then the
median and quartiles of the per-round ratios. On a shared machine other jobs only ever slow a sample
down, and a parallel region waits for its slowest thread, so the best of many short samples is the
figure that is least disturbed. Run it under `flock /tmp/bench.lock`:

    flock /tmp/bench.lock python benchmarks/winograd_rule.py --capability avx2 --threads 2
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import cnnfast
from cnnfast.bench import timing
from cnnfast.bench.suites import suite_cases

SUITES = ("resnet-cifar", "resnet18", "mnist-cnn")


def layers(suites):
    """The distinct 3x3 stride-1 dilation-1 convolutions of the suites (the ones Winograd applies to)."""
    out = []
    for suite in suites:
        for case in suite_cases(suite, ops=("conv2d",)):
            p = case.p
            if tuple(p["weight"][2:]) == (3, 3) and tuple(p["stride"]) == (1, 1) and tuple(p["dilation"]) == (1, 1):
                out.append((suite, case))
    return out


def floors(p, peak):
    """Seconds of the Winograd form's 16 GEMMs (2 x 16 x K x C/groups x tiles FLOPs) and of the direct
    form (2 x N x K x P x Q x 9 C/groups), forward, at the FMA peak."""
    n, c, h, w = p["input"]
    k, cg = p["weight"][0], p["weight"][1]
    pad_h, pad_w = p["padding"]
    P, Q = h + 2 * pad_h - 2, w + 2 * pad_w - 2
    tiles = n * ((P + 1) // 2) * ((Q + 1) // 2)
    return 2 * 16 * k * cg * tiles / peak, 2 * n * k * P * Q * 9 * cg / peak


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capability", default="avx2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--suites", default=",".join(SUITES))
    ap.add_argument("--min-sample-ms", type=float, default=5.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cpu = cnnfast.backends.cpu
    cpu.capability = args.capability
    peak = timing.fma_peak("float32", capability=cpu.capability)["flops"]
    print(f"capability {cpu.capability} (CPU supports {cpu.supported_capability}), {args.threads} threads, "
          f"FMA peak float32 {peak / 1e9:.0f} GFLOP/s, {args.rounds} rounds")
    found = layers(args.suites.split(","))
    suites_with = {s for s, _ in found}
    for s in args.suites.split(","):
        if s not in suites_with:
            print(f"{s}: no 3x3 stride-1 convolution")
    print(f"{'layer':42} {'dir':6} {'wino floor':>10} {'direct floor':>12} {'on ms':>8} {'off ms':>8} {'torch ms':>8}"
          f" {'off/on: best, rounds':>22} {'torch/on: best, rounds':>22}")
    g = torch.Generator().manual_seed(0)
    for suite, case in found:
        p = case.p
        x = torch.randn(*p["input"], generator=g)
        w = torch.randn(*p["weight"], generator=g) / (p["weight"][1] * 9) ** 0.5
        b = torch.randn(p["weight"][0], generator=g) if p["bias"] else None
        kw = dict(padding=tuple(p["padding"]), groups=p["groups"])
        wino_floor, direct_floor = floors(p, peak)
        for direction in ("fwd", "fwdbwd"):
            xs, ws = x.clone().requires_grad_(direction == "fwdbwd"), w.clone().requires_grad_(direction == "fwdbwd")
            bs = None if b is None else b.clone().requires_grad_(direction == "fwdbwd")
            leaves = [t for t in (xs, ws, bs) if t is not None]

            def run(conv):
                if direction == "fwd":
                    with torch.no_grad():
                        return conv(xs, ws, bs, **kw)
                y = conv(xs, ws, bs, **kw)
                return torch.autograd.grad(y, leaves, torch.ones_like(y))

            variants = {"on": (cnnfast.functional.conv2d, "on"), "off": (cnnfast.functional.conv2d, "off"),
                        "torch": (F.conv2d, "off")}

            def sample(name, inner):
                conv, setting = variants[name]
                cpu.winograd = setting
                t0 = time.perf_counter()
                for _ in range(inner):
                    run(conv)
                return (time.perf_counter() - t0) / inner

            for name in variants:  # warm-up (scratch pools, output cache)
                sample(name, 2)
            inner = max(1, int(args.min_sample_ms / 1e3 / min(sample(n, 1) for n in variants)))
            times = {n: [] for n in variants}
            for r in range(args.rounds):
                order = list(variants)[r % 3:] + list(variants)[:r % 3]  # rotate who goes first
                for name in order:
                    times[name].append(sample(name, inner))
            cpu.winograd = "auto"
            best = {n: min(t) for n, t in times.items()}
            scale = 1 if direction == "fwd" else 3

            def text(name):
                r = [a / o for a, o in zip(times[name], times["on"])]
                q1, q2, q3 = statistics.quantiles(r, n=4)
                return f"{best[name] / best['on']:.2f}, {q2:.2f} ({q1:.2f}-{q3:.2f})"

            print(f"{suite + ' ' + case.describe():42} {direction:6} {scale * wino_floor * 1e3:8.3f}ms "
                  f"{scale * direct_floor * 1e3:10.3f}ms {best['on'] * 1e3:8.3f} {best['off'] * 1e3:8.3f} "
                  f"{best['torch'] * 1e3:8.3f} {text('off'):>22} {text('torch'):>22}", flush=True)


if __name__ == "__main__":
    main()
