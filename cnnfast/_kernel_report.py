"""Static report of cnnfast's CUDA kernels: what ptxas says about each (registers, shared memory,
stack frame, spills) for each arch, with the theoretical occupancy that follows from those and the
block size, and (when cuobjdump is at hand at build time) the math instructions of each kernel's
main loop in the machine code. Without a GPU these are the performance figures we can stand behind.

Written by the build (setup.py gathers the ptxas logs that tools/nvcc_log.py keeps) to
``_kernel_report.json`` beside the extension; shown by ``cnnfast info --kernels``; checked by
tests/test_cuda_kernels.py (no kernel spills or has a stack frame unless ALLOWED_SPILLS says why).

Framework-free and importable without the package (setup.py loads it by path).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

REPORT_NAME = "_kernel_report.json"

# Kernels allowed to spill or use a stack frame, with the reason. Empty: none may.
ALLOWED_SPILLS: dict[str, str] = {}

# Threads per block of each kernel (its __launch_bounds__), by the kernel's unqualified name.
BLOCK_THREADS = {
    "relu_kernel": 256,
    "relu_backward_kernel": 256,
    "add_relu_kernel": 256,
    "max_pool2d_forward_kernel": 256,
    "max_pool2d_backward_gather_kernel": 256,
    "max_pool2d_backward_planes_kernel": 256,
    "conv2d_gemm_kernel": 128,
    "conv2d_wmma_kernel": 128,
    "conv2d_depthwise_kernel": 256,
    "conv2d_depthwise_grad_input_kernel": 256,
    "conv2d_depthwise_grad_weight_kernel": 256,
    "splitk_reduce_kernel": 256,
    "bias_grad_nhwc_kernel": 256,
    "bias_grad_nchw_kernel": 256,
    "transpose_kernel": 256,
    "conv2d_mma_splitk_kernel": 256,
}

# The tensor-core engine's kernels take their block size and dynamic shared memory from the tile
# configuration in their template arguments (conv2d_mma_kernel.cuh's MmaTile<BM, BN, WarpsM,
# WarpsN, Stages, RowBytes>).
_MMA_TILE = re.compile(r"MmaTile<(\d+), (\d+), (\d+), (\d+), (\d+), (\d+)>")


def mma_tile_resources(demangled: str) -> tuple[int, int] | None:
    """(threads, dynamic shared bytes) of a conv2d_mma_kernel.cuh instantiation, else None."""
    m = _MMA_TILE.search(demangled)
    if not m:
        return None
    bm, bn, wm, wn, stages, row_bytes = map(int, m.groups())
    pipe = max(stages * (bm + bn) * row_bytes, wm * 16 * (bn + 8) * 4)  # pipeline or epilogue tile
    return 32 * wm * wn, pipe + bm * 16  # + the row address table


def block_threads(demangled: str) -> int:
    tile = mma_tile_resources(demangled)
    return tile[0] if tile else BLOCK_THREADS.get(base_name(demangled), 0)

# Per-SM limits (CUDA occupancy calculator figures) of the archs cnnfast builds by default.
SM_LIMITS = {
    "sm_80": dict(regs=65536, threads=2048, blocks=32, smem=167936, reserved=1024, reg_unit=256),
    "sm_90": dict(regs=65536, threads=2048, blocks=32, smem=233472, reserved=1024, reg_unit=256),
}

_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+)'")
_PROPS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse(text: str) -> list[dict]:
    """ptxas -v output -> one record per (kernel, arch)."""
    records, cur = [], None
    for line in text.splitlines():
        m = _ENTRY.search(line)
        if m:
            cur = dict(mangled=m.group(1), arch=m.group(2), registers=0, shared_bytes=0, stack_bytes=0,
                       spill_stores=0, spill_loads=0)
            records.append(cur)
            continue
        if cur is None:
            continue
        m = _PROPS.search(line)
        if m:
            cur["stack_bytes"], cur["spill_stores"], cur["spill_loads"] = map(int, m.groups())
        m = _USED.search(line)
        if m:
            cur["registers"] = int(m.group(1))
            s = _SMEM.search(line)
            cur["shared_bytes"] = int(s.group(1)) if s else 0
    return records


def demangle(names: list[str]) -> list[str]:
    tool = shutil.which("c++filt")
    if not tool or not names:
        return names
    try:
        out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return names
    lines = out.splitlines()
    return lines if len(lines) == len(names) else names


def base_name(demangled: str) -> str:
    """'void cnnfast::cuda::relu_kernel<float>(...)' -> 'relu_kernel'."""
    head = demangled.split("(", 1)[0]
    head = re.sub(r"<.*>", "", head)
    return head.split("::")[-1].split()[-1]


def occupancy(arch: str, threads: int, registers: int, shared_bytes: int, dynamic_shared: int = 0) -> float:
    """Theoretical occupancy (active warps / max warps per SM) of one kernel on one arch."""
    lim = SM_LIMITS.get(arch)
    if lim is None or threads <= 0:
        return 0.0
    warps = -(-threads // 32)
    max_warps = lim["threads"] // 32
    by_threads = max_warps // warps
    regs_per_warp = -(-max(registers, 1) * 32 // lim["reg_unit"]) * lim["reg_unit"]
    by_regs = (lim["regs"] // regs_per_warp) // warps
    smem = shared_bytes + dynamic_shared + lim["reserved"]
    by_smem = lim["smem"] // smem
    blocks = min(by_threads, by_regs, by_smem, lim["blocks"])
    return blocks * warps / max_warps


def build_report(texts: list[str]) -> list[dict]:
    records = [r for t in texts for r in parse(t)]
    seen, unique = set(), []
    for r in records:  # the same kernel can be reported by several objects
        key = (r["mangled"], r["arch"])
        if key not in seen:
            seen.add(key)
            unique.append(r)
    names = demangle([r["mangled"] for r in unique])
    for r, name in zip(unique, names):
        r["name"] = name
        r["kernel"] = base_name(name)
        r["block_threads"] = block_threads(name)
        tile = mma_tile_resources(name)
        r["dynamic_shared_bytes"] = tile[1] if tile else 0
        r["occupancy"] = round(occupancy(r["arch"], r["block_threads"], r["registers"], r["shared_bytes"],
                                         r["dynamic_shared_bytes"]), 4)
    unique.sort(key=lambda r: (r["name"], r["arch"]))
    return unique


def write(log_paths: list[str], out_dir: str, binary: str | None = None) -> str:
    """Gather ptxas logs into out_dir/_kernel_report.json (and the raw text beside it); with the
    built binary and cuobjdump at hand, each kernel's main-loop math instructions too."""
    texts = []
    for p in log_paths:
        with open(p) as f:
            texts.append(f.read())
    report = {"kernels": build_report(texts), "allowed_spills": ALLOWED_SPILLS}
    if binary:
        add_sass(report, binary)
    path = os.path.join(out_dir, REPORT_NAME)
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(out_dir, "_kernel_report_ptxas.txt"), "w") as f:
        f.write("".join(texts))
    return path


