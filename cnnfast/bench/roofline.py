"""FLOPs, minimal bytes and roofline floors of a benchmark case, and the datasheet rates of the GPUs
that ``cnnfast bench --device cuda --predict`` can give floors for.

Conventions (CUTLASS letters: input [N,C,H,W], weight [K,C/groups,R,S], output [N,K,P,Q]):

- conv2d forward: ``2*N*K*P*Q*(C/groups)*R*S`` FLOPs (one multiply and one add per term; the bias
  add and, for conv2d_relu, the ReLU are not counted). Its grad-input and grad-weight each cost the
  same again, so ``bwd`` is 2x and ``fwdbwd`` 3x the forward.
- conv2d_relu_max_pool2d: the convolution's FLOPs (the pool's comparisons not counted); its
  minimal bytes are the convolution's with the pooled output in place of the convolution's.
- max_pool2d: one comparison per window element, ``N*C*P*Q*R*S``, and one add per output for the
  backward; ReLU: one operation per element each way. Both are bound by memory, not arithmetic.
- minimal bytes: every tensor a pass reads or writes, touched exactly once (inputs, weights, bias,
  outputs; for a backward also the incoming gradient and what the backward needs from the forward).
- roofline floor: ``max(FLOPs / peak FLOP/s, minimal bytes / peak bytes/s)``, the time no kernel can
  beat on a machine with those peaks.
"""
import math

# ---------------------------------------------------------------------------------------------
# Datasheet rates (dense, i.e. without 2:4 structured sparsity), TFLOP/s and GB/s.
# Sources, NVIDIA's public datasheets:
#   A100: "NVIDIA A100 Tensor Core GPU" datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf),
#         A100 80GB SXM column: FP32 19.5 TFLOPS, TF32 Tensor Core 156, BFLOAT16/FP16 Tensor Core
#         312 (624 with sparsity), GPU memory bandwidth 2,039 GB/s (HBM2e).
#   H100: "NVIDIA H100 Tensor Core GPU" datasheet, H100 SXM column: FP32 67 TFLOPS, TF32 Tensor Core
#         989 with sparsity (494.7 dense), BFLOAT16/FP16 Tensor Core 1,979 with sparsity (989.4 dense),
#         GPU memory bandwidth 3.35 TB/s (HBM3).
# ---------------------------------------------------------------------------------------------
GPUS = {
    "h100-sxm": {
        "name": "NVIDIA H100 SXM5 80GB",
        "tflops": {"fp32": 67.0, "tf32": 494.7, "float16": 989.4, "bfloat16": 989.4, "float64": 34.0},
        "gbps": 3350.0,
        "sms": 132,
        "source": "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM; dense rates = half the sparsity figures)",
    },
    "a100-sxm4-80gb": {
        "name": "NVIDIA A100 SXM4 80GB",
        "tflops": {"fp32": 19.5, "tf32": 156.0, "float16": 312.0, "bfloat16": 312.0, "float64": 9.7},
        "gbps": 2039.0,
        "sms": 108,
        "source": "NVIDIA A100 Tensor Core GPU datasheet (A100 80GB SXM; dense rates)",
    },
}

ITEMSIZE = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}


def gpu_peaks(gpu, dtype, tf32=False):
    """(peak FLOP/s, peak bytes/s) of a datasheet GPU for ``dtype`` ('float32', ...). float32 uses
    the plain FP32 rate, or the TF32 tensor-core rate when TF32 is allowed."""
    spec = GPUS[gpu]
    if dtype == "float32":
        key = "tf32" if tf32 else "fp32"
    else:
        key = dtype
    return spec["tflops"][key] * 1e12, spec["gbps"] * 1e9


def _prod(shape):
    return math.prod(int(s) for s in shape)


# --- per-op counts ------------------------------------------------------------------------------

def conv_fwd_flops(params):
    """2*N*K*P*Q*(C/groups)*R*S from a conv case's params (input, weight and output shapes)."""
    n, k, p, q = params["output"]
    _, c_per_group, r, s = params["weight"]
    return 2 * n * k * p * q * c_per_group * r * s


def flops(case, direction):
    """FLOPs of ``case`` (a :class:`~cnnfast.bench.suites.Case`) in ``direction`` (fwd, bwd, fwdbwd)."""
    if case.op == "model":
        fwd = sum(count * flops(layer, "fwd") for layer, count in case.p["layers"]) + case.p["linear_flops"]
        return {"fwd": fwd, "bwd": 2 * fwd, "fwdbwd": 3 * fwd}[direction]
    p = case.p
    if case.op in ("conv2d", "conv2d_relu", "conv2d_relu_max_pool2d"):
        # (a fused pool's comparisons, a few per output element, are not counted)
        fwd = conv_fwd_flops({**p, "output": p.get("conv_output", p["output"])})
        return {"fwd": fwd, "bwd": 2 * fwd, "fwdbwd": 3 * fwd}[direction]
    if case.op == "max_pool2d":
        r, s = p["kernel_size"]
        fwd = _prod(p["output"]) * r * s
        bwd = _prod(p["output"])
    elif case.op == "relu":
        fwd = bwd = _prod(p["input"])
    else:
        raise ValueError(f"unknown op {case.op!r}")
    return {"fwd": fwd, "bwd": bwd, "fwdbwd": fwd + bwd}[direction]


