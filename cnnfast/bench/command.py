"""The body of ``cnnfast bench`` (argument parsing is in the package's ``__init__``)."""
import os
import shlex
import sys
import time

import torch

from . import report, roofline, suites, timing
from .runner import DTYPES, Prepared, cnnfast_impl, cnnfast_supported_dtypes, reference_impl, run_case


def _usage_error(msg):
    print(f"cnnfast bench: error: {msg}", file=sys.stderr)
    return 2


def best_device():
    """cuda when a GPU is present and cnnfast has kernels for it, else cpu."""
    if torch.cuda.is_available() and cnnfast_supported_dtypes("cuda"):
        return "cuda"
    return "cpu"


def jobs(cases, directions, dtypes, layouts):
    """(case, direction, dtype, layout) in table order; models have no separate backward."""
    for case in cases:
        for layout in layouts:
            for dtype in dtypes:
                for direction in directions:
                    if case.op == "model" and direction == "bwd":
                        continue
                    yield case, direction, dtype, layout


def _settings(args, device, batches, threads, tf32):
    return {
        "device": device, "suites": args.suite, "ops": args.ops, "directions": args.direction,
        "dtypes": args.dtype, "layouts": args.memory_format, "batch": batches, "repeat": args.repeat,
        "warmup": args.warmup, "threads": threads, "tf32": tf32, "seed": args.seed,
        "time_limit": getattr(args, "time_limit", None), "cpu_isa": getattr(args, "cpu_isa", None),
        "rivals": list(getattr(args, "rivals", None) or []),
    }


def _command_line():
    argv = sys.argv[1:] if sys.argv and sys.argv[0].endswith(("cnnfast", "__main__.py")) else None
    return "cnnfast " + shlex.join(argv) if argv is not None else "cnnfast bench"


def main(args, out=None):
    started = time.monotonic()
    out = out or sys.stdout
    if args.predict and args.device != "cuda":
        return _usage_error("--predict gives floors for a GPU that is not measured: use it with --device cuda")
    if args.predict and args.plot:
        return _usage_error("--plot needs measured speed-ups; --predict measures nothing")
    for path in (args.json, args.plot):
        parent = os.path.dirname(os.path.abspath(path)) if path else None
        if parent and not os.path.isdir(parent):
            return _usage_error(f"cannot write {path}: no directory {parent}")
    device = args.device or best_device()
    rival_names = list(getattr(args, "rivals", None) or [])
    if rival_names:
        from . import rivals  # noqa: PLC0415

        if args.predict or device != "cpu":
            return _usage_error(f"--rivals runs {', '.join(rival_names)} on the CPU: use it with --device cpu"
                                + (" and without --predict" if args.predict else ""))
        problem = rivals.missing(rival_names)
        if problem:
            return _usage_error(problem)
    if device == "cuda" and not args.predict:
        if not torch.cuda.is_available():
            return _usage_error("no CUDA device is present here; `--device cuda --predict` prints roofline "
                                "floors for a datasheet GPU without one")
        if not cnnfast_supported_dtypes("cuda"):
            return _usage_error("this cnnfast build has no CUDA kernels")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    tf32 = args.tf32 == "on"
    if device == "cuda" and not args.predict:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True

    batches = {s: (args.batch or suites.SUITES[s][2]) for s in args.suite}
    cases = [c for s in args.suite for c in suites.suite_cases(s, batches[s], args.ops)]
    work = list(jobs(cases, args.direction, args.dtype, args.memory_format))
    doc = {
        "schema": report.SCHEMA,
        "kind": "predicted" if args.predict else "measured",
        "command": _command_line(),
        "environment": report.environment(device, threads, tf32, predict=args.predict,
                                          gpu=args.gpu[0] if args.predict else None),
        "settings": _settings(args, device, batches, threads, tf32),
    }
    if args.predict:
        return _predict(doc, work, args, out)

    supported = cnnfast_supported_dtypes(device)
    peak_dtypes = [DTYPES[d] for d in args.dtype if DTYPES[d] in supported]
    doc["peaks"] = timing.measure_peaks(device, peak_dtypes)

    impl, ref_impl = cnnfast_impl(), reference_impl()
    if device == "cpu":
        doc["environment"]["threads_busy"] = _threads_busy(impl, ref_impl)
    rival_runner = None
    if rival_names:
        doc["environment"]["rivals"] = rivals.versions(rival_names)
        rival_runner = rivals.Rivals(rival_names, threads, args.repeat, args.warmup)
    print("\n".join(report.header_lines({**doc, "rows": [], "suites": {}})), file=out, flush=True)
    print(f"running {len(work)} rows ...", file=out, flush=True)
    rows = []
    from tqdm import tqdm  # noqa: PLC0415

    deadline = started + args.time_limit if getattr(args, "time_limit", None) else None
    bar = tqdm(work, desc="cnnfast bench", unit="row", file=sys.stderr, disable=None, leave=False)
    for i, (case, direction, dtype, layout) in enumerate(bar):
        if deadline is not None and time.monotonic() > deadline:
            doc["not_run"] = [{"suite": c.suite, "op": c.op, "case": c.id, "args": c.describe(), "direction": d,
                               "dtype": t, "layout": lay} for c, d, t, lay in work[i:]]
            break
        bar.set_postfix_str(f"{case.suite} {case.op} {direction}", refresh=False)
        row = run_case(case, direction, dtype, layout, device, args.repeat, args.warmup, doc["peaks"],
                       impl, ref_impl, supported, seed=args.seed)
        if rival_runner is not None:
            rival_runner.add(row, case, lambda: Prepared(case, direction, DTYPES[dtype], layout, device, args.seed))
        rows.append(row)
    bar.close()
    doc["rows"] = rows
    doc["suites"] = report.suite_summaries(rows)
    doc["passed"] = all(r["passed"] is not False for r in rows)
    text = report.format_report(doc, color=report.use_color(out))
    # The header was printed before the run; print the table and summary now.
    print("\n".join(text.splitlines()[len(report.header_lines(doc)):]), file=out)
    if doc.get("not_run"):
        print(f"time limit of {args.time_limit} s reached: {len(rows)} of {len(work)} rows run, "
              f"{len(doc['not_run'])} not run (suites: {', '.join(dict.fromkeys(r['suite'] for r in doc['not_run']))})",
              file=out)
    if args.json:
        report.write_json(doc, args.json)
        print(f"wrote {args.json}", file=out)
    if args.plot:
        report.write_plot(doc, args.plot)
        print(f"wrote {args.plot}", file=out)
    return 0 if doc["passed"] else 1


