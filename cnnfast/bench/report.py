"""Output of ``cnnfast bench``: the environment header, the table, the per-suite geometric means, the
JSON document (with its schema check) and the PNG plot."""
import datetime
import math
import os
import platform
import re
import subprocess
import sys

import torch

from . import roofline

SCHEMA = "cnnfast-bench/1"
RED, RESET = "\033[31m", "\033[0m"


# --- environment ----------------------------------------------------------------------------------

def onednn_version():
    m = re.search(r"(?:MKL-DNN|oneDNN)\s+v?([0-9][0-9.]*)", torch.__config__.show())
    return m.group(1) if m else None


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device, threads, tf32, predict=False, gpu=None):
    """Everything a reader needs to weigh the numbers: device, versions, threads, TF32."""
    import cnnfast  # noqa: PLC0415

    device = torch.device(device)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if isinstance(cudnn, int):  # 92400 -> "9.24.0"
        cudnn = f"{cudnn // 10000}.{cudnn % 10000 // 100}.{cudnn % 100}"
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": device.type,
        "device_name": cpu_name() if device.type == "cpu" else (
            torch.cuda.get_device_name(device) if not predict else roofline.GPUS[gpu]["name"] + " (datasheet, not present)"),
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "onednn": onednn_version(),
        "cnnfast": getattr(cnnfast, "__version__", None),
        "commit": git_commit(),
        "threads": threads,
        "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "tf32": tf32,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if device.type == "cuda" else None,
    }
    if device.type == "cpu":
        from . import isa  # noqa: PLC0415

        env["instruction_sets"] = isa.describe()
    return env


# --- formatting -----------------------------------------------------------------------------------

def _ms(summary):
    if not summary:
        return "-"
    return f"{summary['median_s'] * 1e3:.3f}±{summary['spread'] * 100:.0f}%"


def _num(v, fmt):
    return "-" if v is None else format(v, fmt)


def _color(enabled, text, red):
    return f"{RED}{text}{RESET}" if enabled and red else text


def use_color(stream=None):
    stream = stream or sys.stdout
    return hasattr(stream, "isatty") and stream.isatty() and "NO_COLOR" not in os.environ


def _table(headers, rows, aligns):
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def fmt(cells):
        return "  ".join(c.ljust(w) if a == "<" else c.rjust(w) for c, w, a in zip(cells, widths, aligns))

    return fmt(headers), "  ".join("-" * w for w in widths), [fmt(r) for r in rows]


HEADERS = ["suite", "op", "shape and arguments", "dir", "dtype", "layout", "cnnfast ms", "torch ms",
           "speed-up", "cnnfast rate", "%peak", "floor ms", "cnnfast/floor", "torch/floor",
           "max abs err", "max rel err", "pass"]
ALIGNS = "<<<<<<>>>>>>>>>><"


def row_cells(row):
    err = row.get("error") or {}
    if row["status"] == "not supported":
        mark = "n/s"
    elif row["status"] == "error":
        mark = "ERROR"
    else:
        mark = "ok" if row["passed"] else "FAIL"
    rate = "-"
    if row.get("cnnfast_rate") is not None:
        rate = f"{row['cnnfast_rate']:.1f} {row['rate_unit']}"
    return [
        row["suite"], row["op"], row["args"], row["direction"], row["dtype"], row["layout"],
        _ms(row.get("cnnfast")), _ms(row.get("reference")),
        _num(row.get("speedup"), ".2f") + ("x" if row.get("speedup") is not None else ""),
        rate, _num(row.get("pct_peak"), ".1f"),
        _num(row["floor_s"] * 1e3 if row.get("floor_s") is not None else None, ".4f"),
        _num(row.get("cnnfast_x_floor"), ".1f"), _num(row.get("reference_x_floor"), ".1f"),
        _num(err.get("max_abs"), ".1e"), _num(err.get("max_rel"), ".1e"), mark,
    ]


