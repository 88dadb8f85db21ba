"""Which back-end runs a call: the Triton kernels (CUDA, or the interpreter on CPU) or torch.

fastmi.api resolves the `backend=` option once per call (resolve()) and hands the name, "triton"
or "torch", to the estimator; nothing below the API looks at the option again.
"""
import contextlib
import os

import torch

from . import kernels

BACKENDS = ("auto", "triton", "torch")


def interpreting():
    """True when Triton kernels run in the interpreter (TRITON_INTERPRET=1: tests on a CPU)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve(backend, like):
    """"triton" where the Triton kernels should run tensors like `like`, else "torch"; a clear error
    where backend="triton" cannot run them."""
    if backend == "triton":
        kernels.require()
        if like.dtype == torch.float64:
            raise TypeError("backend='triton' takes float32, float16 or bfloat16 inputs; "
                            "use backend='torch' for float64")
        if not (like.is_cuda or interpreting()):
            raise ValueError("backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 to run the kernels "
                             f"on the CPU), got a tensor on {like.device}")
        return "triton"
    runs_kernels = (like.is_cuda or interpreting()) and like.dtype != torch.float64 and kernels.AVAILABLE
    return "triton" if backend == "auto" and runs_kernels else "torch"


def full_precision(device):
    """Switch autocast off (MI needs full-precision GEMMs); a no-op context when it is not on, so that
    torch.export sees a flat graph."""
    enabled = torch.is_autocast_enabled(device.type)
    return torch.autocast(device_type=device.type, enabled=False) if enabled else contextlib.nullcontext()


def op_or_function(custom_op, function):
    """What to call: the custom op while torch.compile or torch.export traces; the function itself in eager
    mode, which spares the op's dispatch (and its lazy import of torch._dynamo, ~1.5 s at the first
    call). Returned, not called: no frame of its own between the caller and the work."""
    return custom_op if torch.compiler.is_compiling() else function


def opaque(name, fake):
    """`@opaque("fastmi::name", fake)` on a type-annotated function: the custom op that torch.compile and
    torch.export see as one node (no graph break at a kernel launch), with `fake` (same parameters) giving
    its outputs' shapes and dtypes without computing them. The one way fastmi registers its ops."""
    def register(function):
        op = torch.library.custom_op(name, mutates_args=())(function)
        op.register_fake(fake)
        return op
    return register