def min_bytes(case, direction, itemsize):
    """Bytes that ``case`` must move at least in ``direction``: every tensor each pass reads or
    writes, once (see the module docstring)."""
    if case.op == "model":
        return sum(count * min_bytes(layer, direction, itemsize) for layer, count in case.p["layers"])
    p = case.p
    x = _prod(p["input"])
    if case.op in ("conv2d", "conv2d_relu"):
        w = _prod(p["weight"])
        b = p["weight"][0] if p["bias"] else 0
        y = _prod(p["output"])
        fwd = x + w + b + y  # read input, weight, bias; write output
        # read grad_output, input, weight (and the output as ReLU mask); write grad_input, grad_weight, grad_bias
        bwd = y + x + w + x + w + b + (y if case.op == "conv2d_relu" else 0)
    elif case.op == "conv2d_relu_max_pool2d":
        # the pooled output y only: the convolution's output need never reach memory
        w = _prod(p["weight"])
        b = p["weight"][0] if p["bias"] else 0
        y = _prod(p["output"])
        fwd = x + w + b + y
        # read grad_output, the output (ReLU mask), input and weight; write grad_input, grad_weight,
        # grad_bias (the pool's indices not counted: they could be recomputed)
        bwd = 2 * y + x + w + x + w + b
    elif case.op == "max_pool2d":
        y = _prod(p["output"])
        fwd = x + y  # read input, write output
        bwd = y + x + x  # read grad_output and the input (to find each window's maximum); write grad_input
    elif case.op == "relu":
        fwd = 2 * x  # read input, write output
        bwd = 3 * x  # read grad_output and output; write grad_input
    else:
        raise ValueError(f"unknown op {case.op!r}")
    return itemsize * {"fwd": fwd, "bwd": bwd, "fwdbwd": fwd + bwd}[direction]


def floor_seconds(n_flops, n_bytes, peak_flops, peak_bytes):
    """The roofline floor: the larger of compute time and memory time at the given peaks."""
    return max(n_flops / peak_flops, n_bytes / peak_bytes)


def case_floor(case, direction, itemsize, peak_flops, peak_bytes):
    """Roofline floor of a case in seconds. A whole model's floor is the sum of its layers' floors
    (convolutions, poolings, ReLUs; its linear layers counted as compute only)."""
    if case.op == "model":
        total = sum(
            count * case_floor(layer, direction, itemsize, peak_flops, peak_bytes)
            for layer, count in case.p["layers"]
        )
        mult = {"fwd": 1, "bwd": 2, "fwdbwd": 3}[direction]
        return total + mult * case.p["linear_flops"] / peak_flops
    return floor_seconds(flops(case, direction), min_bytes(case, direction, itemsize), peak_flops, peak_bytes)


def bound(case, direction, itemsize, peak_flops, peak_bytes):
    """'compute' or 'memory': which roof the floor sits on."""
    f = flops(case, direction) / peak_flops
    b = min_bytes(case, direction, itemsize) / peak_bytes
    return "compute" if f >= b else "memory"


def is_compute_op(case):
    """Whether a case's achieved rate is best read as FLOP/s (conv, models) or bytes/s (pool, ReLU)."""
    return case.op in ("conv2d", "conv2d_relu", "conv2d_relu_max_pool2d", "model")


# --- the tensor-core engine's tile choice ----------------------------------------------------------

def mma_forward_prediction(case, dtype, tf32, gpu, choose):
    """For a forward convolution that runs on the mma.sync engine (float16, bfloat16, float32 as
    TF32; groups 1): the tile it chooses on ``gpu``'s SM count, its CTAs and waves, and the
    wave-quantized tensor-rate floor: whole waves of whole tiles (every CTA computes BM x BN outputs
    over the reduction padded to its slices) at the datasheet tensor rate. ``choose(M, K, sms)`` is
    the engine's own choice (cnnfast/_cuda_on_cpu's coc_conv2d_mma_choice) -> (bm, bn, ctas, slots).
    None where the engine does not run the case."""
    if case.op not in ("conv2d", "conv2d_relu", "conv2d_relu_max_pool2d") or case.p.get("groups", 1) != 1:
        return None
    if dtype not in ("float16", "bfloat16") and not (dtype == "float32" and tf32):
        return None
    n, k, p, q = case.p.get("conv_output", case.p["output"])
    _, c, r, s = case.p["weight"]
    m = n * p * q
    bm, bn, ctas, slots = choose(m, k, GPUS[gpu]["sms"])
    slice_elems = 32 if ITEMSIZE[dtype] == 2 else 16  # the smallest slice of any tile (64 bytes)
    rsc = -(-(r * s * c) // slice_elems) * slice_elems
    waves = ctas / slots
    peak, _ = gpu_peaks(gpu, dtype, tf32)
    floor = math.ceil(waves) * slots * 2 * bm * bn * rsc / peak
    return {"tile": f"{bm}x{bn}", "ctas": ctas, "waves": round(waves, 3), "quantized_floor_s": floor}
