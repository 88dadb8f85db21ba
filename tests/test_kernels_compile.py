"""Every Triton kernel compiles for Hopper and Ampere GPUs (cubin) and AMD CDNA2-4 (hsaco), checked on a
machine without one, and the static GPU report of the compiled variants holds: no KDE variant spills
registers, the fp16/bf16 (and fp32: tf32) KDE variants run their products on the tensor cores, exp2 counts
match the math.

The CPU tests run the kernels in the interpreter, which never invokes Triton's compiler."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastmi.kernels import static_report

MMA = {"sm_90": "HGMMA", "sm_80": "HMMA"}  # warpgroup MMA on Hopper, mma.sync on Ampere
MMA_TYPE = {"fp16": ".F32", "bf16": ".BF16", "fp32": ".TF32"}  # fp16 operands carry no suffix


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """(the compile check's stdout and exit status, the report it wrote): one run for every test here."""
    path = tmp_path_factory.mktemp("report") / "static_gpu.json"
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_DEFAULT_FP_FUSION="1")
    command = [sys.executable, "-m", "fastmi.kernels.compile_check", "--targets", "all", "--report", str(path)]
    run = subprocess.run(command, cwd=Path(__file__).parents[1], env=env, capture_output=True, text=True, timeout=900)
    return run, json.loads(path.read_text()) if path.exists() else None


def kde_variants(report):
    return [entry for entry in report["variants"] if entry["kernel"].startswith("_kde")]


def pair_variants(report):
    """The kernels over tiles of row pairs: the KDE's and the dependence measures' (kernels/gram.py)."""
    return [entry for entry in report["variants"] if entry["kernel"].startswith(("_kde", "_gram"))]


def test_every_kernel_compiles_for_cuda_targets(compiled):
    run, _ = compiled
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert " 0 failed" in run.stdout
    for kernel in ("_kde_chain_fwd_kernel", "_kde_bwd_kernel", "_gram_fwd_kernel", "_gram_bwd_kernel",
                   "_bin_hash_kernel", "_unit_mi_kernel", "_eps_kernel"):
        assert kernel in run.stdout


def test_report_schema(compiled):
    _, report = compiled
    static_report.check_schema(report)
    assert {entry["arch"] for entry in report["variants"]} == {"sm_90", "sm_80"}
    predicted = [entry for entry in report["variants"] if entry["prediction"]]
    assert predicted and all(entry["arch"] == "sm_90" and entry["prediction"]["per_second"] > 0 for entry in predicted)
    with pytest.raises(ValueError, match="registers"):
        broken = json.loads(json.dumps(report))
        del broken["variants"][0]["resources"]["registers"]
        static_report.check_schema(broken)


def test_no_variant_spills(compiled):
    """No variant spills registers (KSG's float64 _eps_kernel on sm_80: a few bytes, outside its loop,
    static_report.SPILL_ALLOWANCE); .ci/triton_matrix.sh checks the same on the other tested tritons."""
    _, report = compiled
    assert not static_report.unexpected_spills(report["variants"])
    assert not [e for e in pair_variants(report) if e["resources"]["spill_stores"] or e["resources"]["stack"]]


def test_spill_check_sees_a_spill(compiled):
    _, report = compiled
    spilling = json.loads(json.dumps(report["variants"][0]))
    spilling["resources"].update(spill_stores=8, spill_loads=8, stack=8)
    assert static_report.unexpected_spills([spilling]) == [(static_report._name(spilling), spilling["arch"], 8, 8)]
    allowed = next(e for e in report["variants"] if e["kernel"] == "_eps_kernel" and e["arch"] == "sm_80")
    allowed = json.loads(json.dumps(allowed))
    allowed["resources"].update(spill_stores=16, spill_loads=8, stack=8)
    assert not static_report.unexpected_spills([allowed])


def test_pair_products_run_on_tensor_cores(compiled):
    """Every KDE and dependence main loop issues MMAs of its operand type: HGMMA on sm_90, HMMA on sm_80."""
    _, report = compiled
    for entry in pair_variants(report):
        opcodes = entry["loops"]["main"]["mma_instructions"]
        family, suffix = MMA[entry["arch"]], MMA_TYPE[entry["dtype"]]
        assert any(op.startswith(family) and suffix in op for op in opcodes), (static_report._name(entry), opcodes)


def test_kde_exp2_count_is_the_ideal(compiled):
    """Per tile and thread: the chain forward two exp2 per pair (one per layer), the backward two per pair
    (its per-column factors come precomputed), without leave-one-out."""
    _, report = compiled
    for entry in kde_variants(report):
        c = entry["constexprs"]
        if c["LOO"]:
            continue
        pairs_per_thread = c["BM"] * c["BN"] // (32 * entry["num_warps"])
        assert entry["loops"]["main"]["mufu_ex2"] == 2 * pairs_per_thread, static_report._name(entry)


def test_gram_exp2_count_is_the_ideal(compiled):
    """The dependence kernels: one exp2 per pair and operand (rbf), forward and backward; none for distances."""
    _, report = compiled
    for entry in report["variants"]:
        if entry["kernel"].startswith("_gram"):
            c = entry["constexprs"]
            pairs_per_thread = c["BM"] * c["BN"] // (32 * entry["num_warps"])
            want = 0 if c["DISTANCE"] else 2 * pairs_per_thread
            assert entry["loops"]["main"]["mufu_ex2"] == want, static_report._name(entry)


