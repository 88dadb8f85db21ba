"""Static GPU report: what each compiled kernel variant costs, read off its cubin without a GPU.

`python -m fastmi.kernels.compile_check --report PATH` compiles every variant (compile_check.py) and
hands each CompiledKernel to analyse():

- resources: registers per thread and stack frame as ptxas recorded them in the cubin (`cuobjdump
  -res-usage`), spill stores / loads (bytes per thread) as the local-memory traffic in the SASS (STL /
  LDL: the figures `ptxas -v` prints), shared memory per program from the compiled kernel's metadata,
  and the programs that fit one SM;
- SASS (`nvdisasm` of the cubin): static counts of MUFU.EX2, tensor-core MMA (HGMMA on sm_90, HMMA
  on sm_80), FFMA / FADD / FMUL, global and shared loads, local (spill) traffic, all instructions.
  Counts are per warp: each SASS instruction is issued once by every warp of the program.

Main loop: loops are read off the SASS as backward branches (a BRA to a label at or before it: the
interval [label, branch] is the loop body; a branch to itself is the trap after EXIT). The main loop
is the outermost loop with the most instructions (the column-tile loop of the KDE kernels, the row
loop of unit_mi, the tile loop of KSG, the feature loop of bin_hash). Its counts are per iteration
with every nested loop counted once: one feature block per operand (D <= BK) for the Gram tiles, and
for the chain forward, whose layer 0 is peeled off its layer loop, one pass of that loop: the two
layers of log_sums. Each nested loop's own counts are listed too (the cost of a further feature
block, or of a further chain layer).

Prediction (sm_90 counts, an H100 SXM): per main-loop iteration each pipe needs
    MUFU:   mufu x warps x 32 / 16 clocks        FP32: (ffma + fadd + fmul) x warps x 32 / 128
    tensor: MMA multiply-adds / (2048 fp16/bf16, 1024 tf32, 4096 int8 per clock)
    issue:  all instructions x warps / 4 clocks  (one warp instruction per scheduler per clock)
and the bound is work per iteration x 132 SMs x 1.98 GHz / the slowest pipe's clocks: every pipe
busy all the time, nothing stalled, memory free. It is a ceiling to compare variants with, not a
timing; NVIDIA's dense tensor figures (989 TFLOP/s fp16) correspond to ~1.83 GHz, so the tensor
bound is ~8% optimistic.
"""
import json
import math
import re
import subprocess
import tempfile
from pathlib import Path

H100 = dict(sms=132, clock_hz=1.98e9, mufu_per_clock=16, fp32_per_clock=128, issue_per_clock=4,
            mma_per_clock={"fp16": 2048, "bf16": 2048, "tf32": 1024, "int8": 4096})
SM_LIMITS = {90: dict(registers=65536, shared=233472, warps=64, programs=32),  # per SM; 1 KB reserved
             80: dict(registers=65536, shared=167936, warps=64, programs=32)}  # per program (block)

_INSTRUCTION = re.compile(r"/\*([0-9a-f]+)\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Za-z0-9_.]*)([^;]*);")
_LABEL = re.compile(r"^(\.L_x_\d+):")
_BRANCH_TARGET = re.compile(r"`\((\.L_x_\d+)\)")


# ----------------------------------------------------------------------------------- tools

def _tool(name):
    """Path of one of the CUDA tools Triton ships (nvdisasm, cuobjdump): triton/backends/nvidia/bin in every
    release of the supported range (triton.knobs, which can point elsewhere, came with 3.4)."""
    try:
        from triton import knobs
    except ImportError:
        import triton
        return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)
    return getattr(knobs.nvidia, name).path


def _run_on_cubin(tool, options, cubin):
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        return subprocess.run([_tool(tool), *options, file.name], capture_output=True, text=True, check=True).stdout


def disassemble(cubin):
    return _run_on_cubin("nvdisasm", ["-c"], cubin)


def cubin_resources(cubin):
    """{registers, stack} per thread: ptxas's own figures, recorded in the cubin (cuobjdump -res-usage)."""
    usage = re.search(r"REG:(\d+) STACK:(\d+)", _run_on_cubin("cuobjdump", ["-res-usage"], cubin))
    if not usage:
        raise RuntimeError("cuobjdump -res-usage: no REG/STACK line")
    return dict(registers=int(usage.group(1)), stack=int(usage.group(2)))