def load(path: str | None = None) -> dict | None:
    """The report of the installed build, or None (a CPU-only build has none)."""
    path = path or os.path.join(os.path.dirname(os.path.abspath(__file__)), REPORT_NAME)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def problems(report: dict) -> list[str]:
    """Kernels that spill or have a stack frame without an allowance; kernels of unknown block size."""
    out = []
    allowed = report.get("allowed_spills", ALLOWED_SPILLS)
    for r in report["kernels"]:
        bad = r["stack_bytes"] or r["spill_stores"] or r["spill_loads"]
        if bad and r["kernel"] not in allowed:
            out.append(f"{r['name']} [{r['arch']}]: {r['stack_bytes']} bytes stack frame, "
                       f"{r['spill_stores']} bytes spill stores, {r['spill_loads']} bytes spill loads")
        if not r["block_threads"]:
            out.append(f"{r['name']} [{r['arch']}]: block size unknown (add it to BLOCK_THREADS)")
    return out


def table(report: dict) -> list[str]:
    """One line per kernel and arch, for `cnnfast info --kernels`."""
    lines = [f"{'kernel':<60} {'arch':<6} {'regs':>4} {'smem':>6} {'stack':>5} {'spill':>5} {'thr':>4} {'occ':>5}"
             f"  main-loop math"]
    for r in report["kernels"]:
        name = r["name"].split("(", 1)[0].replace("cnnfast::cuda::", "").replace("void ", "")
        math = r.get("loop_math")
        math_text = "n/a (no cuobjdump at build)" if math is None else (
            " ".join(f"{n} {op}" for op, n in sorted(math.items())) or "-")
        mma = r.get("mma_ratio")
        if mma:
            math_text += (f"; {mma['kernel']:.1f} instructions per MMA over the kernel, "
                          f"{mma['loop']:.1f} in the main loop")
        lines.append(
            f"{name[:60]:<60} {r['arch']:<6} {r['registers']:>4} {r['shared_bytes'] + r.get('dynamic_shared_bytes', 0):>6} {r['stack_bytes']:>5} "
            f"{r['spill_stores'] + r['spill_loads']:>5} {r['block_threads']:>4} {r['occupancy'] * 100:>4.0f}%"
            f"  {math_text}"
        )
    return lines