def _mma_chooser():
    """The mma engine's tile choice through the CUDA-on-CPU build of its host code, or None (with the
    reason) where that cannot build (no g++ or CUDA headers)."""
    import ctypes  # noqa: PLC0415

    from .. import _cuda_on_cpu  # noqa: PLC0415

    try:
        lib = _cuda_on_cpu.load_kernels()
    except (_cuda_on_cpu.BuildError, OSError) as e:
        return None, str(e).splitlines()[0]

    def choose(m, k, sms):
        bm, bn, ctas, slots = ctypes.c_int(), ctypes.c_int(), ctypes.c_longlong(), ctypes.c_longlong()
        lib.coc_conv2d_mma_choice(ctypes.c_longlong(m), ctypes.c_longlong(k), sms, ctypes.byref(bm),
                                  ctypes.byref(bn), ctypes.byref(ctas), ctypes.byref(slots))
        return bm.value, bn.value, ctas.value, slots.value

    return choose, None


def _predict(doc, work, args, out):
    rows = []
    choose, why_not = _mma_chooser()
    if why_not:
        doc["settings"]["mma_choice"] = f"not available: {why_not}"
    for case, direction, dtype, layout in work:
        itemsize = roofline.ITEMSIZE[dtype]
        row = {
            "suite": case.suite, "op": case.op, "case": case.id, "args": case.describe(), "count": case.count,
            "direction": direction, "dtype": dtype, "layout": layout,
            "flops": roofline.flops(case, direction), "min_bytes": roofline.min_bytes(case, direction, itemsize),
            "status": "predicted", "predicted": {},
        }
        for gpu in args.gpu:
            if dtype not in ("float32", "float16", "bfloat16", "float64"):
                continue
            pf, pb = roofline.gpu_peaks(gpu, dtype, doc["settings"]["tf32"])
            row["predicted"][gpu] = {
                "peak_flops": pf, "peak_bytes": pb,
                "floor_s": roofline.case_floor(case, direction, itemsize, pf, pb),
                "bound": roofline.bound(case, direction, itemsize, pf, pb),
            }
            if choose is not None and direction == "fwd":
                mma = roofline.mma_forward_prediction(case, dtype, doc["settings"]["tf32"], gpu, choose)
                if mma:
                    row["predicted"][gpu]["mma"] = mma
        rows.append(row)
    doc["settings"]["gpus"] = args.gpu
    doc["rows"] = rows
    doc["suites"] = {s: {"rows": sum(r["suite"] == s for r in rows), "failed": 0, "geomean_speedup": None}
                     for s in args.suite}
    doc["passed"] = True
    print(report.format_prediction(doc), file=out)
    if args.json:
        report.write_json(doc, args.json)
        print(f"wrote {args.json}", file=out)
    return 0


def _threads_busy(impl, ref_impl):
    """Threads each side really keeps busy on a mid-sized convolution (see timing.busy_threads)."""
    x = torch.randn(16, 32, 32, 32)
    w = torch.randn(64, 32, 3, 3)
    with torch.no_grad():
        return {
            "probe": "conv2d 16x32x32x32 w64x32x3x3 s1 p1",
            "cnnfast": timing.busy_threads(lambda: impl.conv2d(x, w, None, 1, 1, 1, 1)),
            "torch": timing.busy_threads(lambda: ref_impl.conv2d(x, w, None, 1, 1, 1, 1)),
        }
