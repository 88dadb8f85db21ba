"""The full compile matrix, offline: every kernel variant compiled (kernels/compile_check.py, nothing run) on
every triton release from 3.2 to 3.9 for sm_90, sm_80, gfx90a, gfx942 and gfx950, written to a JSON keyed
by a hash of the kernel sources. The run takes ~5 minutes per triton on 2 cores; CI only checks the committed
JSON (.ci/run's --check and tests/test_kernels_compile.py: the hash, and every variant compiled on every target
for each triton of the tested range), so the matrix is rerun when the kernels change, not on every commit.

    python -m fastmi.kernels.compile_matrix --cache DIR [--out bench/results/compile_matrix.json] [--tritons ...]
    python -m fastmi.kernels.compile_matrix --check      (CI: exit 1 where the committed matrix is stale or a
                                                         variant fails in the tested range)

Each triton is installed into DIR/<version> with `pip install --no-deps --target` (reused when there) and
chosen with PYTHONPATH, beside the installed torch. With --tritons a subset, the other releases' results are
kept from --out where it is for the same kernel sources. Releases before 3.5 link AMD code with an external
LLVM `ld.lld` (3.5 and later link in-process): TRITON_HIP_LLD_PATH, ROCm's, or any on the machine (Debian's
`apt install lld-19`); the one used is recorded.
"""
import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

TRITONS = ("3.2.0", "3.3.1", "3.4.0", "3.5.1", "3.6.0", "3.7.1", "3.8.0", "3.9.0")
TOOLS = ("compile_check.py", "compile_matrix.py", "static_report.py")  # read the kernels; not hashed
HERE = Path(__file__).resolve().parent
OUT = "bench/results/compile_matrix.json"
IN_PROCESS_LINKER = (3, 5)  # the first release that links AMD code itself


def source_hash(folder=HERE):
    """sha256 of the kernel modules' sources (every .py of the kernels package but the tools), in name order."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        if path.name not in TOOLS:
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def problem(path=None):
    """None where the committed matrix is for the current kernel sources and every variant compiles on the
    tested tritons (failures_in_range), else why not."""
    path = Path(path) if path else HERE.parent / OUT
    if not path.exists():
        return f"{path} is missing"
    matrix = json.loads(path.read_text())
    recorded, current = matrix.get("source_hash"), source_hash()
    if recorded != current:
        return (f"{path} was compiled from other kernel sources (hash {str(recorded)[:12]}, now "
                f"{current[:12]}): rerun python -m fastmi.kernels.compile_matrix --cache DIR")
    failed = failures_in_range(matrix)
    return f"variants fail to compile in the tested range: {sorted(failed)}" if failed else None


def failures_in_range(matrix):
    """{(triton, target): what is wrong} for the releases in the tested range (launch.TESTED_TRITON: the floor
    and up): variants that failed, a target missing, or fewer variants compiled than on another target; those
    below the floor are recorded, not held to compiling everything (3.2's compiler aborts on some)."""
    from .compile_check import GPUS, target_name
    from .launch import TESTED_TRITON
    expected = [target_name(arch) for arch in GPUS]
    found = {}
    for version, targets in matrix["tritons"].items():
        if release(version) < TESTED_TRITON[0]:
            continue
        if "error" in targets:
            found[version, "all"] = targets["error"]
            continue
        most = max((result["compiled"] for result in targets.values()), default=0)
        for target in expected:
            result = targets.get(target)
            if result is None:
                found[version, target] = "not compiled for"
            elif result["failed"] or result["compiled"] < most:
                found[version, target] = result["failed"] or f"{result['compiled']} of {most} variants"
    return found


def installed(version, cache):
    target = Path(cache) / version
    if not (target / "triton").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                        f"triton=={version}"], check=True)
    return target