# ---- machine code (cuobjdump / nvdisasm; PyPI: nvidia-cuda-cuobjdump, nvidia-cuda-nvdisasm) -------

# Kernels that must contain tensor-core instructions (HMMA) in the SASS.
TENSOR_CORE_KERNELS = ("conv2d_wmma_kernel", "conv2d_mma_fprop_kernel")
# The mma.sync engine's kernels: HMMA, ldmatrix (LDSM) and, on the vector path, cp.async (LDGSTS);
# no subroutine call; at most this many instructions per MMA over the whole kernel (the vector path;
# the masked path gathers elements one by one and is held to the second figure); at least this
# occupancy (8 of 64 warps per SM).
MMA_ENGINE_KERNELS = ("conv2d_mma_fprop_kernel",)
MMA_MAX_INSTRUCTIONS_PER_MMA = {"vector": 40.0, "masked": 56.0}
MMA_MIN_OCCUPANCY = 0.125
# Kernels whose vector path must issue 128-bit global loads (float storage) in the SASS.
VECTOR_LOAD_KERNELS = ("relu_kernel<float>", "relu_backward_kernel<float>", "conv2d_gemm_kernel<float, 0, true>")


def find_cuobjdump() -> tuple[str, dict] | None:
    """cuobjdump and an environment in which it finds nvdisasm: on PATH, or from the nvidia wheels."""
    env = dict(os.environ)
    tool = shutil.which("cuobjdump")
    if tool and shutil.which("nvdisasm"):
        return tool, env
    try:
        import nvidia  # namespace package of the nvidia-* wheels
    except ImportError:
        return None
    for root in getattr(nvidia, "__path__", []):
        for sub in sorted(os.listdir(root)):
            bindir = os.path.join(root, sub, "bin")
            tool = os.path.join(bindir, "cuobjdump")
            if os.path.isfile(tool) and os.path.isfile(os.path.join(bindir, "nvdisasm")):
                env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
                return tool, env
    return None


_FUNCTION = re.compile(r"Function : (\S+)")
_OPCODE = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)")