def test_every_kernel_compiles_for_amd_targets(compiled):
    """gfx90a (MI200), gfx942 (MI300), gfx950 (MI350) with the installed triton's HIP back-end: the launchers
    specialise as under a ROCm torch (fp32 products as one IEEE dot: gfx90a has no tf32 matrix instructions,
    on which the tf32x3 split relied and 12 variants failed before); the report's AMD rows read registers,
    spills, scratch and LDS, and no variant spills."""
    run, report = compiled
    lines = run.stdout.splitlines()
    for arch in ("gfx90a", "gfx942", "gfx950"):
        for kernel in ("_kde_chain_fwd_kernel", "_kde_bwd_kernel", "_gram_fwd_kernel", "_gram_bwd_kernel"):
            fp32 = [line for line in lines if f"{kernel} fp32" in line and arch in line]
            assert fp32 and all(line.startswith("ok") and "'SPLIT': False" in line for line in fp32), (arch, kernel)
    amd = report["amd_variants"]
    assert {entry["arch"] for entry in amd} == {"gfx90a", "gfx942", "gfx950"}
    assert len(amd) == 3 * len({(e["kernel"], json.dumps(e["constexprs"], sort_keys=True), e["dtype"])
                                for e in amd})
    assert all(e["resources"]["vgprs"] > 0 and e["resources"]["sgprs"] > 0 for e in amd)
    assert not static_report.amd_spills(amd)
    with pytest.raises(ValueError, match="AMD entry"):
        broken = json.loads(json.dumps(report))
        del broken["amd_variants"][0]["resources"]["lds"]
        static_report.check_schema(broken)


def test_the_committed_compile_matrix_is_for_these_kernel_sources(tmp_path):
    """bench/results/compile_matrix.json (python -m fastmi.kernels.compile_matrix: every triton 3.2-3.9 x sm_90,
    sm_80, gfx90a, gfx942, gfx950) records the hash of the kernel sources it compiled; a kernel edit makes it
    stale, and this (and .ci/run's --check, before the suite) fails until the matrix is rerun."""
    from fastmi.kernels import compile_matrix
    assert compile_matrix.problem() is None, compile_matrix.problem()
    matrix = json.loads((Path(__file__).parents[1] / compile_matrix.OUT).read_text())
    assert list(matrix["tritons"]) == list(compile_matrix.TRITONS)
    assert compile_matrix.failures_in_range(matrix) == {}
    copy = tmp_path / "kernels"
    copy.mkdir()
    for path in Path(compile_matrix.__file__).parent.glob("*.py"):
        (copy / path.name).write_bytes(path.read_bytes())
    assert compile_matrix.source_hash(copy) == matrix["source_hash"]
    (copy / "tiles.py").write_text((copy / "tiles.py").read_text() + "\n# an edit\n")
    assert compile_matrix.source_hash(copy) != matrix["source_hash"]
    (copy / "compile_check.py").write_text("# a tool's edit does not count\n")
    (copy / "tiles.py").write_bytes((Path(compile_matrix.__file__).parent / "tiles.py").read_bytes())
    assert compile_matrix.source_hash(copy) == matrix["source_hash"]


def test_the_matrix_check_names_a_failure_in_the_tested_range_and_not_below_it():
    """failures_in_range: every variant must compile on every target for each triton from the floor up
    (launch.TESTED_TRITON); a failure, a missing target or fewer variants than another target is named; a
    release below the floor (3.2, whose compiler aborts on 12 sm_90 variants) is recorded, not held to it."""
    from fastmi.kernels import compile_matrix
    from fastmi.kernels.launch import TESTED_TRITON
    targets = ("sm_90", "sm_80", "gfx90a", "gfx942", "gfx950")
    broken = {"compiled": 39, "failed": {"_kde_bwd_kernel fp16 {...}": "the compiler crashed"}}
    floor = ".".join(map(str, TESTED_TRITON[0])) + ".0"

    def matrix():
        clean = {target: {"compiled": 40, "failed": {}} for target in targets}
        return {"tritons": {"3.2.0": dict(clean, sm_90=broken), floor: clean, "3.10.0": dict(clean)}}

    assert compile_matrix.failures_in_range(matrix()) == {}
    bad = matrix()
    bad["tritons"][floor]["gfx942"] = broken
    assert compile_matrix.failures_in_range(bad) == {(floor, "gfx942"): broken["failed"]}
    bad = matrix()
    del bad["tritons"]["3.10.0"]["gfx950"]
    bad["tritons"][floor]["sm_80"] = {"compiled": 30, "failed": {}}
    assert compile_matrix.failures_in_range(bad) == {("3.10.0", "gfx950"): "not compiled for",
                                                     (floor, "sm_80"): "30 of 40 variants"}
    bad["tritons"][floor] = {"error": "no output"}  # compile_check itself failed
    assert compile_matrix.failures_in_range(bad)[floor, "all"] == "no output"
    assert sorted(["3.10.0", "3.9.0", "3.4.0"], key=compile_matrix.release) == ["3.4.0", "3.9.0", "3.10.0"]
