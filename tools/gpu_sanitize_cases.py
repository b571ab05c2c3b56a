"""One small case of each cnnfast CUDA kernel, forward and backward, for compute-sanitizer.

``tools/gpu_check.py`` runs this under ``compute-sanitizer --tool memcheck`` and ``--tool racecheck``
(with ``--kernel-name kns=cnnfast``, so only cnnfast's kernels are instrumented, and with
``PYTORCH_NO_CUDA_MEMORY_CACHING=1``, so an access past a tensor's end is past an allocation's end).
Each case runs cnnfast's op and its backward through autograd and compares them loosely with
torch's, so a kernel that writes garbage without touching memory it should not also fails here.

    python tools/gpu_sanitize_cases.py [--device cuda|cpu] [--only NAME,...] [--list]

On the CPU (the dry run of gpu_check) the float16, bfloat16 and TF32 cases are skipped: cnnfast's CPU
kernels are float32 and float64. Exit status: 0 when every case ran and matched, 1 otherwise.
"""
import argparse
import sys
import time


def _cases(torch, F, tF):
    """(name, dtype, needs cuda, function(device, dtype) -> list of (what, cnnfast tensor, torch tensor))."""

    def grads(out, ref, leaves_a, leaves_b, gy):
        ga = torch.autograd.grad(out, leaves_a, gy)
        gb = torch.autograd.grad(ref, leaves_b, gy)
        return list(zip(("grad input", "grad weight", "grad bias", "grad residual")[: len(ga)], ga, gb))

    def conv_inputs(device, dtype, n, c, h, w, k, r, groups=1, channels_last=False, bias=True):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, c, h, w, generator=g).to(device, dtype)
        wt = (torch.randn(k, c // groups, r, r, generator=g) / (c // groups * r * r) ** 0.5).to(device, dtype)
        b = (torch.randn(k, generator=g) * 0.1).to(device, dtype) if bias else None
        if channels_last:
            x, wt = x.contiguous(memory_format=torch.channels_last), wt.contiguous(memory_format=torch.channels_last)
        return x, wt, b

    def conv_case(op, stride=1, padding=1, groups=1, channels_last=False, c=8, k=16, size=9, tf32=False):
        def run(device, dtype):
            x, w, b = conv_inputs(device, dtype, 2, c, size, size, k, 3, groups, channels_last)
            xa, wa, ba = (t.detach().clone().requires_grad_() for t in (x, w, b))
            xb, wb, bb = (t.detach().clone().requires_grad_() for t in (x, w, b))
            old = torch.backends.cudnn.allow_tf32
            torch.backends.cudnn.allow_tf32 = tf32
            try:
                if op == "conv2d":
                    out = F.conv2d(xa, wa, ba, stride, padding, 1, groups)
                    ref = tF.conv2d(xb, wb, bb, stride, padding, 1, groups)
                elif op == "conv2d_relu":
                    out = F.conv2d_relu(xa, wa, ba, stride, padding, 1, groups)
                    ref = torch.relu(tF.conv2d(xb, wb, bb, stride, padding, 1, groups))
                elif op == "conv2d_add_relu":
                    shape = tF.conv2d(x, w, b, stride, padding, 1, groups).shape
                    r = torch.randn(shape, generator=torch.Generator().manual_seed(6)).to(device, dtype)
                    if channels_last:
                        r = r.contiguous(memory_format=torch.channels_last)
                    ra, rb = r.clone().requires_grad_(), r.clone().requires_grad_()
                    out = F.conv2d_add_relu(xa, wa, ba, ra, stride, padding, 1, groups)
                    ref = torch.relu(tF.conv2d(xb, wb, bb, stride, padding, 1, groups) + rb)
                    gy = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1)).to(device, dtype)
                    return [("output", out, ref)] + grads(out, ref, (xa, wa, ba, ra), (xb, wb, bb, rb), gy)
                else:  # conv2d_relu_max_pool2d
                    out = F.conv2d_relu_max_pool2d(xa, wa, ba, stride, padding, 1, groups, kernel_size=2)
                    ref = tF.max_pool2d(torch.relu(tF.conv2d(xb, wb, bb, stride, padding, 1, groups)), 2)
                gy = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1)).to(device, dtype)
                return [("output", out, ref)] + grads(out, ref, (xa, wa, ba), (xb, wb, bb), gy)
            finally:
                torch.backends.cudnn.allow_tf32 = old

        return run

    def pool_case(channels_last=False):
        def run(device, dtype):
            x = torch.randn(2, 4, 11, 11, generator=torch.Generator().manual_seed(2)).to(device, dtype)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
            out = F.max_pool2d(xa, 3, 2, 1, ceil_mode=True)
            ref = tF.max_pool2d(xb, 3, 2, 1, ceil_mode=True)
            gy = torch.randn(ref.shape, generator=torch.Generator().manual_seed(3)).to(device, dtype)
            return [("output", out, ref)] + grads(out, ref, (xa,), (xb,), gy)

        return run

    def relu_case(device, dtype):
        # 4099 elements: the 16-byte vector path and its scalar tail
        x = torch.randn(4099, generator=torch.Generator().manual_seed(4)).to(device, dtype)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        out, ref = F.relu(xa), torch.relu(xb)
        gy = torch.randn(ref.shape, generator=torch.Generator().manual_seed(5)).to(device, dtype)
        inplace = x.clone()
        F.relu(inplace, inplace=True)
        return [("output", out, ref), ("in place", inplace, torch.relu(x))] + grads(out, ref, (xa,), (xb,), gy)

    f32, f16, bf16 = torch.float32, torch.float16, torch.bfloat16
    return [
        ("conv2d float32 nchw", f32, False, conv_case("conv2d")),
        ("conv2d float32 channels_last stride 2", f32, False, conv_case("conv2d", stride=2, channels_last=True)),
        ("conv2d float32 tf32", f32, True, conv_case("conv2d", tf32=True)),
        ("conv2d float16 nchw (tensor cores)", f16, True, conv_case("conv2d")),
        ("conv2d bfloat16 channels_last (tensor cores)", bf16, True, conv_case("conv2d", channels_last=True)),
        ("conv2d float32 depthwise", f32, False, conv_case("conv2d", groups=8, c=8, k=8)),
        ("conv2d_relu float32", f32, False, conv_case("conv2d_relu")),
        ("conv2d_relu float16", f16, True, conv_case("conv2d_relu")),
        ("conv2d_add_relu float32 channels_last", f32, False, conv_case("conv2d_add_relu", channels_last=True)),
        ("conv2d_add_relu float16", f16, True, conv_case("conv2d_add_relu")),
        ("max_pool2d float32 nchw", f32, False, pool_case()),
        ("max_pool2d float16 channels_last", f16, True, pool_case(channels_last=True)),
        ("relu float32", f32, False, relu_case),
        ("relu bfloat16", bf16, True, relu_case),
        ("conv2d_relu_max_pool2d float32", f32, False, conv_case("conv2d_relu_max_pool2d", size=10)),
        ("conv2d_relu_max_pool2d bfloat16", bf16, True, conv_case("conv2d_relu_max_pool2d", size=10)),
    ]