def spill_bytes(instructions):
    """(stores, loads): bytes per thread of the local-memory stores / loads in the SASS (STL, LDL and
    their .64 / .128 forms): what `ptxas -v` reports as spill stores / loads (equal on every kernel
    checked, e.g. 720/952 and 2880/3028 bytes for the spilling kernels before the rework)."""
    def width(opcode):
        wide = re.search(r"\.(64|128)\b", opcode)
        return int(wide.group(1)) // 8 if wide else 4
    stores = sum(width(opcode) for _, opcode, _ in instructions if opcode.split(".")[0] == "STL")
    loads = sum(width(opcode) for _, opcode, _ in instructions if opcode.split(".")[0] == "LDL")
    return stores, loads


# ----------------------------------------------------------------------------------- SASS

def parse_sass(text):
    """[(address, opcode, operands)] and {label: address of the instruction after it}."""
    instructions, labels, pending = [], {}, []
    for line in text.splitlines():
        label = _LABEL.match(line.strip())
        if label:
            pending.append(label.group(1))
            continue
        match = _INSTRUCTION.search(line)
        if match:
            address = int(match.group(1), 16)
            for name in pending:
                labels[name] = address
            pending = []
            instructions.append((address, match.group(2), match.group(3)))
    return instructions, labels


def find_loops(instructions, labels):
    """[(first, last)] address intervals of the loops: backward branches, the trap after EXIT left out."""
    loops = []
    for address, opcode, operands in instructions:
        target = _BRANCH_TARGET.search(operands)
        if opcode.startswith("BRA") and target and labels[target.group(1)] < address:
            loops.append((labels[target.group(1)], address))
    return sorted(set(loops))


def _inside(inner, outer):
    return outer[0] <= inner[0] and inner[1] <= outer[1] and inner != outer


def main_loop(instructions, loops):
    """The outermost loop with the most instructions (None for a kernel without a loop)."""
    outermost = [loop for loop in loops if not any(_inside(loop, other) for other in loops)]
    return max(outermost, key=lambda loop: len(_body(instructions, loop)), default=None)


def _body(instructions, loop):
    return [(opcode, operands) for address, opcode, operands in instructions if loop[0] <= address <= loop[1]]


def _mma_multiply_adds(opcode):
    """(multiply-adds of one warp's issue of an MMA instruction, operand type) from its shape suffix."""
    kind = "tf32" if ".TF32" in opcode else "bf16" if ".BF16" in opcode else \
        "int8" if ".S8" in opcode or ".U8" in opcode else "fp16"
    wgmma = re.match(r"[HIQ]GMMA\.(\d+)x(\d+)x(\d+)", opcode)
    if wgmma:  # a warpgroup (4 warps) instruction: each warp's issue is a quarter of the m x n x k
        m, n, k = map(int, wgmma.groups())
        return m * n * k // 4, kind
    mma = re.match(r"[HI]MMA\.(16|8)(8|16)(\d+)", opcode)
    if mma:
        m, n, k = map(int, mma.groups())
        return m * n * k, kind
    raise ValueError(f"unknown MMA shape: {opcode}")


def count(body):
    """Static per-warp counts of the instruction classes of a list of (opcode, operands)."""
    counts = dict(instructions=len(body), mufu_ex2=0, mufu=0, mma=0, mma_instructions={}, mma_multiply_adds={},
                  ffma=0, fadd=0, fmul=0, global_loads=0, shared_loads=0, local_loads=0, local_stores=0)
    for opcode, _ in body:
        base = opcode.split(".")[0]
        if base == "MUFU":
            counts["mufu"] += 1
            counts["mufu_ex2"] += opcode.startswith("MUFU.EX2")
        elif base in ("HGMMA", "HMMA", "IMMA", "IGMMA", "QGMMA"):
            counts["mma"] += 1
            counts["mma_instructions"][opcode] = counts["mma_instructions"].get(opcode, 0) + 1
            multiply_adds, kind = _mma_multiply_adds(opcode)
            counts["mma_multiply_adds"][kind] = counts["mma_multiply_adds"].get(kind, 0) + multiply_adds
        elif base in ("FFMA", "FADD", "FMUL"):
            counts[base.lower()] += 1
        elif base in ("LDG", "LDGSTS", "UTMALDG", "UBLKCP"):  # UBLKCP/UTMALDG: copy-engine loads
            counts["global_loads"] += 1
        elif base in ("LDS", "LDSM"):
            counts["shared_loads"] += 1
        elif base == "LDL":
            counts["local_loads"] += 1
        elif base == "STL":
            counts["local_stores"] += 1
    return counts