def outcome(stdout):
    """{target: {"compiled": n, "failed": {variant: first error line}}} from compile_check's lines."""
    targets = {}
    for line in stdout.splitlines():
        status, _, rest = line.partition(" ")
        if status not in ("ok", "FAIL"):
            continue
        label, _, error = rest.strip().partition(") ")
        target = label.rsplit(" (", 1)[0].rsplit(" ", 1)[-1]
        entry = targets.setdefault(target, {"compiled": 0, "failed": {}})
        if status == "ok":
            entry["compiled"] += 1
        else:
            entry["failed"][label.rsplit(" ", 2)[0]] = error.strip()
    return targets


def release(version):
    """(3, 4, 0) of "3.4.0": compares with launch.TESTED_TRITON's (major, minor) pairs and sorts releases."""
    return tuple(int(part) for part in version.split("."))


def hip_linker():
    """An LLVM ld.lld for the releases that link AMD code with one: TRITON_HIP_LLD_PATH, ROCm's, one on
    PATH, or the newest of Debian's /usr/lib/llvm-*; None where the machine has none."""
    candidates = [os.environ.get("TRITON_HIP_LLD_PATH"), "/opt/rocm/llvm/bin/ld.lld", shutil.which("ld.lld")]
    debian = glob.glob("/usr/lib/llvm-*/bin/ld.lld")
    candidates += sorted(debian, key=lambda path: int(re.sub(r"\D", "", path.split("llvm-")[1]) or -1), reverse=True)
    return next((path for path in candidates if path and os.access(path, os.X_OK)), None)


def linker_version(path):
    done = subprocess.run([path, "--version"], capture_output=True, text=True)
    return f"{done.stdout.strip().splitlines()[0] if done.stdout.strip() else 'ld.lld'} ({path})"


def run_one(version, cache, linker=None):
    env = dict(os.environ, PYTHONPATH=str(installed(version, cache)), TRITON_INTERPRET="0",
               TRITON_DEFAULT_FP_FUSION="1")
    if linker:
        env["TRITON_HIP_LLD_PATH"] = linker
    done = subprocess.run([sys.executable, "-m", "fastmi.kernels.compile_check", "--targets", "all"], env=env,
                          capture_output=True, text=True, timeout=3600)
    found = outcome(done.stdout)
    if not found:
        found = {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output"}
    return found


def kept_results(path):
    """({version: results}, {version: AMD linker}) of an earlier run for the same kernel sources, else empty."""
    path = Path(path)
    if not path.exists():
        return {}, {}
    earlier = json.loads(path.read_text())
    if earlier.get("source_hash") != source_hash():
        print(f"{path} is for other kernel sources: its releases {list(earlier.get('tritons', {}))} are not kept")
        return {}, {}
    return earlier["tritons"], earlier.get("hip_linker", {})


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastmi.kernels.compile_matrix", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only check the committed matrix: "
                        "for these kernel sources, every variant compiled on the tested tritons")
    parser.add_argument("--cache", help="folder for the tritons (one per version)")
    parser.add_argument("--out", default=OUT, help=f"the JSON to write (default {OUT})")
    parser.add_argument("--tritons", default=",".join(TRITONS), help="comma-separated versions")
    args = parser.parse_args(argv)
    if args.check:
        found = problem()
        sys.exit(f"compile matrix: {found}" if found else 0)
    if not args.cache:
        parser.error("--cache DIR is needed to compile the matrix")
    matrix, linkers = kept_results(args.out)
    linker = hip_linker()
    for version in args.tritons.split(","):
        external = release(version) < IN_PROCESS_LINKER
        matrix[version] = run_one(version, args.cache, linker if external else None)
        if external:
            linkers[version] = linker_version(linker) if linker else "none on this machine"
        summary = {t: (v["compiled"], len(v["failed"])) for t, v in matrix[version].items() if isinstance(v, dict)}
        print(f"triton {version}: (compiled, failed) per target {summary or matrix[version]}", flush=True)
    order = sorted(matrix, key=release)
    Path(args.out).write_text(json.dumps(dict(source_hash=source_hash(), tritons={v: matrix[v] for v in order},
                                              hip_linker={v: linkers[v] for v in order if v in linkers}),
                                         indent=1) + "\n")


if __name__ == "__main__":
    main()
