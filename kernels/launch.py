"""What every launcher shares (docs/design.md, "Kernels"): operand checks that raise clear errors
(never asserts, which vanish under python -O), the offset width, the device guard, and the safety net
for the installed triton: a kernel that its compiler cannot build raises KernelUnavailable (warned
once per kernel), and the caller takes its torch path on the same device."""
import contextlib
import os

import torch
import triton
from triton.compiler.errors import CompilationError

from . import KernelUnavailable

# The triton releases every kernel variant is compiled (sm_80, sm_90) and tested with (docs/distributed.md,
# "Supported torch and triton"): 3.4 is what torch 2.8 pins, 3.9 what torch 2.15 pins. triton 3.2's compiler aborts
# the process (a C++ assertion, which no safety net can catch) on the backward kernels for sm_90, so
# below the floor fastmi does not launch its kernels at all.
TESTED_TRITON = ((3, 4), (3, 9))

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


def triton_version():
    """(major, minor) of the installed triton."""
    return tuple(int(part) for part in triton.__version__.split(".")[:2])


_UNAVAILABLE = {}  # variant -> the reason its kernel cannot be built
_WARNED = set()  # kernel names (and "version") already warned about


def _warn_once(topic, message):
    if topic not in _WARNED:
        _WARNED.add(topic)
        from ..warn import warn_user
        warn_user(message)


def _tested_range():
    (low, high) = TESTED_TRITON
    return f"{low[0]}.{low[1]} to {high[0]}.{high[1]}"


_ANY_TRITON = []  # non-empty inside any_triton()


@contextlib.contextmanager
def any_triton():
    """Launches inside skip the tested-range check: compile_check compiles with whatever triton it is given."""
    _ANY_TRITON.append(True)
    try:
        yield
    finally:
        _ANY_TRITON.pop()


def _check_version():
    """Below the tested floor: KernelUnavailable for every kernel; above the tested range: one warning."""
    if _ANY_TRITON:
        return
    found, (low, high) = triton_version(), TESTED_TRITON
    if found < low:
        message = (f"triton {triton.__version__} is older than the triton fastmi's kernels are tested with "
                   f"({_tested_range()}; triton 3.2's compiler aborts on some of them), so fastmi runs its torch "
                   f"paths: install torch >= 2.8 with the triton it pins, or triton >= {low[0]}.{low[1]}")
        _warn_once("version", message)
        raise KernelUnavailable(message)
    if found > high:
        _warn_once("version", f"triton {triton.__version__} is newer than the triton fastmi's kernels are tested "
                              f"with ({_tested_range()}); they run, and a kernel that fails to compile falls back "
                              "to fastmi's torch path with a warning")


def _variant(kernel, args, meta):
    """What selects a compiled variant, as far as the launch site decides it: dtypes and constexprs."""
    dtypes = tuple(str(a.dtype) for a in args if isinstance(a, torch.Tensor))
    return kernel.__name__, dtypes, repr(sorted(meta.items()))


_COMPILER = os.path.dirname(os.path.abspath(triton.compiler.__file__)) + os.sep


def raised_while_building(error):
    """True where Triton raised `error` while building a kernel (a frame of triton.compiler on the stack:
    the front end, the MLIR passes, ptxas, loading the binary onto the device), not while running one."""
    if isinstance(error, CompilationError):
        return True
    trace = error.__traceback__
    while trace is not None:
        if os.path.abspath(trace.tb_frame.f_code.co_filename).startswith(_COMPILER):
            return True
        trace = trace.tb_next
    return False


def _run(kernel, grid, args, meta):
    kernel[grid](*args, **meta)


def launch(kernel, grid, *args, **meta):
    """kernel[grid](*args, **meta) with the tensors' CUDA device current: Triton launches on the current
    device, so a tensor on cuda:1 while cuda:0 is current would otherwise be read from the wrong GPU.
    KernelUnavailable where the installed triton cannot build the kernel (see the module docstring)."""
    _check_version()
    variant = _variant(kernel, args, meta)
    if variant in _UNAVAILABLE:
        raise KernelUnavailable(_UNAVAILABLE[variant])
    device = next(a.device for a in args if isinstance(a, torch.Tensor))
    guard = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    try:
        with guard:
            _run(kernel, grid, args, meta)
    except Exception as error:
        if not raised_while_building(error):
            raise
        name = variant[0]
        reason = f"{type(error).__name__}: {error}".strip().splitlines()[0][:300]
        _UNAVAILABLE[variant] = (f"triton {triton.__version__} cannot build the Triton kernel {name} ({reason}); "
                                 f"fastmi takes its torch path for it on {device.type}")
        _warn_once(name, _UNAVAILABLE[variant] + ". Please report it with the output of "
                   "`python -c 'import torch, triton; print(torch.__version__, triton.__version__)'`.")
        raise KernelUnavailable(_UNAVAILABLE[variant]) from error