def loop_counts(instructions, labels):
    """{"main": per-iteration counts of the main loop, "nested": [counts of each loop inside it],
    "kernel": counts of the whole kernel}."""
    loops = find_loops(instructions, labels)
    main = main_loop(instructions, loops)
    everything = count([(opcode, operands) for _, opcode, operands in instructions])
    if main is None:
        return dict(main=None, nested=[], kernel=everything)
    nested = [loop for loop in loops if _inside(loop, main)]
    outermost_nested = [loop for loop in nested if not any(_inside(loop, other) for other in nested)]
    return dict(main=count(_body(instructions, main)),
                nested=[count(_body(instructions, loop)) for loop in outermost_nested], kernel=everything)


# ----------------------------------------------------------------------------------- model

def occupancy(registers, shared, warps, arch):
    """Programs that fit one SM: registers (allocated per warp in units of 256), shared memory, warps."""
    limits = SM_LIMITS[arch]
    per_warp = math.ceil(registers * 32 / 256) * 256
    by_registers = limits["registers"] // (per_warp * warps)
    by_shared = limits["shared"] // (shared + 1024)
    return min(by_registers, by_shared, limits["warps"] // warps, limits["programs"])


def pipe_clocks(counts, warps, gpu=H100):
    """SM clocks per main-loop iteration that each pipe needs (module docstring)."""
    threads = warps * 32
    mma = sum(multiply_adds * warps / gpu["mma_per_clock"][kind]
              for kind, multiply_adds in counts["mma_multiply_adds"].items())
    return dict(mufu=counts["mufu"] * threads / gpu["mufu_per_clock"],
                fp32=(counts["ffma"] + counts["fadd"] + counts["fmul"]) * threads / gpu["fp32_per_clock"],
                tensor=mma, issue=counts["instructions"] * warps / gpu["issue_per_clock"])


def predict(counts, warps, work, unit, gpu=H100):
    """Bound on work per second on the whole GPU and the pipe that sets it."""
    clocks = pipe_clocks(counts, warps, gpu)
    limiter = max(clocks, key=clocks.get)
    per_second = work * gpu["sms"] * gpu["clock_hz"] / clocks[limiter]
    return dict(unit=unit, work_per_iteration=work, clocks=clocks, limiter=limiter, per_second=per_second)


# ----------------------------------------------------------------------------------- report

# Work done by one iteration of each kernel's main loop, nested loops once: (amount, unit). The chain
# forward's iteration is layer 0 and one pass of the layer loop: two layers, the bound of log_sums.
WORK = {"_kde_chain_fwd_kernel": lambda c: (c["BM"] * c["BN"], "pairs"),
        "_kde_bwd_kernel": lambda c: (c["BM"] * c["BN"], "pairs"),  # one output chunk of one tile
        "_gram_fwd_kernel": lambda c: (c["BM"] * c["BN"], "pairs"),
        "_gram_bwd_kernel": lambda c: (c["BM"] * c["BN"], "pairs"),  # one output chunk of one tile
        "_bin_hash_kernel": lambda c: (c["BM"] * c["BF"], "values"),
        "_unit_mi_kernel": lambda c: (c["BR"] * c["BP"] * c["BQ"], "row-unit-pairs"),
        "_eps_kernel": lambda c: (c["BM"] * c["BM"], "pairs"),  # one column tile, one feature
        "_count_kernel": lambda c: (c["BM"] * c["BM"], "pairs")}


def _dtype(launch):
    pointers = [kind[1:] for kind in launch.signature.values() if kind.startswith("*")]
    return pointers[0] if pointers else None


# Spills the report tolerates, in bytes stored per thread: _eps_kernel (KSG, float64) on sm_80 saves a
# few registers around the calls of ptxas's divergent-warp shuffle path, outside its tile loop; every
# ptxas of the tested range (triton 3.4-3.9) decides it differently (0-16 bytes), and tiles, warps and
# reductions tried for it moved it rather than removed it.
SPILL_ALLOWANCE = {("_eps_kernel", "sm_80"): 16}


def unexpected_spills(entries):
    """[(kernel, arch, spill stores, spill loads)] of the variants that spill beyond SPILL_ALLOWANCE."""
    found = []
    for entry in entries:
        r = entry["resources"]
        allowed = SPILL_ALLOWANCE.get((entry["kernel"], entry["arch"]), 0)
        if r["spill_stores"] > allowed or r["spill_loads"] > allowed or (r["stack"] and not allowed):
            found.append((_name(entry), entry["arch"], r["spill_stores"], r["spill_loads"]))
    return found


def analyse(launch, arch, compiled):
    """The report entry of one compiled variant (JSON-ready)."""
    constexprs = launch.constexprs
    warps = compiled.metadata.num_warps
    instructions, labels = parse_sass(disassemble(compiled.asm["cubin"]))
    resources = cubin_resources(compiled.asm["cubin"])
    resources["spill_stores"], resources["spill_loads"] = spill_bytes(instructions)
    resources["shared"] = compiled.metadata.shared
    resources["programs_per_sm"] = occupancy(resources["registers"], resources["shared"], warps, arch)
    loops = loop_counts(instructions, labels)
    entry = dict(kernel=launch.kernel.__name__, arch=f"sm_{arch}", dtype=_dtype(launch), num_warps=warps,
                 constexprs={name: value if isinstance(value, (int, float, str, type(None))) else str(value)
                             for name, value in constexprs.items()},
                 resources=resources, loops=loops, prediction=None)
    rule = WORK.get(launch.kernel.__name__)
    if arch == 90 and loops["main"] is not None and rule:
        entry["prediction"] = predict(loops["main"], warps, *rule(constexprs))
    return entry


# AMD (no disassembler here): the kernel descriptor's register, spill and scratch counts that the AMDGCN's
# metadata notes carry, and the LDS bytes of Triton's metadata.
AMD_NOTES = dict(vgprs="vgpr_count", agprs="agpr_count", sgprs="sgpr_count", vgpr_spills="vgpr_spill_count",
                 sgpr_spills="sgpr_spill_count", scratch="private_segment_fixed_size")
AMD_RESOURCES = (*AMD_NOTES, "lds")


def analyse_amd(launch, arch, compiled):
    """The report entry of one variant compiled for an AMD arch (JSON-ready): AMD_RESOURCES."""
    text = compiled.asm["amdgcn"]
    resources = {}
    for name, note in AMD_NOTES.items():
        found = re.search(rf"\.{note}:\s*(\d+)", text)
        if found is None:
            raise ValueError(f"{launch.kernel.__name__} {arch}: no .{note} in the AMDGCN metadata")
        resources[name] = int(found.group(1))
    resources["lds"] = compiled.metadata.shared
    return dict(kernel=launch.kernel.__name__, arch=arch, dtype=_dtype(launch), num_warps=compiled.metadata.num_warps,
                constexprs={name: value if isinstance(value, (int, float, str, type(None))) else str(value)
                            for name, value in launch.constexprs.items()}, resources=resources)


def amd_spills(entries):
    """[(variant, arch, VGPR spills, scratch bytes)] of the AMD entries that spill to memory (VGPRs to
    scratch). SGPR spills are not counted: the compiler parks them in VGPR lanes (v_writelane), no memory
    traffic; the table shows them (unit_mi: 5-22 SGPRs, with triton 3.9)."""
    return [(_name(e), e["arch"], e["resources"]["vgpr_spills"], e["resources"]["scratch"]) for e in entries
            if e["resources"]["vgpr_spills"] or e["resources"]["scratch"]]


SCHEMA = dict(kernel=str, arch=str, dtype=(str, type(None)), num_warps=int, constexprs=dict, resources=dict,
              loops=dict, prediction=(dict, type(None)))
RESOURCES = ("registers", "stack", "spill_stores", "spill_loads", "shared", "programs_per_sm")
COUNTS = ("instructions", "mufu_ex2", "mufu", "mma", "mma_instructions", "mma_multiply_adds", "ffma", "fadd", "fmul",
          "global_loads", "shared_loads", "local_loads", "local_stores")


def _check_entry(entry):
    for field, kinds in SCHEMA.items():
        if not isinstance(entry.get(field, ...), kinds):
            raise ValueError(f"{entry.get('kernel')}: field {field!r} missing or not {kinds}")
    missing = [name for name in RESOURCES if not isinstance(entry["resources"].get(name), int)]
    for counts in [entry["loops"]["kernel"], entry["loops"]["main"] or {}, *entry["loops"]["nested"]]:
        missing += [name for name in COUNTS if counts and name not in counts]
    if entry["prediction"] is not None:
        missing += [name for name in ("unit", "limiter", "per_second", "clocks") if name not in entry["prediction"]]
    if missing:
        raise ValueError(f"{entry['kernel']} {entry['arch']}: missing {missing}")


def check_schema(report):
    """Raise ValueError where a report (the parsed JSON) lacks a field or has one of the wrong type.
    {"model": {...}, "variants": [entry, ...], optionally "before": {"source": str, "variants": [...]} and
    "amd_variants": [AMD entry, ...]}."""
    if not {"model", "variants"} <= set(report) <= {"model", "variants", "before", "amd_variants"} \
            or not report["variants"]:
        raise ValueError("a report is {'model', 'variants', optionally 'before', 'amd_variants'} with at least one "
                         "variant")
    for entry in report.get("amd_variants", []):
        missing = [name for name in AMD_RESOURCES if not isinstance(entry.get("resources", {}).get(name), int)]
        if missing or not entry.get("arch", "").startswith("gfx"):
            raise ValueError(f"{entry.get('kernel')} {entry.get('arch')}: an AMD entry without "
                             f"{missing or 'a gfx arch'}")
    before = report.get("before", {"source": "", "variants": []})
    if not isinstance(before.get("source"), str) or not isinstance(before.get("variants"), list):
        raise ValueError("'before' is {'source': str, 'variants': [...]}")
    for entry in report["variants"] + before["variants"]:
        _check_entry(entry)


# ----------------------------------------------------------------------------------- tables

def _name(entry):
    """A variant's short name: kernel, dtype, flags, tile."""
    c = entry["constexprs"]
    flags = [name for name in ("LOO", "WIDE", "SOFT", "DISCRETE", "DISTANCE") if c.get(name)]
    tile = "x".join(str(c[name]) for name in ("BM", "BN") if name in c)
    chunk = [f"BF{c['BF']}"] if "BF" in c and entry["kernel"].startswith(("_kde", "_gram")) else []
    kernel = entry["kernel"].strip("_").replace("_kernel", "")
    return " ".join([kernel, entry["dtype"] or "", *flags, tile, *chunk]).replace("  ", " ").strip()


def _pair(entries):
    """{name: {arch: entry}}, in the order of the entries."""
    rows = {}
    for entry in entries:
        rows.setdefault(_name(entry), {})[entry["arch"]] = entry
    return rows


def _both(archs, value):
    return " / ".join(str(value(archs[arch])) if arch in archs else "-" for arch in ("sm_90", "sm_80"))


def _spills(entry):
    r = entry["resources"]
    return f"{r['spill_stores']}/{r['spill_loads']}"


def _bound(entry):
    p = entry and entry["prediction"]
    return "" if not p else f"{p['per_second']:.2g} {p['unit']}/s ({p['limiter']})"


def _loop_cells(entry):
    main = entry["loops"]["main"]
    if main is None:
        return ["", "", "", ""]
    fp32 = main["ffma"] + main["fadd"] + main["fmul"]
    return [main["mufu_ex2"], main["mma"], fp32, f"{main['global_loads']}/{main['shared_loads']}"]


def markdown(entries):
    """Compact table, one row per variant: sm_90 / sm_80 resources, sm_90 main-loop counts, H100 bound."""
    lines = ["| variant | warps | regs | spill B st/ld | smem KB | programs/SM | EX2 | MMA | FP32 | LDG/LDS "
             "| H100 bound (limiting pipe) |", "|" + "---|" * 11]
    for name, archs in _pair(entries).items():
        hopper = archs.get("sm_90") or next(iter(archs.values()))
        cells = [name, hopper["num_warps"], _both(archs, lambda e: e["resources"]["registers"]), _both(archs, _spills),
                 _both(archs, lambda e: e["resources"]["shared"] // 1024),
                 _both(archs, lambda e: e["resources"]["programs_per_sm"]), *_loop_cells(hopper), _bound(hopper)]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines)


def markdown_amd(entries):
    """One row per variant: each AMD arch's VGPRs (+ AGPRs), SGPRs, spills, scratch and LDS."""
    archs = list(dict.fromkeys(e["arch"] for e in entries))
    lines = [f"| variant | warps | VGPRs + AGPRs ({' / '.join(archs)}) | SGPRs | VGPR/SGPR spills | scratch B "
             "| LDS KB |", "|" + "---|" * 7]
    for name, by_arch in _pair(entries).items():
        first = next(iter(by_arch.values()))

        def cells(value):
            return " / ".join(str(value(by_arch[a]["resources"])) if a in by_arch else "-" for a in archs)
        lines.append("| " + " | ".join([name, str(first["num_warps"]), cells(lambda r: f"{r['vgprs']}+{r['agprs']}"),
                                        cells(lambda r: r["sgprs"]),
                                        cells(lambda r: f"{r['vgpr_spills']}/{r['sgpr_spills']}"),
                                        cells(lambda r: r["scratch"]), cells(lambda r: r["lds"] // 1024)]) + " |")
    return "\n".join(lines)


def before_after(before, after):
    """Table of the sm_90 resources and counts of the KDE kernels before and after, one row per dtype and loo."""
    def key(entry):
        return entry["dtype"], bool(entry["constexprs"].get("LOO")), entry["kernel"].endswith("bwd_kernel")

    def pick(entries):
        chosen = {}
        for entry in entries:  # the first sm_90 variant of each (dtype, loo, direction); WIDE ones left out
            if entry["arch"] == "sm_90" and entry["kernel"].startswith("_kde") and not entry["constexprs"].get("WIDE"):
                chosen.setdefault(key(entry), entry)
        return chosen

    old, new = pick(before), pick(after)
    def exp2_per_pair(entry):
        per_thread = entry["loops"]["main"]["mufu_ex2"] / entry["prediction"]["work_per_iteration"]
        return f"{per_thread * 32 * entry['num_warps']:.2g}"

    def occupancy_cell(entry):
        return f"{entry['resources']['programs_per_sm']}×{entry['num_warps']}"

    lines = ["| sm_90 variant | regs | spill B st/ld | smem KB | programs × warps per SM | EX2 per pair "
             "| pairs per tile | H100 bound |", "|" + "---|" * 8]
    for k in sorted(set(old) & set(new), key=lambda k: (k[2], k[0], k[1])):
        a, b = old[k], new[k]
        cells = [f"{'backward' if k[2] else 'forward'} {k[0]}{' LOO' if k[1] else ''}"]
        cells += [f"{a['resources'][f]} → {b['resources'][f]}" for f in ("registers",)]
        cells += [f"{_spills(a)} → {_spills(b)}",
                  f"{a['resources']['shared'] // 1024} → {b['resources']['shared'] // 1024}",
                  f"{occupancy_cell(a)} → {occupancy_cell(b)}",
                  f"{exp2_per_pair(a)} → {exp2_per_pair(b)}",
                  f"{a['prediction']['work_per_iteration']} → {b['prediction']['work_per_iteration']}",
                  f"{_bound(a)} → {_bound(b)}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(entries, path, amd_entries=()):
    """Write the JSON report to path (keeping the "before" section a report already there has, and its AMD
    entries unless new ones are given); return its markdown tables."""
    path = Path(path)
    import triton
    report = dict(model=dict(gpu="H100 SXM", **H100, triton=triton.__version__,
                             counts="static SASS instructions per warp",
                             main_loop="outermost loop with the most instructions, nested loops counted once"),
                  variants=entries)
    if path.exists():
        kept = ("before",) if amd_entries else ("before", "amd_variants")
        report.update({k: v for k, v in json.loads(path.read_text()).items() if k in kept})
    if amd_entries:
        report["amd_variants"] = list(amd_entries)
    check_schema(report)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    tables = [markdown(entries)]
    if "before" in report:
        tables.append(before_after(report["before"]["variants"], entries))
    if report.get("amd_variants"):
        tables.append(markdown_amd(report["amd_variants"]))
    return "\n\n".join(tables)
