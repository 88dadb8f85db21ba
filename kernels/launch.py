"""What every launcher shares (docs/design.md, "Kernels"): operand checks that raise clear errors
(never asserts, which vanish under python -O), the offset width, and the device guard."""
import contextlib

import torch

INT32_MAX = 2**31 - 1
FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def check_matrix(x, name, dtypes=FLOATS):
    """A 2-d, row-major tensor of one of `dtypes`: what the kernels index with stride(0) and 1."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"{name} must be a 2-d tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if x.dtype not in dtypes:
        raise TypeError(f"{name} must have one of the dtypes {[str(d) for d in dtypes]}, got {x.dtype}")
    if x.stride(1) != 1 and x.shape[1] > 1:
        raise ValueError(f"{name} must be row-major (stride(1) == 1), got strides {x.stride()}")


def check_same_rows(*named):
    """Paired operands: the same number of rows, on one device, and row indices that fit int32."""
    (first_name, first), *rest = named
    for name, x in rest:
        if x.shape[0] != first.shape[0]:
            raise ValueError(f"{first_name} and {name} must have the same rows, got {tuple(first.shape)} "
                             f"and {tuple(x.shape)}")
        if x.device != first.device:
            raise ValueError(f"{first_name} and {name} must be on one device, got {first.device} and {x.device}")
    if first.shape[0] > INT32_MAX:
        raise ValueError(f"the Triton kernels take at most 2^31 - 1 rows, got {first.shape[0]}; "
                         "use backend='torch' or fewer samples")


def wide(*sizes):
    """True where an element offset can pass 2^31 - 1 (sizes: tensors or element counts): the kernels
    then compute offsets in int64 (constexpr WIDE), as flash-attention does for its row strides."""
    return any((s.numel() if isinstance(s, torch.Tensor) else s) > INT32_MAX for s in sizes)


def launch(kernel, grid, *args, **meta):
    """kernel[grid](*args, **meta) with the tensors' CUDA device current: Triton launches on the current
    device, so a tensor on cuda:1 while cuda:0 is current would otherwise be read from the wrong GPU."""
    device = next(a.device for a in args if isinstance(a, torch.Tensor))
    guard = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    with guard:
        kernel[grid](*args, **meta)
