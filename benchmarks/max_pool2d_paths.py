"""max_pool2d forward and backward on every CPU path in one process, interleaved with torch's.

Rows: the pool layers of the bench suites (LeNet, MNIST-CNN at batch 64; the ResNet stem pool at
batch 2). Each repeat times every side in a rotated order (so none always runs first), as the best of
20 calls; the table gives the median of the repeats, their spread (max/min) and torch's time over
each path's. The op is called directly: torch.ops.cnnfast.max_pool2d / max_pool2d_backward against
aten.max_pool2d_with_indices and its backward. Run under `flock /tmp/bench.lock` on a shared machine.

    python benchmarks/max_pool2d_paths.py [--threads 2] [--repeat 15]
"""
import argparse
import statistics
import time

import torch

import cnnfast

ROWS = [
    ((64, 6, 28, 28), 2, 2, 0),
    ((64, 16, 10, 10), 2, 2, 0),
    ((64, 16, 28, 28), 2, 2, 0),
    ((64, 32, 14, 14), 2, 2, 0),
    ((2, 64, 112, 112), 3, 2, 1),
]
ORDER = ["default", "avx2", "avx512"]


def best_call(fn, calls=20):
    """The fastest of `calls` calls: on a shared machine most slow calls lost a thread to another job."""
    fn()
    best = float("inf")
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cpu = cnnfast.backends.cpu
    paths = ORDER[: ORDER.index(cpu.supported_capability) + 1]
    print(f"threads {args.threads}, repeats {args.repeat}, paths {paths}, CPU best {cpu.supported_capability}")
    print("row | dir | torch ms | " + " | ".join(f"{p} ms (spread)" for p in paths) + " | "
          + " | ".join(f"torch/{p}" for p in paths))
    g = torch.Generator().manual_seed(0)
    for shape, k, s, p in ROWS:
        x = torch.randn(*shape, generator=g)
        a = ([k, k], [s, s], [p, p], [1, 1], False)
        y, idx = torch.ops.cnnfast.max_pool2d(x, *a)
        gy = torch.randn(y.shape, generator=g)
        for direction in ("fwd", "bwd"):
            if direction == "fwd":
                ref = lambda: torch.ops.aten.max_pool2d_with_indices(x, *a)  # noqa: E731
                ours = lambda: torch.ops.cnnfast.max_pool2d(x, *a)  # noqa: E731
            else:
                ref = lambda: torch.ops.aten.max_pool2d_with_indices_backward(gy, x, *a, idx)  # noqa: E731
                ours = lambda: torch.ops.cnnfast.max_pool2d_backward(gy, x, idx, *a)  # noqa: E731
            sides = ["torch"] + paths
            times = {side: [] for side in sides}
            for r in range(args.repeat):
                for side in sides[r % len(sides):] + sides[: r % len(sides)]:
                    if side == "torch":
                        times[side].append(best_call(ref))
                    else:
                        with cpu.flags(capability=side):
                            times[side].append(best_call(ours))
            med = {side: statistics.median(v) for side, v in times.items()}
            spread = {side: max(v) / min(v) for side, v in times.items()}
            name = "x".join(map(str, shape)) + f" k{k} s{s}" + (f" p{p}" if p else "")
            print(f"{name} | {direction} | {med['torch'] * 1e3:.3f} | "
                  + " | ".join(f"{med[q] * 1e3:.3f} ({spread[q]:.2f})" for q in paths) + " | "
                  + " | ".join(f"{med['torch'] / med[q]:.2f}x" for q in paths), flush=True)


if __name__ == "__main__":
    main()
