"""Compile every Triton kernel variant for CUDA GPUs (PTX and cubin) on a machine without one.

The interpreter runs the kernels' Python, not Triton's compiler, so a kernel can pass every CPU test
and still fail to compile (types of loop-carried values, constexpr rules, layouts). Here every kernel
module's compile_examples() runs on small CPU tensors with kernel launches intercepted; each
intercepted launch goes through Triton's own JIT up to its compiler call (so it is specialised as on
a GPU: argument types, 16-divisible pointers and integers, constexprs, options, in every triton of
the tested range), then compiled with triton.compile for the targets below (NVIDIA Hopper and Ampere;
with --targets hip or all, AMD CDNA2/3/4: the launchers then specialise as on ROCm, fp32 products as
IEEE dots, kernels/tiles.py fp32_split), each in a process of its own (an abort in Triton's C++ fails one
variant); nothing is executed. tests/test_kernels_compile.py runs it with the installed triton,
.ci/triton_matrix.sh with the others.

    python -m fastmi.kernels.compile_check                    (TRITON_INTERPRET must be unset or 0)
    python -m fastmi.kernels.compile_check --targets all      NVIDIA and AMD targets
    python -m fastmi.kernels.compile_check --report PATH      also the static GPU report (static_report.py)
    python -m fastmi.kernels.compile_check --report PATH --strict     and fail where a variant spills
"""
import argparse
import multiprocessing
import os
import pickle
import sys
from dataclasses import dataclass

TARGETS = ((90, "H100"), (80, "A100"))  # NVIDIA: compute capability, a GPU of it
HIP_TARGETS = (("gfx90a", "MI200"), ("gfx942", "MI300"), ("gfx950", "MI350"))  # AMD: the arch, a GPU of it
GPUS = {**dict(TARGETS), **dict(HIP_TARGETS)}


def is_amd(arch):
    """An AMD target is named by its gfx string; an NVIDIA one by its compute capability (int)."""
    return isinstance(arch, str)


def target_name(arch):
    """"sm_90" of an NVIDIA compute capability, the gfx string of an AMD target: how labels and the matrix
    name a target."""
    return arch if is_amd(arch) else f"sm_{arch}"


@dataclass
class Launch:
    """One kernel variant: the source Triton's JIT built for it (signature, constexprs, divisibility
    attributes, as its launcher would have specialised them on a GPU) and the launch options."""
    kernel: object
    source: object  # triton.compiler.ASTSource
    constexprs: dict  # name -> value, for labels and the static report
    options: dict  # num_warps, num_stages, ...
    vendor: str = "cuda"  # what the launchers specialised for: "cuda" or "hip"

    @property
    def signature(self):
        return self.source.signature

    def label(self, arch):
        pointers = [kind for kind in self.signature.values() if kind.startswith("*")]
        dtype = pointers[0][1:] if pointers else ""
        return f"{self.kernel.__name__} {dtype} {self.constexprs} {target_name(arch)} ({GPUS[arch]})"


class _Recorded(Exception):
    """Raised by the stand-in compiler once the JIT has specialised a launch: nothing runs or compiles."""

    def __init__(self, source):
        super().__init__(source.name)
        self.source = source


class _RecordingDriver:
    """The part of a Triton driver that JITFunction.run asks for before it compiles: a device, a stream
    and the target (sm_90). The device is a key of its own, so no cache of a real device is touched."""
    device = "fastmi-compile-check"

    def get_current_device(self):
        return self.device

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        from triton.backends.compiler import GPUTarget
        return GPUTarget("cuda", TARGETS[0][0], 32)


def _stand_in_compile(source, *args, **kwargs):
    raise _Recorded(source)


def _forget(kernel, compile=None):
    """Drop what the JIT built for the recording device, so the next launch builds it anew."""
    if hasattr(kernel, "binder"):  # triton 3.2: one binder per kernel, made with the compiler of its day
        kernel.binder = None
    getattr(kernel, "device_caches", {}).pop(_RecordingDriver.device, None)
    if compile is not None and "compile" in vars(kernel):
        kernel.compile = compile


def _constexprs(kernel, args, kwargs):
    bound = {**dict(zip(kernel.arg_names, args)), **kwargs}
    return {p.name: bound[p.name] for p in kernel.params if p.is_constexpr and p.name in bound}


def _specialise(kernel, args, kwargs):
    """Run the JIT's own launch path (warmup) up to the compiler call, which records its ASTSource.
    Triton's launcher internals change between releases (3.2's binder, 3.3's device caches, 3.5's
    _pack_args); this path is the same in all of them."""
    _forget(kernel)
    try:
        kernel.run(*args, grid=(1, ), warmup=True, **kwargs)
    except _Recorded as recorded:
        options = {name: value for name, value in kwargs.items() if name not in kernel.arg_names}
        return Launch(kernel, recorded.source, _constexprs(kernel, args, kwargs), options)
    raise RuntimeError(f"{kernel.__name__}: Triton's JIT returned without compiling")


def record_launches(run_launchers):
    """[Launch] of every distinct launch that run_launchers() makes (nothing runs)."""
    import triton.compiler
    from triton.runtime.driver import driver
    from triton.runtime.jit import JITFunction
    launches = {}

    def intercept(kernel, grid):
        def launch(*args, **kwargs):
            recorded = _specialise(kernel, args, kwargs)
            launches.setdefault((kernel.__name__, recorded.source.hash(), repr(recorded.options)), recorded)
        return launch

    original_getitem, original_compile = JITFunction.__getitem__, triton.compiler.compile
    previous_driver = vars(driver).get("_active", vars(driver).get("active"))  # without creating one
    JITFunction.__getitem__, triton.compiler.compile = intercept, _stand_in_compile
    driver.set_active(_RecordingDriver())
    try:
        run_launchers()
    finally:
        JITFunction.__getitem__, triton.compiler.compile = original_getitem, original_compile
        driver.set_active(previous_driver)
        for kernel in {launch.kernel for launch in launches.values()}:  # leave no stand-in behind
            _forget(kernel, original_compile)
    return list(launches.values())