def geomean(values):
    values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def suite_summaries(rows):
    out = {}
    for row in rows:
        s = out.setdefault(row["suite"], {"rows": 0, "failed": 0, "not_supported": 0, "_speedups": []})
        s["rows"] += 1
        if row["status"] == "not supported":
            s["not_supported"] += 1
        elif not row["passed"]:
            s["failed"] += 1
        if row.get("speedup") is not None:
            s["_speedups"].append(row["speedup"])
        if row.get("rivals"):
            s["rival_rows"] = s.get("rival_rows", 0) + 1
            ratios = s.setdefault("_rivals", {})
            for name, entry in row["rivals"].items():
                ratios.setdefault(name, []).append(entry.get("ratio"))
            s.setdefault("_fastest", []).append((row.get("fastest_rival") or {}).get("ratio"))
    for s in out.values():
        s["geomean_speedup"] = geomean(s.pop("_speedups"))
        if "_rivals" in s:
            s["rivals_geomean"] = {name: geomean(v) for name, v in s.pop("_rivals").items()}
            s["fastest_rival_geomean"] = geomean(s.pop("_fastest"))
    return out


def _rates(flops, label=""):
    return ", ".join(f"{d}{label} {v / 1e9:.1f} GFLOP/s" for d, v in flops.items()) or "-"


def peaks_line(peaks):
    """The header's measured peaks: on the CPU the FMA probe's (which %peak and the floors use), with the
    matrix product and the copy as reference lines; on a GPU the matrix product's."""
    copy = f"copy {peaks['bytes'] / 1e9:.1f} GB/s"
    if peaks.get("flops_probe") != "fma":
        return f"measured peaks (this run): {_rates(peaks['flops'])} (matrix product); {copy}"
    probe = next(iter(peaks["fma"].values()), None)
    where = f" ({probe['capability']}, {probe['threads']} threads)" if probe else ""
    return (f"measured peaks (this run): {_rates(peaks['flops'], ' FMA')}{where}, used by %peak and the floors; "
            f"matrix product (torch.mm) {_rates(peaks['matmul_flops'])}; {copy}")


def header_lines(doc):
    env, st, peaks = doc["environment"], doc["settings"], doc.get("peaks") or {}
    lines = [f"cnnfast bench  {env['date']}  commit {env.get('commit') or '?'}"]
    lines.append(f"command: {doc['command']}")
    lines.append(f"device: {env['device'].upper()}  {env['device_name']}")
    lines.append(
        f"torch {env['torch']}  CUDA {env['cuda'] or '-'}  cuDNN {env['cudnn'] or '-'}"
        f"{' (in the torch build, unused on CPU)' if env['device'] == 'cpu' and env['cuda'] else ''}"
        f"  oneDNN {env['onednn'] or '-'}"
        f"  python {env['python']}  cnnfast {env['cnnfast']}"
    )
    if env["device"] == "cpu":
        line = f"threads: {env['threads']} on both sides (torch.set_num_threads)"
        busy = env.get("threads_busy") or {}
        if busy.get("cnnfast") and busy.get("torch"):
            line += f"; threads kept busy by a {busy['probe']}: cnnfast {busy['cnnfast']}, torch {busy['torch']}"
            if busy["cnnfast"] < min(env["threads"], busy["torch"]):
                line += " (cnnfast's CPU kernels use fewer threads than they are given)"
        lines.append(line)
        sets = env.get("instruction_sets")
        if sets:
            lowered = st.get("cpu_isa")
            lines.append(f"instruction sets: cnnfast {sets['cnnfast']}; torch: ATen {sets['aten']}, oneDNN at most "
                         f"{sets['onednn_max']}, MKL {sets['mkl']}"
                         + (f" (both sides lowered by --cpu-isa {lowered})" if lowered else ""))
    if env.get("load_average") is not None:
        lines.append(f"machine load at start: {env['load_average']:.1f} (1-minute load average) on {env.get('cpus')} "
                     "logical CPUs; with other jobs running, timings of both sides are noisier")
    else:
        lines.append(f"TF32: {'on' if env['tf32'] else 'off'} on both sides (torch.backends.cuda.matmul.allow_tf32 and "
                     f"torch.backends.cudnn.allow_tf32 = {bool(env['tf32'])}); cudnn.benchmark = True for the reference")
    if peaks:
        lines.append(peaks_line(peaks))
    batches = ", ".join(f"{s} {b}" for s, b in st["batch"].items())
    lines.append(f"batch: {batches};  repeat {st['repeat']} (median ± IQR/median), warm-up {st['warmup']}, "
                 f"cnnfast and torch interleaved on the same inputs")
    lines.append("reference: PyTorch's own ops (" + ("oneDNN/ATen" if env["device"] == "cpu" else "cuDNN") +
                 "); conv2d_relu reference = torch.relu(F.conv2d(...)), conv2d_relu_max_pool2d reference = "
                 "F.max_pool2d(torch.relu(F.conv2d(...)), ...); model rows: cnnfast.convert(model) (\"fused\": "
                 "convert(model, fuse=True)) vs model, "
                 "fwd = inference forward, fwdbwd = training step (forward, loss, backward)")
    lines.append("rate: cnnfast's GFLOP/s (conv, models) or GB/s of minimal traffic (pool, relu); floor = "
                 "max(FLOPs/peak FLOP/s, minimal bytes/peak bytes/s); err: cnnfast vs a float64 PyTorch computation")
    if st.get("rivals"):
        lines.append(rivals_header(doc))
    return lines


