"""Compile every Triton kernel for CUDA GPUs (PTX and cubin) on a machine without one.

The interpreter runs the kernels' Python, not Triton's compiler, so a kernel can pass every CPU test
and still fail to compile (types of loop-carried values, constexpr rules, layouts). Here each launcher
runs on small CPU tensors with kernel launches intercepted; every intercepted launch is compiled with
triton.compile for the targets below (Hopper and Ampere) and nothing is executed.

    python -m bench.compile_kernels          (TRITON_INTERPRET must be unset or 0)
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
    """Every launcher of kernels/ at the shapes and dtypes that select its variants."""
    from fastmi import ksg
    from fastmi.kernels import binned, kde
    from fastmi.kernels import ksg as ksg_kernels
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        x, y = torch.randn(300, 70).to(dtype), torch.randn(300, 5).to(dtype)
        for loo in (False, True):
            kde.kde_forward(x, y, loo, splits=2)  # explicit splits: no CUDA device query
            kde.kde_backward(x, y, torch.zeros(3, 300), loo, splits=2)
    a, b = torch.randn(300, 7), torch.randn(300, 9)
    binned.bin_hash(a, torch.ones(7, dtype=torch.int64), 0.0, 1.0, 30, False)
    binned.bin_hash(torch.ones(300, 7, dtype=torch.int64), torch.ones(7, dtype=torch.int64), 0.0, 1.0, 30, True)
    for soft in (False, True):
        binned.unit_mi(a, b, torch.zeros(7), torch.ones(7), torch.zeros(9), torch.ones(9), 16, soft)
    x, y, boxes = ksg.prepared(a[:, :3], b)
    ksg_kernels.ksg_counts(x, y, 3, ksg.ORDER_TILE, boxes)


def main():
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        sys.exit("compile_kernels: unset TRITON_INTERPRET (the interpreter compiles nothing)")
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