def run_launchers(vendor="cuda"):
    """Every kernel module's compile_examples(): the launches that select all its variants, with any
    triton (the tested range is what this tool checks), specialised for vendor ("cuda" or "hip")."""
    from fastmi import kernels
    from fastmi.kernels import tiles
    with kernels.launch.any_triton(), tiles.launches_for(vendor):
        for name in kernels.MODULES:
            getattr(kernels, name).compile_examples()


def compile_launch(launch, arch):
    """The CompiledKernel (PTX and cubin, or AMDGCN and hsaco; metadata) of one launch for sm_<arch> or an
    AMD gfx arch."""
    import triton
    from triton.backends.compiler import GPUTarget
    target = GPUTarget("hip", arch, 64) if is_amd(arch) else GPUTarget("cuda", arch, 32)
    return triton.compile(launch.source, target=target, options=launch.options)


_LAUNCHES = []  # set before the worker processes fork: they inherit it instead of unpickling kernels


def _compile_job(job):
    """(label, error or None, static report entry or None) of one (launch index, arch, report?)."""
    index, arch, report = job
    launch = _LAUNCHES[index]
    try:
        compiled = compile_launch(launch, arch)
        binary = "hsaco" if is_amd(arch) else "cubin"
        if not compiled.asm.get(binary):
            raise RuntimeError(f"no {binary}")
        entry = None
        if report:
            from .static_report import analyse, analyse_amd
            entry = (analyse_amd if is_amd(arch) else analyse)(launch, arch, compiled)
        return launch.label(arch), None, entry
    except Exception as error:  # report every kernel, then fail
        return launch.label(arch), f"{type(error).__name__}: {error}".splitlines()[0], None


def _isolated_compile_job(job):
    """_compile_job in a forked child of its own: an abort in Triton's C++ (an LLVM or layout assertion,
    seen on older releases) fails that variant, where it would kill a pool worker and hang the pool."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compile, send the pickled result, leave without running any cleanup
        os.close(read_end)
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(pickle.dumps(_compile_job(job)))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    if data:
        return pickle.loads(data)
    index, arch, _ = job
    return _LAUNCHES[index].label(arch), "the compiler crashed (Triton's C++ aborted the process)", None


def compile_all(report=False, jobs=None, targets="cuda"):
    """[(label, error or None, report entry or None)] for every launch and target ("cuda", "hip" or "all"),
    in jobs processes."""
    vendors = {"cuda": ["cuda"], "hip": ["hip"], "all": ["cuda", "hip"]}[targets]
    _LAUNCHES[:] = []
    for vendor in vendors:
        found = record_launches(lambda: run_launchers(vendor))
        _LAUNCHES.extend(Launch(one.kernel, one.source, one.constexprs, one.options, vendor) for one in found)
    arches = {"cuda": [arch for arch, _ in TARGETS], "hip": [arch for arch, _ in HIP_TARGETS]}
    work = [(index, arch, report) for index, launch in enumerate(_LAUNCHES) for arch in arches[launch.vendor]]
    jobs = jobs or min(os.cpu_count() or 1, 8)
    if jobs == 1:
        return [_isolated_compile_job(job) for job in work]
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        return pool.map(_isolated_compile_job, work, chunksize=1)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastmi.kernels.compile_check", description=__doc__.split("\n")[0])
    parser.add_argument("--report", metavar="PATH", help="write the static GPU report (JSON) to PATH and print "
                        "its markdown table (registers, spills, SASS counts, predicted pairs/s)")
    parser.add_argument("--strict", action="store_true", help="with --report: also fail where a variant spills "
                        "registers beyond static_report.SPILL_ALLOWANCE")
    parser.add_argument("--jobs", type=int, default=None, help="compiling processes (default: one per CPU, at most 8)")
    parser.add_argument("--targets", choices=["cuda", "hip", "all"], default="cuda",
                        help="cuda: sm_90, sm_80 (default); hip: gfx90a, gfx942, gfx950; all: both")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        sys.exit("compile_check: unset TRITON_INTERPRET (the interpreter compiles nothing)")
    results = compile_all(report=bool(args.report), jobs=args.jobs, targets=args.targets)
    failures = [label for label, error, _ in results if error]
    for label, error, _ in results:
        print("FAIL" if error else "ok  ", label, *([error] if error else []))
    import triton
    print(f"{len(results) - len(failures)} compiled, {len(failures)} failed (triton {triton.__version__})")
    if args.report and not failures:
        from .static_report import amd_spills, unexpected_spills, write_report
        entries = [entry for _, _, entry in results if entry["arch"].startswith("sm_")]
        amd = [entry for _, _, entry in results if entry["arch"].startswith("gfx")]
        if not entries:
            sys.exit("compile_check: --report needs the NVIDIA targets (--targets cuda or all)")
        print(write_report(entries, args.report, amd))
        spills = unexpected_spills(entries)
        for name, arch, stores, loads in spills:
            print(f"SPILL {name} {arch}: {stores} bytes stored, {loads} loaded per thread")
        for name, arch, vgprs, scratch in amd_spills(amd):
            print(f"SPILL {name} {arch}: {vgprs} VGPRs spilled, {scratch} bytes of scratch")
        failures += (spills + amd_spills(amd)) if args.strict else []
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