def format_report(doc, color=False):
    """The whole text report: header, table, per-suite geometric means, verdict."""
    lines = header_lines(doc)
    cells = [row_cells(r) for r in doc["rows"]]
    head, rule, body = _table(HEADERS, cells, ALIGNS)
    lines += ["", head, rule]
    for row, line in zip(doc["rows"], body):
        lines.append(_color(color, line, row["status"] in ("fail", "error")))
    lines.append(rule)
    if doc["settings"].get("rivals"):
        lines += [""] + rival_lines(doc, color) + [""]
    for suite, s in doc["suites"].items():
        gm = s["geomean_speedup"]
        text = (f"{suite}: geometric mean speed-up {gm:.2f}x over {s['rows'] - s['not_supported']} rows"
                if gm is not None else f"{suite}: no timed rows")
        text += f", {s['failed']} failed" + (f", {s['not_supported']} not supported" if s["not_supported"] else "")
        lines.append(_color(color, text, s["failed"] > 0))
    failed = sum(s["failed"] for s in doc["suites"].values())
    lines.append(_color(color, f"FAILED: {failed} row(s) do not match the reference" if failed else
                        "all rows match the reference", failed > 0))
    return "\n".join(lines)


# --- rivals -------------------------------------------------------------------------------------------

RIVAL_SETTINGS = {
    "onnxruntime": "CPUExecutionProvider, {threads} intra-op threads, inter-op 1, no spinning, all graph optimizations",
    "openvino": "CPU, INFERENCE_NUM_THREADS {threads}, PERFORMANCE_HINT LATENCY, f32 precision",
    "inductor": "torch.compile default mode, static shapes, torch's {threads} threads",
}


def rivals_header(doc):
    env, st = doc["environment"], doc["settings"]
    parts = []
    for name in st["rivals"]:
        found = (env.get("rivals") or {}).get(name) or {}
        version = " ".join(f"{p} {v}" for p, v in found.items() if v)
        parts.append(f"{name} ({version}; {RIVAL_SETTINGS.get(name, '').format(threads=env['threads'])})")
    return ("rivals: " + "; ".join(parts) + ". On the float32 NCHW forward rows of conv2d, conv2d_relu, "
            "conv2d_relu_max_pool2d, max_pool2d and the models (the unconverted model in eval mode), from one ONNX "
            "export for both ONNX runtimes, and inductor also on the models' training steps; each checked like "
            "cnnfast, then timed alone after its warm-up; ratio = rival ms / cnnfast ms (> 1: cnnfast faster)"
            + _rivals_isa_note(st))