def _tolerance(torch, dtype, tf32):
    if dtype == torch.float32 and not tf32:
        return 1e-4
    return 5e-2  # float16, bfloat16 and TF32: ten-bit (or fewer) mantissas


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--only", default=None, help="comma-separated case names (substrings) to run")
    parser.add_argument("--list", action="store_true", help="print the case names and exit")
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as tF

    import cnnfast  # noqa: F401  (registers the ops)
    from cnnfast import functional as F

    cases = _cases(torch, F, tF)
    if args.list:
        for name, *_ in cases:
            print(name)
        return 0
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        cases = [c for c in cases if any(w in c[0] for w in wanted)]
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_sanitize_cases: no CUDA device", file=sys.stderr)
        return 1
    ran = skipped = failed = 0
    t0 = time.monotonic()
    for name, dtype, cuda_only, run in cases:
        if cuda_only and device.type != "cuda":
            print(f"case {name}: skipped (no CPU kernel for it)", flush=True)
            skipped += 1
            continue
        try:
            results = run(device, dtype)
            if device.type == "cuda":
                torch.cuda.synchronize()
            tol = _tolerance(torch, dtype, "tf32" in name)
            worst = 0.0
            bad = []
            for what, a, b in results:
                scale = max(b.detach().abs().max().item(), 1.0) if b.numel() else 1.0
                err = (a.detach().double() - b.detach().double()).abs().max().item() / scale if a.numel() else 0.0
                worst = max(worst, err)
                if tuple(a.shape) != tuple(b.shape) or not err <= tol:
                    bad.append(f"{what}: relative error {err:.2e} > {tol:g}")
            if bad:
                failed += 1
                print(f"case {name}: MISMATCH ({'; '.join(bad)})", flush=True)
            else:
                print(f"case {name}: ok (largest relative difference from torch {worst:.1e})", flush=True)
        except Exception as e:  # a failing case is reported and the next one still runs
            failed += 1
            print(f"case {name}: ERROR {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)
        ran += 1
    print(f"sanitizer cases on {device.type}: {ran - failed} ok, {failed} failed, {skipped} skipped "
          f"in {time.monotonic() - t0:.1f} s", flush=True)
    return 0 if failed == 0 and ran > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
