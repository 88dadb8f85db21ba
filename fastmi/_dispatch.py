"""Which back-end runs a tensor: the Triton kernels (CUDA, or the interpreter on CPU) or torch."""
import contextlib
import os

import torch

BACKENDS = ("auto", "triton", "torch")


def interpreting():
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(backend, like):
    """True where the Triton kernels should run tensors like `like`; a clear error where they cannot."""
    if backend == "triton":
        if like.dtype == torch.float64:
            raise TypeError("backend='triton' takes float32, float16 or bfloat16 inputs; "
                            "use backend='torch' for float64")
        if not (like.is_cuda or interpreting()):
            raise ValueError("backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 to run the kernels "
                             f"on the CPU), got a tensor on {like.device}")
        return True
    return backend == "auto" and (like.is_cuda or interpreting()) and like.dtype != torch.float64


def full_precision(device):
    """Switch autocast off (MI needs full-precision GEMMs); a no-op context when it is not on, so that
    torch.export sees a flat graph."""
    enabled = torch.is_autocast_enabled(device.type)
    return torch.autocast(device_type=device.type, enabled=False) if enabled else contextlib.nullcontext()
