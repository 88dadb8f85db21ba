"""Compile every Triton kernel variant for CUDA GPUs (PTX and cubin) on a machine without one.

The interpreter runs the kernels' Python, not Triton's compiler, so a kernel can pass every CPU test
and still fail to compile (types of loop-carried values, constexpr rules, layouts). Here every kernel
module's compile_examples() runs on small CPU tensors with kernel launches intercepted; each
intercepted launch is compiled with triton.compile for the targets below (Hopper and Ampere) and
nothing is executed. tests/test_kernels_compile.py runs it.

    python -m fastmi.kernels.compile_check          (TRITON_INTERPRET must be unset or 0)
"""
import os
import sys

import torch

TARGETS = ((90, "H100"), (80, "A100"))
DTYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.int64: "i64",
          torch.int32: "i32", torch.int8: "i8", torch.bool: "i1"}


def _signature(kernel, args, kwargs):
    """Triton signature and constexprs of one launch, from the values passed."""
    signature, constexprs = {}, {}
    for name, value in zip(kernel.arg_names, args):
        if isinstance(value, torch.Tensor):
            signature[name] = "*" + DTYPES[value.dtype]
        elif isinstance(value, bool):
            signature[name] = "i1"
        elif isinstance(value, int):
            signature[name] = "i32" if -2**31 <= value < 2**31 else "i64"
        elif isinstance(value, float):
            signature[name] = "fp32"
        else:
            raise TypeError(f"{kernel.__name__}: cannot type argument {name}={value!r}")
    for name, value in kwargs.items():
        if name in kernel.arg_names:
            signature[name] = "constexpr"
            constexprs[name] = value
    return signature, constexprs


def record_launches(run_launchers):
    """[(kernel, signature, constexprs, num_warps)] of every launch that run_launchers() makes."""
    from triton.runtime.jit import JITFunction
    launches = []

    def intercept(kernel, grid):
        def launch(*args, num_warps=4, **kwargs):
            launch = (kernel, *_signature(kernel, args, kwargs), num_warps)
            if launch not in launches:
                launches.append(launch)
        return launch

    original = JITFunction.__getitem__
    JITFunction.__getitem__ = intercept
    try:
        run_launchers()
    finally:
        JITFunction.__getitem__ = original
    return launches


def run_launchers():
    """Every kernel module's compile_examples(): the launches that select all its variants."""
    from fastmi import kernels
    for name in kernels.MODULES:
        getattr(kernels, name).compile_examples()


def main():
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        sys.exit("compile_check: unset TRITON_INTERPRET (the interpreter compiles nothing)")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    launches = record_launches(run_launchers)
    failures = []
    for kernel, signature, constexprs, num_warps in launches:
        for arch, gpu in TARGETS:
            label = f"{kernel.__name__} {constexprs} sm_{arch} ({gpu})"
            try:
                compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constexprs),
                                          target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps})
                assert compiled.asm.get("cubin"), "no cubin"
                print("ok  ", label)
            except Exception as error:  # report every kernel, then fail
                failures.append(label)
                print("FAIL", label, f"{type(error).__name__}: {error}".splitlines()[0])
    print(f"{len(launches) * len(TARGETS) - len(failures)} compiled, {len(failures)} failed")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
