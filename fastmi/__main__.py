"""python -m fastmi: the environment report to paste into a bug report (docs/distributed.md, "Reporting a bug").

fastmi, Python, torch, triton, numpy and CUDA/ROCm versions; the device and its architecture; whether the
installed triton is in fastmi's tested range; which back-end `backend="auto"` takes for float32 inputs on
the device, and which estimators and measures have Triton kernels to run there (the registries'
`triton_kernels`). `--compile` also compiles every kernel variant for the sm_90 and sm_80 targets
(fastmi.kernels.compile_check) and prints ok or the error per variant.
"""
import argparse
import os
import platform
import sys


def report():
    """The report's lines (no kernel is compiled or launched)."""
    import numpy
    import torch

    import fastmi
    from fastmi import kernels
    from fastmi.backend import resolve

    lines = [f"fastmi {fastmi.__version__} ({os.path.dirname(fastmi.__file__)})",
             f"python {platform.python_version()} on {platform.platform()}",
             f"torch {torch.__version__} (CUDA {torch.version.cuda}, ROCm {getattr(torch.version, 'hip', None)}), "
             f"numpy {numpy.__version__}"]
    lines.append(_triton_line(kernels))
    lines.append(_triton_packages_line(triton_distributions(), torch.version.hip))
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    lines.append(_device_line(device))
    lines.append(f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET', '0')}")
    like = torch.empty(1, 1, device=device)
    backend = resolve("auto", like)
    why = "" if backend == "triton" else " (the Triton kernels run on CUDA tensors, or under TRITON_INTERPRET=1)"
    lines.append(f"backend='auto' for float32 on {device.type}: {backend}{why}")
    for registry, entries in (("estimators", fastmi.ESTIMATORS), ("measures", fastmi.MEASURES)):
        lines.append(f"{registry}:")
        for name, entry in entries.items():
            runs = "Triton kernels" if entry.triton_kernels and backend == "triton" else "torch"
            lines.append(f"  {name:<22} {runs}" + ("" if entry.triton_kernels else " (no Triton kernels)"))
    return lines


def _triton_line(kernels):
    if not kernels.AVAILABLE:
        return "triton: not installed (fastmi runs its torch paths; on Linux with CUDA, install the triton torch pins)"
    import triton

    from fastmi.kernels.launch import TESTED_TRITON, triton_version
    (low, high), found = TESTED_TRITON, triton_version()
    tested = f"{low[0]}.{low[1]} to {high[0]}.{high[1]}"
    verdict = ("in fastmi's tested range" if low <= found <= high else
               "below fastmi's tested range: the kernels are not used" if found < low else
               "above fastmi's tested range: the kernels run, untested (one warning)")
    return f"triton {triton.__version__}: {verdict} ({tested})"


def triton_distributions():
    """'name version' of every installed distribution that ships the `triton` package: the CUDA wheel
    (triton) and a ROCm torch's (pytorch-triton-rocm) install into the same folder."""
    from importlib import metadata
    found = []
    for dist in metadata.distributions():
        top = (dist.read_text("top_level.txt") or "").split()
        names = top or {file.parts[0] for file in dist.files or [] if file.parts}
        if "triton" in names:
            found.append(f"{dist.metadata['Name']} {dist.version}")
    return sorted(found)


def _triton_packages_line(found, hip):
    """Which distributions provide `import triton`, and a warning where two do (one overwrote the other's
    files) or where a ROCm torch has the CUDA wheel beside its own."""
    line = f"triton packages: {', '.join(found) or 'none'}"
    names = {entry.split()[0].lower() for entry in found}
    if len(found) > 1:
        line += (" -- WARNING: more than one distribution installs `triton` into the same folder, so the one "
                 "imported is whichever installed last; keep only the one your torch requires")
    elif hip and "triton" in names:
        line += (" -- WARNING: a ROCm torch runs on its own triton (pytorch-triton-rocm); the `triton` wheel is "
                 "CUDA's: pip uninstall triton, then reinstall pytorch-triton-rocm")
    return line


def _device_line(device):
    import torch
    if device.type != "cuda":
        return f"device: cpu ({os.cpu_count()} logical cores; no CUDA device visible)"
    props = torch.cuda.get_device_properties(device)
    arch = getattr(props, "gcnArchName", None) or f"sm_{props.major}{props.minor}"
    return (f"device: {torch.cuda.get_device_name(device)} ({arch}, {props.multi_processor_count} SMs, "
            f"{props.total_memory / 2**30:.0f} GiB), {torch.cuda.device_count()} visible")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastmi", description=__doc__.split("\n")[0])
    parser.add_argument("--compile", action="store_true", help="also compile every kernel variant for sm_90 and "
                        "sm_80, or gfx90a, gfx942 and gfx950 under a ROCm torch (fastmi.kernels.compile_check; "
                        "minutes)")
    args = parser.parse_args(argv)
    print("\n".join(report()))
    if args.compile:
        import torch

        from fastmi.kernels import AVAILABLE
        if not AVAILABLE:
            sys.exit("--compile needs triton")
        from fastmi.kernels.compile_check import main as compile_check
        compile_check(["--targets", "hip" if torch.version.hip else "cuda"])


if __name__ == "__main__":
    main()
