"""Triton kernels and their launchers only (no autograd, no API); installed as fastmi.kernels.

fastmi imports this package at `import fastmi`, so a broken kernel module fails there, not at the
first GPU call. triton is a Linux-only dependency: where it is missing, AVAILABLE is False, the
kernel modules are None, fastmi runs its torch paths, and require() says what to install.
"""
try:
    import triton  # noqa: F401
except ImportError as error:  # pragma: no cover - Linux CI always has triton
    AVAILABLE, _MISSING = False, error
    binned = gram = kde = ksg = None
else:
    AVAILABLE, _MISSING = True, None
    from . import binned, gram, kde, ksg

MODULES = ("kde", "gram", "binned", "ksg")  # each has compile_examples(): the launches that select its variants


def require():
    """Raise a clear ImportError where the Triton kernels cannot run (triton not installed)."""
    if not AVAILABLE:
        raise ImportError("backend='triton' needs the triton package (pip install triton; Linux only): "
                          f"{_MISSING}") from _MISSING
