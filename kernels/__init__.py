"""Triton kernels and their launchers only (no autograd, no API); installed as fastmi.kernels.

fastmi imports this package at `import fastmi`, so a broken kernel module fails there, not at the
first GPU call. triton is a Linux-only dependency: where it is missing, AVAILABLE is False, the
kernel modules are None, fastmi runs its torch paths, and require() says what to install. Where the
installed triton cannot build a kernel, its launch raises KernelUnavailable (launch.py) and the caller
takes its torch path.
"""


class KernelUnavailable(RuntimeError):
    """A kernel the installed triton cannot build (or a triton below the tested floor): the caller runs
    its torch path instead. Raised after one warning per kernel; later launches of the same variant raise
    it at once, without compiling again."""


try:
    import triton  # noqa: F401
except ImportError as error:  # pragma: no cover - Linux CI always has triton
    AVAILABLE, _MISSING = False, error
    binned = gram = kde = ksg = None
else:
    AVAILABLE, _MISSING = True, None
    from . import binned, gram, kde, ksg  # noqa: F401 (fastmi.kernels.kde etc.; a broken module fails at import)

MODULES = ("kde", "gram", "binned", "ksg")  # each has compile_examples(): the launches that select its variants


def require():
    """Raise a clear ImportError where the Triton kernels cannot run (triton not installed)."""
    if not AVAILABLE:
        raise ImportError("backend='triton' needs the triton package (pip install triton; Linux only): "
                          f"{_MISSING}") from _MISSING