def _rivals_isa_note(st):
    """Which rivals --cpu-isa lowers: inductor (torch's ATen and oneDNN) and OpenVINO (its oneDNN reads
    ONEDNN_MAX_CPU_ISA: brgconv_avx2_f32 in place of brgconv_avx512_f32), not ONNX Runtime (MLAS picks
    its kernels from the CPU alone)."""
    if not st.get("cpu_isa"):
        return ""
    note = f"; --cpu-isa {st['cpu_isa']} lowers inductor and OpenVINO too"
    if "onnxruntime" in st["rivals"]:
        note += ", not ONNX Runtime (its MLAS kernels follow the CPU)"
    return note


def _rival_cells(entry):
    if entry is None:
        return ["-", "-"]
    if entry["status"] != "ok":
        return ["FAIL" if entry["status"] == "fail" else "ERROR", "-"]
    ratio = entry.get("ratio")
    return [_ms(entry.get("time")), "-" if ratio is None else f"{ratio:.2f}x"]


def rival_lines(doc, color=False):
    """The rivals' table (one line per row that has them), their geometric means per suite, and every
    rival that failed its check or could not run."""
    names = doc["settings"]["rivals"]
    rows = [r for r in doc["rows"] if r.get("rivals")]
    if not rows:
        return ["rivals: no row of this run has rivals (they run on float32 NCHW forward rows of the conv, "
                "pooling and model cases, and inductor on the models' training steps, on the CPU)"]
    headers = ["suite", "op", "shape and arguments", "dir", "cnnfast ms"]
    for name in names:
        headers += [f"{name} ms", f"{name}/cnnfast"]
    headers.append("fastest rival")
    cells = []
    for r in rows:
        c = [r["suite"], r["op"], r["args"], r["direction"], _ms(r.get("cnnfast"))]
        for name in names:
            c += _rival_cells(r["rivals"].get(name))
        fastest = r.get("fastest_rival")
        c.append(f"{fastest['name']} {fastest['ratio']:.2f}x" if fastest else "-")
        cells.append(c)
    head, rule, body = _table(headers, cells, "<<<<>" + ">>" * len(names) + ">")
    lines = ["rival runtimes (ratio = rival ms / cnnfast ms: > 1 means cnnfast is faster)", head, rule]
    for r, line in zip(rows, body):
        lines.append(_color(color, line, any(e["status"] != "ok" for e in r["rivals"].values())))
    lines.append(rule)
    for suite, s in doc["suites"].items():
        gms = s.get("rivals_geomean") or {}
        if not gms:
            continue
        parts = [f"{n} {gms[n]:.2f}x" for n in names if gms.get(n) is not None]
        fastest = s.get("fastest_rival_geomean")
        lines.append(f"{suite}: geometric mean of rival ms / cnnfast ms: {', '.join(parts) or '-'}"
                     + (f"; fastest rival of each row {fastest:.2f}x" if fastest is not None else "")
                     + f" (over {s['rival_rows']} rows)")
    bad = [(r, n, e) for r in rows for n, e in r["rivals"].items() if e["status"] != "ok"]
    for r, n, e in bad:
        verdict = "FAILED its check" if e["status"] == "fail" else "could not run"
        lines.append(_color(color, f"{n} {verdict} on {r['suite']} {r['op']} {r['args']}: {e['message']} (not timed)",
                            True))
    if not bad:
        lines.append("every rival matches the reference")
    return lines


# --- predictions --------------------------------------------------------------------------------