def sass_counts(binary: str, arch: str = "sm_80") -> dict[str, dict[str, int]]:
    """Per kernel (mangled name): how many times each SASS opcode (with modifiers) appears."""
    found = find_cuobjdump()
    if found is None:
        raise FileNotFoundError("cuobjdump and nvdisasm not found (pip install nvidia-cuda-cuobjdump "
                                "nvidia-cuda-nvdisasm)")
    tool, env = found
    out = subprocess.run([tool, "-sass", "-arch", arch, binary], capture_output=True, text=True, env=env,
                         check=True).stdout
    counts: dict[str, dict[str, int]] = {}
    cur = None
    for line in out.splitlines():
        m = _FUNCTION.search(line)
        if m:
            cur = counts.setdefault(m.group(1), {})
            continue
        if cur is None:
            continue
        m = _OPCODE.search(line)
        if m:
            cur[m.group(1)] = cur.get(m.group(1), 0) + 1
    return counts


_INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
# (HFMA2 is left out: ptxas also uses it as a register move.)
MATH_PREFIXES = ("FFMA", "FMUL", "FADD", "HMMA", "DFMA")


def sass_instructions(binary: str, arch: str = "sm_80") -> dict[str, list[tuple[int, str, str]]]:
    """Per kernel (mangled name): its instructions as (address, opcode with modifiers, operands)."""
    found = find_cuobjdump()
    if found is None:
        raise FileNotFoundError("cuobjdump and nvdisasm not found")
    tool, env = found
    out = subprocess.run([tool, "-sass", "-arch", arch, binary], capture_output=True, text=True, env=env,
                         check=True).stdout
    kernels: dict[str, list[tuple[int, str, str]]] = {}
    cur = None
    for line in out.splitlines():
        m = _FUNCTION.search(line)
        if m:
            cur = kernels.setdefault(m.group(1), [])
            continue
        m = _INSTR.search(line)
        if cur is not None and m:
            cur.append((int(m.group(1), 16), m.group(2), m.group(3).strip()))
    return kernels


def _loops(instrs):
    """(first, last address) of every backward branch's body."""
    for addr, op, args in instrs:
        t = re.search(r"0x([0-9a-f]+)", args) if op == "BRA" else None
        if t and int(t.group(1), 16) < addr:
            yield int(t.group(1), 16), addr


def mma_ratios(instrs) -> dict | None:
    """Instructions per tensor-core MMA (HMMA) over the whole kernel and over its main loop (the
    backward branch's body with the most HMMA), without the trailing NOP padding; None without HMMA."""
    body = [i for i in instrs if i[1] != "NOP"]
    mma = sum(1 for _, op, _ in body if op.startswith("HMMA"))
    if not mma:
        return None
    best = (0, 0)
    for lo, hi in _loops(body):
        inside = [op for a, op, _ in body if lo <= a <= hi]
        n = sum(1 for op in inside if op.startswith("HMMA"))
        if n > best[0]:
            best = (n, len(inside))
    return {"kernel": round(len(body) / mma, 2), "loop": round(best[1] / best[0], 2) if best[0] else 0.0,
            "hmma": mma, "loop_hmma": best[0]}


def subroutine_calls(instrs) -> list[str]:
    """CALLs into subroutines (e.g. the 64-bit division routines of `/` and `%`): a kernel with RET
    returns from one. ptxas's CALL.REL.NOINC to the instruction after next (a convergence idiom,
    no subroutine) is not one."""
    out = [f"{op} at {a:#x}" for a, op, _ in instrs if op.startswith("RET")]
    for a, op, args in instrs:
        t = re.search(r"0x([0-9a-f]+)", args) if op.startswith("CALL") else None
        if op.startswith("CALL") and not (t and 0 < int(t.group(1), 16) - a <= 0x20):
            out.append(f"{op} {args} at {a:#x}")
    return out


