"""Check every cnnfast op, forward and backward, against PyTorch on LeNet and ResNet layer shapes.

The cases are the distinct conv2d, max_pool2d, ReLU, fused conv2d+ReLU and fused
conv2d+ReLU+max_pool2d layers of the chosen
models (read from the models by running them once with hooks, as ``cnnfast bench`` does). Each case
runs forward and backward through cnnfast and through PyTorch in the same dtype and is compared with
PyTorch in float64; the pass mark is the project's one rule (cnnfast.testing.compare): cnnfast's error may
be at most a small multiple of PyTorch's own. Exit status 1 when any case fails.
"""
import sys

DEFAULT_SUITES = ("lenet", "resnet-cifar", "resnet18")
LAYER_OPS = ("conv2d", "max_pool2d", "relu", "conv2d_relu", "conv2d_relu_max_pool2d")


def add_arguments(parser):
    from ._argtypes import comma_list, positive_int
    from .bench import SUITE_NAMES

    parser.add_argument("--suite", type=comma_list(SUITE_NAMES), default=list(DEFAULT_SUITES),
                        help=f"comma-separated suites (default: {','.join(DEFAULT_SUITES)})")
    parser.add_argument("--batch", type=positive_int, default=2, help="batch size of every case (default: 2)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--memory-format", choices=("nchw", "channels_last"), default="nchw")


def run(args, out=None):
    import torch
    from tqdm import tqdm

    from .bench import runner, suites

    out = out or sys.stdout
    cases = suites.all_cases(args.suite, args.batch, LAYER_OPS)
    ours, theirs = runner.cnnfast_impl(), runner.reference_impl()
    rows = []
    for case in tqdm(cases, desc="cnnfast check", unit="case", file=sys.stderr, disable=None):
        prepared = runner.Prepared(case, "fwdbwd", runner.DTYPES[args.dtype], args.memory_format, "cpu")
        result = runner.check(prepared, ours, theirs)
        rows.append((f"{case.suite} {case.op}", case.describe(), result))
    headers = ("case", "shape and arguments", "max abs err", "max rel err", "torch max rel err", "result")
    table = [headers] + [
        (name, shape, f"{r['max_abs']:.2e}", f"{r['max_rel']:.2e}", f"{r['ref_max_rel']:.2e}",
         "pass" if r["passed"] else f"FAIL: {r['message']}")
        for name, shape, r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    print(f"cnnfast check: {len(rows)} cases, forward and backward, {args.dtype}, {args.memory_format}, "
          f"batch {args.batch}, against torch {torch.__version__} (errors against float64)", file=out)
    for i, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip(), file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)
    failed = sum(not r["passed"] for _, _, r in rows)
    print(f"{len(rows) - failed} passed, {failed} failed", file=out)
    return 1 if failed else 0