def format_prediction(doc):
    env, st = doc["environment"], doc["settings"]
    gpus = st["gpus"]
    lines = [f"cnnfast bench --predict  {env['date']}  commit {env.get('commit') or '?'}",
             f"command: {doc['command']}",
             "PREDICTION ONLY: no GPU was used and nothing below was measured. Roofline floors from datasheet rates:"]
    for g in gpus:
        spec = roofline.GPUS[g]
        t = spec["tflops"]
        lines.append(f"  {g}: {spec['name']}: FP32 {t['fp32']} TFLOP/s, TF32 {t['tf32']}, FP16/BF16 {t['float16']} "
                     f"(dense), {spec['gbps']:.0f} GB/s. Source: {spec['source']}")
    lines.append(f"float32 floors use the {'TF32 tensor-core' if env['tf32'] else 'plain FP32'} rate (--tf32 "
                 f"{'on' if env['tf32'] else 'off'}); batch: " + ", ".join(f"{s} {b}" for s, b in st["batch"].items()))
    if st.get("mma_choice"):
        lines.append(f"tensor-core tile choice {st['mma_choice']}")
    headers = ["suite", "op", "shape and arguments", "dir", "dtype", "layout", "GFLOP", "min MB", "FLOP/byte"]
    headers += [f"{g} floor us" for g in gpus]
    headers += [f"{g} tile, CTAs, waves, quantized floor us" for g in gpus]
    cells = []
    for r in doc["rows"]:
        c = [r["suite"], r["op"], r["args"], r["direction"], r["dtype"], r["layout"],
             f"{r['flops'] / 1e9:.4f}", f"{r['min_bytes'] / 1e6:.3f}",
             f"{r['flops'] / r['min_bytes']:.1f}" if r["min_bytes"] else "-"]
        for g in gpus:
            p = r["predicted"][g]
            c.append(f"{p['floor_s'] * 1e6:.2f} ({p['bound'][0]})")
        for g in gpus:
            m = r["predicted"][g].get("mma")
            c.append(f"{m['tile']} {m['ctas']} {m['waves']:.2f} {m['quantized_floor_s'] * 1e6:.2f}" if m else "-")
        cells.append(c)
    head, rule, body = _table(headers, cells, "<<<<<<" + ">" * (3 + 2 * len(gpus)))
    lines += ["", head, rule] + body + [rule, "(c) compute-bound, (m) memory-bound at that GPU's peaks. "
                                        "Compare a measured `cnnfast bench --device cuda` run with these floors.",
                                        "Tile, CTAs, waves: the tensor-core forward's own choice for that GPU's SMs "
                                        "(forward convolutions on tensor cores only); the quantized floor runs whole "
                                        "waves of whole tiles at the tensor rate. Predictions, not measurements."]
    return "\n".join(lines)


# --- JSON -------------------------------------------------------------------------------------------

# Required keys of the JSON document and of each row, with their types (None allowed where noted).
DOC_KEYS = {"schema": str, "kind": str, "command": str, "environment": dict, "settings": dict, "rows": list,
            "suites": dict, "passed": bool}
ENV_KEYS = {"date": str, "device": str, "device_name": str, "torch": str, "threads": int}
ROW_KEYS = {"suite": str, "op": str, "case": str, "args": str, "direction": str, "dtype": str, "layout": str,
            "flops": int, "min_bytes": int, "status": str}
MEASURED_ROW_KEYS = {"cnnfast": dict, "reference": dict, "speedup": float, "cnnfast_rate": float,
                     "floor_s": float, "cnnfast_x_floor": float, "reference_x_floor": float, "error": dict,
                     "passed": bool}
SUMMARY_KEYS = {"median_s": float, "q1_s": float, "q3_s": float, "min_s": float, "max_s": float,
                "spread": float, "samples_s": list}