def sass_loops(binary: str, arch: str = "sm_80") -> dict[str, dict[str, int]]:
    """Per kernel (mangled name): the math instructions (FFMA, HMMA, ...) of its main loop, taken as
    the backward branch's body that holds the most math instructions."""
    kernels = sass_instructions(binary, arch)
    result = {}
    for name, instrs in kernels.items():
        best: dict[str, int] = {}
        for lo, hi in _loops(instrs):
            body: dict[str, int] = {}
            for a, o, _ in instrs:
                if lo <= a <= hi and o.startswith(MATH_PREFIXES):
                    key = o.split(".")[0]
                    body[key] = body.get(key, 0) + 1
            if sum(body.values()) > sum(best.values()):
                best = body
        result[name] = best
    return result


def add_sass(report: dict, binary: str) -> None:
    """Add each kernel's main-loop math instructions (per arch) to the report, when cuobjdump is found."""
    if find_cuobjdump() is None or not os.path.isfile(binary):
        return
    for arch in sorted({r["arch"] for r in report["kernels"]}):
        try:
            loops = sass_loops(binary, arch)
        except (OSError, subprocess.CalledProcessError):
            continue
        try:
            ratios = {m: mma_ratios(instrs) for m, instrs in sass_instructions(binary, arch).items()}
        except (OSError, subprocess.CalledProcessError):
            ratios = {}
        for r in report["kernels"]:
            if r["arch"] == arch and r["mangled"] in loops:
                r["loop_math"] = loops[r["mangled"]]
            if r["arch"] == arch and ratios.get(r["mangled"]):
                r["mma_ratio"] = ratios[r["mangled"]]


def sass_problems(binary: str, arch: str = "sm_80") -> list[str]:
    """No kernel touches local memory; the float vector paths issue 128-bit global loads."""
    counts = sass_counts(binary, arch)
    names = dict(zip(counts, demangle(list(counts))))
    out = []
    for mangled, ops in counts.items():
        name = names[mangled]
        local = sum(n for op, n in ops.items() if op.startswith(("LDL", "STL")))
        if local:
            out.append(f"{name} [{arch}]: {local} local-memory instructions (LDL/STL)")
        short = name.split("(", 1)[0].replace("void ", "").replace("cnnfast::cuda::", "")
        if short in VECTOR_LOAD_KERNELS and not any(op.startswith("LDG") and ".128" in op for op in ops):
            out.append(f"{name} [{arch}]: no 128-bit global load (LDG.*.128) on its vector path")
        if base_name(name) in TENSOR_CORE_KERNELS and not any(op.startswith("HMMA") for op in ops):
            out.append(f"{name} [{arch}]: a tensor-core kernel without HMMA instructions")
    engine = [m for m in counts if base_name(names[m]) in MMA_ENGINE_KERNELS]
    instrs = sass_instructions(binary, arch) if engine else {}
    for mangled in engine:
        name, ops = names[mangled], counts[mangled]
        vector = name.split("(", 1)[0].rstrip().endswith("true>")
        need = ("HMMA", "LDSM", "LDGSTS") if vector else ("HMMA", "LDSM")
        for op in need:
            if not any(o.startswith(op) for o in ops):
                out.append(f"{name} [{arch}]: no {op}")
        for call in subroutine_calls(instrs[mangled]):
            out.append(f"{name} [{arch}]: subroutine call {call}")
        ratio = mma_ratios(instrs[mangled])
        limit = MMA_MAX_INSTRUCTIONS_PER_MMA["vector" if vector else "masked"]
        if ratio is None or ratio["kernel"] > limit:
            out.append(f"{name} [{arch}]: {ratio and ratio['kernel']} instructions per MMA (at most {limit})")
    return out


def occupancy_problems(report: dict) -> list[str]:
    """The mma.sync engine's kernels below MMA_MIN_OCCUPANCY by ptxas's figures."""
    return [f"{r['name']} [{r['arch']}]: occupancy {r['occupancy']:.3f} < {MMA_MIN_OCCUPANCY}"
            for r in report["kernels"] if r["kernel"] in MMA_ENGINE_KERNELS and r["occupancy"] < MMA_MIN_OCCUPANCY]
