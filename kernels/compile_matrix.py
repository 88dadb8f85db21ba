"""The full compile matrix, offline: every kernel variant compiled (kernels/compile_check.py, nothing run) on
every triton release from 3.2 to 3.9 for sm_90, sm_80, gfx90a, gfx942 and gfx950, written to a JSON keyed
by a hash of the kernel sources. The run takes ~5 minutes per triton on 2 cores; CI only checks the hash
(tests/test_kernels_compile.py), so the matrix is rerun when the kernels change, not on every commit.

    python -m fastmi.kernels.compile_matrix --cache DIR [--out bench/results/compile_matrix.json]
    python -m fastmi.kernels.compile_matrix --check      (CI: exit 1 where the committed matrix is stale)

Each triton is installed into DIR/<version> with `pip install --no-deps --target` (reused when there) and
chosen with PYTHONPATH, beside the installed torch.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

TRITONS = ("3.2.0", "3.3.1", "3.4.0", "3.5.1", "3.6.0", "3.7.1", "3.8.0", "3.9.0")
TOOLS = ("compile_check.py", "compile_matrix.py", "static_report.py")  # read the kernels; not hashed
HERE = Path(__file__).resolve().parent
OUT = "bench/results/compile_matrix.json"


def source_hash(folder=HERE):
    """sha256 of the kernel modules' sources (every .py of the kernels package but the tools), in name order."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        if path.name not in TOOLS:
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def stale(path=None):
    """None where the committed matrix is for the current kernel sources, else why not."""
    path = Path(path) if path else HERE.parent / OUT
    if not path.exists():
        return f"{path} is missing"
    recorded = json.loads(path.read_text()).get("source_hash")
    if recorded != source_hash():
        return (f"{path} was compiled from other kernel sources (hash {str(recorded)[:12]}, now "
                f"{source_hash()[:12]}): rerun python -m fastmi.kernels.compile_matrix --cache DIR")
    return None


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


def run_one(version, cache):
    env = dict(os.environ, PYTHONPATH=str(installed(version, cache)), TRITON_INTERPRET="0",
               TRITON_DEFAULT_FP_FUSION="1")
    done = subprocess.run([sys.executable, "-m", "fastmi.kernels.compile_check", "--targets", "all"], env=env,
                          capture_output=True, text=True, timeout=3600)
    found = outcome(done.stdout)
    if not found:
        found = {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output"}
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastmi.kernels.compile_matrix", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the committed matrix is current")
    parser.add_argument("--cache", help="folder for the tritons (one per version)")
    parser.add_argument("--out", default=OUT, help=f"the JSON to write (default {OUT})")
    parser.add_argument("--tritons", default=",".join(TRITONS), help="comma-separated versions")
    args = parser.parse_args(argv)
    if args.check:
        problem = stale()
        sys.exit(f"compile matrix: {problem}" if problem else 0)
    if not args.cache:
        parser.error("--cache DIR is needed to compile the matrix")
    matrix = {}
    for version in args.tritons.split(","):
        matrix[version] = run_one(version, args.cache)
        summary = {t: (v["compiled"], len(v["failed"])) for t, v in matrix[version].items() if isinstance(v, dict)}
        print(f"triton {version}: (compiled, failed) per target {summary or matrix[version]}", flush=True)
    Path(args.out).write_text(json.dumps(dict(source_hash=source_hash(), tritons=matrix), indent=1) + "\n")


if __name__ == "__main__":
    main()