ERROR_KEYS = {"max_abs": float, "max_rel": float, "ref_max_abs": float, "passed": bool}
# The peaks of a measured document: "flops" (per dtype) is what %peak and the floors use, measured by
# "flops_probe" ("fma": cnnfast's FMA probe on the CPU, per dtype in "fma"; "matmul": a GPU's matrix
# product); "matmul_flops" is the matrix product on either device; "fma" is None on a GPU.
PEAKS_KEYS = {"flops": dict, "flops_probe": str, "matmul_flops": dict, "fma": dict, "bytes": float}
# One rival's entry in a row's "rivals" (status "ok", "fail": its check failed, or "error": it could not
# run); a checked one also holds "error" and "setup_s", a timed one "time" and "ratio".
RIVAL_KEYS = {"status": str, "passed": bool, "message": str}
FMA_KEYS = {"flops": float, "capability": str, "threads": int, "chains": int, "lanes": int}


def _check_keys(obj, keys, where, problems):
    for k, t in keys.items():
        if k not in obj:
            problems.append(f"{where}: missing {k!r}")
        elif obj[k] is not None and not isinstance(obj[k], t) and not (t is float and isinstance(obj[k], int)):
            problems.append(f"{where}: {k!r} is {type(obj[k]).__name__}, expected {t.__name__}")


def validate(doc):
    """Problems with a bench JSON document (empty list when it follows the schema)."""
    problems = []
    _check_keys(doc, DOC_KEYS, "document", problems)
    if problems:
        return problems
    if doc["schema"] != SCHEMA:
        problems.append(f"schema is {doc['schema']!r}, expected {SCHEMA!r}")
    _check_keys(doc["environment"], ENV_KEYS, "environment", problems)
    if doc["kind"] == "measured":
        if not isinstance(doc.get("peaks"), dict):
            problems.append("document: a measurement holds no 'peaks'")
        else:
            _check_keys(doc["peaks"], PEAKS_KEYS, "peaks", problems)
            fma = doc["peaks"].get("fma")
            for dtype, probe in (fma.items() if isinstance(fma, dict) else ()):
                if isinstance(probe, dict):
                    _check_keys(probe, FMA_KEYS, f"peaks.fma[{dtype}]", problems)
                else:
                    problems.append(f"peaks.fma[{dtype}] is {type(probe).__name__}, expected dict")
    for i, row in enumerate(doc["rows"]):
        _check_keys(row, ROW_KEYS, f"rows[{i}]", problems)
        if doc["kind"] == "measured" and row.get("status") in ("ok", "fail"):
            _check_keys(row, MEASURED_ROW_KEYS, f"rows[{i}]", problems)
            for side in ("cnnfast", "reference"):
                if isinstance(row.get(side), dict):
                    _check_keys(row[side], SUMMARY_KEYS, f"rows[{i}].{side}", problems)
            if isinstance(row.get("error"), dict):
                _check_keys(row["error"], ERROR_KEYS, f"rows[{i}].error", problems)
        if isinstance(row.get("rivals"), dict):
            for name, entry in row["rivals"].items():
                where = f"rows[{i}].rivals[{name}]"
                if not isinstance(entry, dict):
                    problems.append(f"{where} is {type(entry).__name__}, expected dict")
                    continue
                _check_keys(entry, RIVAL_KEYS, where, problems)
                if entry.get("status") in ("ok", "fail"):
                    _check_keys(entry, {"error": dict, "setup_s": float}, where, problems)
                if entry.get("status") == "ok":
                    _check_keys(entry, {"time": dict, "ratio": float}, where, problems)
                    if isinstance(entry.get("time"), dict):
                        _check_keys(entry["time"], SUMMARY_KEYS, f"{where}.time", problems)
            if "fastest_rival" not in row:
                problems.append(f"rows[{i}]: rivals without 'fastest_rival'")
        if doc["kind"] == "predicted":
            if not isinstance(row.get("predicted"), dict):
                problems.append(f"rows[{i}]: missing 'predicted'")
            for bad in ("cnnfast", "reference", "speedup"):
                if bad in row:
                    problems.append(f"rows[{i}]: a prediction holds a measured field {bad!r}")
    for name, s in doc["suites"].items():
        _check_keys(s, {"rows": int, "failed": int, "geomean_speedup": float}, f"suites[{name}]", problems)
    return problems


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON has no inf or NaN; such a row also carries status and message
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def write_json(doc, path):
    import json  # noqa: PLC0415

    with open(path, "w") as f:
        json.dump(_jsonable(doc), f, indent=1)
        f.write("\n")


