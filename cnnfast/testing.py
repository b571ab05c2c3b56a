"""The one comparison rule of cnnfast: how close to the truth a result must be.

Tests, ``cnnfast check`` and ``cnnfast bench`` all judge cnnfast's results with :func:`compare`: every
output (and gradient) is compared with the same computation done by PyTorch in float64 (the truth),
and cnnfast's error may be at most a small multiple of PyTorch's own error, in the same dtype, against
the same truth. PyTorch's error is the yardstick of what rounding a sum of that length in that dtype
costs; when PyTorch happens to be exact, the yardstick has a floor of a few eps * sqrt(K) * max|truth|.
"""
import math

import torch

__all__ = ["REF_FACTOR", "ULP_FACTOR", "compare", "tolerance"]

# Pass mark. Every output (and gradient) of a case is compared with the same computation done by
# PyTorch in float64 ("truth"). cnnfast passes when, for each tensor,
#     max|cnnfast - truth| <= max(REF_FACTOR * max|torch - truth|,  ULP_FACTOR * sqrt(K) * eps * max|truth|)
# where torch is PyTorch's own result in the benchmarked dtype, eps the dtype's machine epsilon and K
# the tensor's reduction length (terms summed per element: C/groups*R*S for a conv output, N*P*Q for
# a weight gradient, overlapping windows for a pooling gradient, 1 for ReLU). The first term says
# "no worse than a small multiple of PyTorch's own rounding error"; the second is the rounding error
# of a plain sum of K terms (which grows like sqrt(K) eps for random-signed terms), for the cases
# where PyTorch happens to be nearly exact. Exact ops (ReLU, pooling forward) thus allow a couple
# of ulps at most.
REF_FACTOR = 8.0
ULP_FACTOR = 4.0


def tolerance(ref_err, reduction, dtype, scale):
    """The largest error allowed for one tensor: torch's error ``ref_err`` against the truth, the
    reduction length, the dtype and the largest |truth|."""
    return max(REF_FACTOR * ref_err, ULP_FACTOR * math.sqrt(reduction) * torch.finfo(dtype).eps * scale)


def compare(test, ref, truth, lengths, dtype, ref_truth=None):
    """Compare ``test`` (cnnfast's tensors) and ``ref`` (PyTorch's, same dtype) with ``truth`` (float64).
    Returns max abs and max rel error of each side (rel: divided by the largest |truth| of that
    tensor, over the tensors that are not zero up to rounding), the worst ratio error / tolerance,
    and the pass mark (see REF_FACTOR above). ``ref_truth``, when given, is the float64 truth that
    ``ref`` is measured against (a whole model's: the one that takes ``ref``'s ReLU branches)."""
    result = {"max_abs": 0.0, "max_rel": 0.0, "ref_max_abs": 0.0, "ref_max_rel": 0.0, "worst_ratio": 0.0,
              "passed": True, "message": ""}
    if len(test) != len(truth) or len(ref) != len(truth):
        result.update(passed=False, message=f"got {len(test)} outputs, expected {len(truth)}")
        result["max_abs"] = result["max_rel"] = float("inf")
        return result
    ref_truth = truth if ref_truth is None else ref_truth
    for i, (t, r, tr, rtr, k) in enumerate(zip(test, ref, truth, ref_truth, lengths)):
        if t is None or tr is None:
            if (t is None) != (tr is None):
                result.update(passed=False, message=f"output {i}: missing")
            continue
        if tuple(t.shape) != tuple(tr.shape):
            result.update(passed=False, message=f"output {i}: shape {tuple(t.shape)}, expected {tuple(tr.shape)}")
            result["max_abs"] = result["max_rel"] = float("inf")
            continue
        tr = tr.to(torch.float64).cpu()
        scale = tr.abs().max().item() if tr.numel() else 0.0
        scale = scale if scale > 0 else 1.0
        err = (t.to(torch.float64).cpu() - tr).abs().max().item() if t.numel() else 0.0
        ref_err = (r.to(torch.float64).cpu() - rtr.to(torch.float64).cpu()).abs().max().item() if r.numel() else 0.0
        if not math.isfinite(err) or not torch.isfinite(t).all():
            err = float("inf") if torch.isfinite(tr).all() else err
        tol = tolerance(ref_err, k, dtype, scale)
        ratio = err / tol if tol > 0 else (0.0 if err == 0 else float("inf"))
        if math.isnan(ratio):
            ratio = float("inf")
        result["max_abs"] = max(result["max_abs"], err)
        result["ref_max_abs"] = max(result["ref_max_abs"], ref_err)
        # A tensor that is zero up to rounding (PyTorch's own error as large as its largest value, e.g.
        # the gradient of a conv bias followed by BatchNorm) has no meaningful relative error.
        if scale > ref_err:
            result["max_rel"] = max(result["max_rel"], err / scale)
            result["ref_max_rel"] = max(result["ref_max_rel"], ref_err / scale)
        if ratio > result["worst_ratio"]:
            result["worst_ratio"] = ratio
        if not ratio <= 1.0:
            result["passed"] = False
            if not result["message"]:
                result["message"] = f"output {i}: error {err:.3g} > tolerance {tol:.3g}"
    return result
