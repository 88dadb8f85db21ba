"""Compile every Triton kernel variant for CUDA GPUs (PTX and cubin) on a machine without one.

The interpreter runs the kernels' Python, not Triton's compiler, so a kernel can pass every CPU test
and still fail to compile (types of loop-carried values, constexpr rules, layouts). Here every kernel
module's compile_examples() runs on small CPU tensors with kernel launches intercepted; each
intercepted launch is specialised as Triton's launcher would specialise it on a GPU (argument types,
16-divisible pointers and integers, constexprs, options), compiled with triton.compile for the
targets below (Hopper and Ampere), and nothing is executed. tests/test_kernels_compile.py runs it.

    python -m fastmi.kernels.compile_check                    (TRITON_INTERPRET must be unset or 0)
    python -m fastmi.kernels.compile_check --report PATH      also the static GPU report (static_report.py)
"""
import argparse
import multiprocessing
import os
import sys
from dataclasses import dataclass

TARGETS = ((90, "H100"), (80, "A100"))


@dataclass
class Launch:
    """One kernel variant: what triton.compile needs, as Triton's launcher would have built it."""
    kernel: object
    signature: dict
    constexprs: dict
    attrs: dict
    options: dict

    def label(self, arch):
        shown = {self.kernel.arg_names[index]: value for (index,), value in self.constexprs.items()}
        return f"{self.kernel.__name__} {shown} sm_{arch} ({dict(TARGETS)[arch]})"

    def key(self):
        return (self.kernel, repr(self.signature), repr(self.constexprs), repr(self.attrs), repr(self.options))


def _specialise(kernel, args, kwargs, backend):
    """Signature, constexprs and divisibility attributes of one launch, from Triton's own binder (the
    launcher's internals, the same in triton 3.6 and 3.9)."""
    from triton.runtime.jit import create_function_from_signature
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialisation, options = binder(*args, **kwargs)
    _, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialisation, options)
    options = {name: value for name, value in kwargs.items() if name not in kernel.arg_names}
    return Launch(kernel, signature, constexprs, attrs, options)


def record_launches(run_launchers):
    """[Launch] of every distinct launch that run_launchers() makes (nothing runs)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import JITFunction
    backend = make_backend(GPUTarget("cuda", TARGETS[0][0], 32))
    launches = {}

    def intercept(kernel, grid):
        def launch(*args, **kwargs):
            recorded = _specialise(kernel, args, kwargs, backend)
            launches.setdefault(recorded.key(), recorded)
        return launch

    original = JITFunction.__getitem__
    JITFunction.__getitem__ = intercept
    try:
        run_launchers()
    finally:
        JITFunction.__getitem__ = original
    return list(launches.values())


def run_launchers():
    """Every kernel module's compile_examples(): the launches that select all its variants."""
    from fastmi import kernels
    for name in kernels.MODULES:
        getattr(kernels, name).compile_examples()


def compile_launch(launch, arch):
    """The CompiledKernel (PTX, cubin, metadata) of one launch for sm_<arch>."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    source = ASTSource(fn=launch.kernel, signature=launch.signature, constexprs=launch.constexprs,
                       attrs=launch.attrs)
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=launch.options)


_LAUNCHES = []  # set before the worker processes fork: they inherit it instead of unpickling kernels


def _compile_job(job):
    """(label, error or None, static report entry or None) of one (launch index, arch, report?)."""
    index, arch, report = job
    launch = _LAUNCHES[index]
    try:
        compiled = compile_launch(launch, arch)
        if not compiled.asm.get("cubin"):
            raise RuntimeError("no cubin")
        entry = None
        if report:
            from .static_report import analyse
            entry = analyse(launch, arch, compiled)
        return launch.label(arch), None, entry
    except Exception as error:  # report every kernel, then fail
        return launch.label(arch), f"{type(error).__name__}: {error}".splitlines()[0], None


def compile_all(report=False, jobs=None):
    """[(label, error or None, report entry or None)] for every launch and target, in jobs processes."""
    _LAUNCHES[:] = record_launches(run_launchers)
    work = [(index, arch, report) for index in range(len(_LAUNCHES)) for arch, _ in TARGETS]
    jobs = jobs or min(os.cpu_count() or 1, 8)
    if jobs == 1:
        return [_compile_job(job) for job in work]
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        return pool.map(_compile_job, work, chunksize=1)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastmi.kernels.compile_check", description=__doc__.split("\n")[0])
    parser.add_argument("--report", metavar="PATH", help="write the static GPU report (JSON) to PATH and print "
                        "its markdown table (registers, spills, SASS counts, predicted pairs/s)")
    parser.add_argument("--jobs", type=int, default=None, help="compiling processes (default: one per CPU, at most 8)")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        sys.exit("compile_check: unset TRITON_INTERPRET (the interpreter compiles nothing)")
    results = compile_all(report=bool(args.report), jobs=args.jobs)
    failures = [label for label, error, _ in results if error]
    for label, error, _ in results:
        print("FAIL" if error else "ok  ", label, *([error] if error else []))
    print(f"{len(results) - len(failures)} compiled, {len(failures)} failed")
    if args.report and not failures:
        from .static_report import write_report
        print(write_report([entry for _, _, entry in results], args.report))
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