# --- plot ---------------------------------------------------------------------------------------------

def write_plot(doc, path):
    """A PNG bar chart of the speed-ups, one bar per row, grouped by suite, log scale, with the 1.0 line."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = [r for r in doc["rows"] if r.get("speedup")]
    colors = {"fwd": "#4c72b0", "bwd": "#dd8452", "fwdbwd": "#55a868"}
    xs, heights, cols, labels, edge = [], [], [], [], []
    rival_points = {}  # rival -> ([x], [rival ms / cnnfast ms])
    groups = []  # (suite, first x, last x)
    x = 0
    for suite in dict.fromkeys(r["suite"] for r in rows):
        start = x
        for r in (r for r in rows if r["suite"] == suite):
            xs.append(x)
            heights.append(r["speedup"])
            cols.append(colors.get(r["direction"], "#888888"))
            edge.append("red" if not r["passed"] else "none")
            for name, entry in (r.get("rivals") or {}).items():
                if entry.get("ratio"):
                    px, py = rival_points.setdefault(name, ([], []))
                    px.append(x)
                    py.append(entry["ratio"])
            lbl = r["op"] + " " + r["args"]
            if r["layout"] != "nchw" or len({q["layout"] for q in rows}) > 1:
                lbl += " " + r["layout"]
            if len({q["dtype"] for q in rows}) > 1:
                lbl += " " + r["dtype"]
            labels.append(f"{lbl} [{r['direction']}]")
            x += 1
        groups.append((suite, start, x - 1))
        x += 1.5
    fig, ax = plt.subplots(figsize=(max(8.0, 0.28 * len(xs) + 2), 7.5))
    markers = {"onnxruntime": ("o", "#8172b3"), "openvino": ("s", "#c44e52"), "inductor": ("^", "#937860")}
    rival_handles = []
    if xs:
        ax.bar(xs, heights, color=cols, edgecolor=edge, linewidth=1.5)
        for name, (px, py) in rival_points.items():
            marker, color = markers.get(name, ("x", "#333333"))
            rival_handles.append(ax.scatter(px, py, marker=marker, color=color, s=18, zorder=3,
                                            label=f"{name} ms / cnnfast ms"))
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, rotation=90, fontsize=6)
        ratios = [v for _, py in rival_points.values() for v in py]
        lo, hi = min(heights + ratios + [1.0]), max(heights + ratios + [1.0])
        ax.set_ylim(lo / 1.5, hi * 1.5)
        for suite, a, b in groups:
            ax.axvspan(a - 0.5, b + 0.5, color="#f2f2f2" if groups.index((suite, a, b)) % 2 else "white", zorder=0)
            gm = doc["suites"].get(suite, {}).get("geomean_speedup")
            ax.text((a + b) / 2, hi * 1.3, f"{suite}" + (f"\ngeomean {gm:.2f}x" if gm else ""),
                    ha="center", va="top", fontsize=8)
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_ylabel("speed-up (torch time / cnnfast time, log scale)" if not rival_points else
                  "log scale; bars: torch time / cnnfast time\nmarkers: rival time / cnnfast time")
    env = doc["environment"]
    ax.set_title(f"cnnfast vs PyTorch on {env['device'].upper()} ({env['device_name']}, {env['threads']} threads), "
                 f"{env['date']}", fontsize=9)
    from matplotlib.patches import Patch  # noqa: PLC0415

    used = dict.fromkeys(r["direction"] for r in rows)
    # With rival markers spread over the whole height no corner is always free: let matplotlib pick.
    ax.legend(handles=[Patch(color=colors[d], label=d) for d in used if d in colors] + rival_handles,
              loc="best" if rival_handles else "lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
