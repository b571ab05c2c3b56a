"""Check and time every cnnfast kernel side by side with PyTorch's (oneDNN on CPU, cuDNN on GPU) on real model layers.

Each suite is the list of distinct (op, shape, arguments) cases read from a real model by running it
once with hooks, plus the whole model (inference forward and training step, converted against
unconverted). Every row is checked against a float64 computation and timed interleaved with the
reference; the table shows times, speed-ups, achieved rates, the roofline floor and the errors.
``--rivals`` adds other runtimes (ONNX Runtime, OpenVINO, torch.compile) on the same rows.
``--device cuda --predict`` prints FLOPs, bytes and roofline floors for a datasheet GPU, and the
tensor-core engine's tile, CTAs, waves and wave-quantized floor, measuring nothing.

Exit status: 0 when every row passes, 1 when a row fails its check, 2 for a usage error.
"""
from .._argtypes import comma_list, positive_int

SUITE_NAMES = ("lenet", "mnist-cnn", "resnet-cifar", "resnet18", "resnet50")
DEFAULT_SUITES = ("lenet", "mnist-cnn", "resnet-cifar")
OP_NAMES = ("conv2d", "max_pool2d", "relu", "conv2d_relu", "conv2d_relu_max_pool2d", "model")
DIRECTIONS = ("fwd", "bwd", "fwdbwd")
DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64")
LAYOUTS = ("nchw", "channels_last")
GPU_NAMES = ("h100-sxm", "a100-sxm4-80gb")
RIVAL_NAMES = ("onnxruntime", "openvino", "inductor")
DEFAULT_REPEAT = 7
DEFAULT_WARMUP = 2


def add_arguments(parser):
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="where to run (default: cuda when a GPU is present and cnnfast was built for it, else cpu)")
    parser.add_argument("--suite", type=comma_list(SUITE_NAMES), default=list(DEFAULT_SUITES),
                        help=f"comma-separated suites: {', '.join(SUITE_NAMES)} or all (default: {','.join(DEFAULT_SUITES)})")
    parser.add_argument("--ops", type=comma_list(OP_NAMES), default=list(OP_NAMES),
                        help=f"comma-separated ops: {', '.join(OP_NAMES)} (model = the whole-model rows) or all (default: all)")
    parser.add_argument("--direction", type=comma_list(DIRECTIONS), default=["fwd", "fwdbwd"],
                        help="comma-separated: fwd, bwd (backward alone), fwdbwd (default: fwd,fwdbwd); "
                             "for models fwd is an inference forward, fwdbwd a training step")
    parser.add_argument("--dtype", type=comma_list(DTYPE_NAMES, allow_all=False), default=["float32"],
                        help="comma-separated: float32, float16, bfloat16, float64 (default: float32); "
                             "a dtype cnnfast has no kernel for on the device gives 'not supported' rows")
    parser.add_argument("--memory-format", type=comma_list(LAYOUTS), default=["nchw"], dest="memory_format",
                        help="comma-separated: nchw, channels_last (default: nchw)")
    parser.add_argument("--batch", type=positive_int, default=None,
                        help="batch size for every suite (default: per suite, printed in the header)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads, the same on both sides (default: torch's current count)")
    parser.add_argument("--repeat", type=positive_int, default=DEFAULT_REPEAT,
                        help=f"timed samples per side and row; the median is reported (default: {DEFAULT_REPEAT})")
    parser.add_argument("--warmup", type=positive_int, default=DEFAULT_WARMUP,
                        help=f"untimed calls per side before timing (default: {DEFAULT_WARMUP})")
    parser.add_argument("--tf32", choices=("off", "on"), default="off",
                        help="TF32 for float32 on CUDA, set the same on both sides (default: off)")
    parser.add_argument("--json", metavar="FILE", default=None, help="write every figure and the environment as JSON")
    parser.add_argument("--plot", metavar="FILE", default=None, help="write a PNG of the speed-ups per case")
    parser.add_argument("--predict", action="store_true",
                        help="with --device cuda: print FLOPs, minimal bytes and the roofline floor of every case "
                             "for a datasheet GPU, and the tensor-core engine's tile, CTAs and waves, "
                             "measuring nothing (works without a GPU)")
    parser.add_argument("--gpu", type=comma_list(GPU_NAMES), default=list(GPU_NAMES),
                        help=f"datasheet GPUs for --predict: {', '.join(GPU_NAMES)} or all (default: all)")
    parser.add_argument("--rivals", type=comma_list(RIVAL_NAMES), default=[],
                        help=f"comma-separated other CPU runtimes to check and time against cnnfast: "
                             f"{', '.join(RIVAL_NAMES)} or all, on the float32 NCHW forward rows of the conv and "
                             "pooling layers and of the models (inductor also on the models' training steps); "
                             "the row gains rival time / cnnfast time. ONNX Runtime and OpenVINO need the rivals "
                             "extra: pip install 'cnnfast[rivals]' (default: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs and weights (default: 0)")
    parser.add_argument("--cpu-isa", choices=("avx512", "avx2", "default"), default=None, dest="cpu_isa",
                        help="run cnnfast and torch both on at most this instruction set: lowers cnnfast's "
                             "capability and torch's own (ATen's CPU capability, oneDNN's and MKL's maximum ISA) "
                             "in a fresh process, so that an AVX-512 CPU measures what an AVX2 one runs "
                             "(default: each side at its best)")
    parser.add_argument("--time-limit", type=positive_int, default=None, metavar="SECONDS",
                        help="start no new row once SECONDS have passed since the command started; the rows "
                             "not reached are counted in the report and listed in the JSON under 'not_run' "
                             "(default: no limit)")


def run(args):
    import sys  # noqa: PLC0415

    if args.cpu_isa:
        from . import isa  # noqa: PLC0415

        error = isa.check(args.cpu_isa)
        if error:
            print(f"cnnfast bench: error: {error}", file=sys.stderr)
            return 2
        if not isa.in_effect(args.cpu_isa):
            if sys.argv[1:2] != ["bench"]:
                print("cnnfast bench: error: --cpu-isa restarts the command with torch's switches set: run it "
                      "as `cnnfast bench ...` or `python -m cnnfast bench ...`", file=sys.stderr)
                return 2
            isa.reexec(args.cpu_isa, sys.argv[1:])
    from .command import main  # noqa: PLC0415  (torch and the rest are imported only now)

    return main(args)
