"""Checks shared by every estimator: a clear error for each kind of bad input, never a silent wrong number
(docs/design.md, "Bad input")."""
import math

import torch


def as_sample_matrix(x, name, allow_integer=False):
    """(N, D) view of one input: 1-d is N samples of one feature; more than 2 dims flatten per sample."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    integer = not x.is_floating_point() and not x.is_complex()
    if not (x.is_floating_point() or (allow_integer and integer)):
        kinds = "a floating or integer dtype" if allow_integer else "a floating dtype"
        raise TypeError(f"{name} must have {kinds}, got {x.dtype}")
    if x.dim() == 0:
        raise ValueError(f"{name} must have a sample dimension, got a 0-d tensor")
    x = x.reshape(x.shape[0], math.prod(x.shape[1:]))
    if x.shape[1] == 0:
        raise ValueError(f"{name} has no features: shape {tuple(x.shape)}")
    return x


def paired_samples(a, b, check_finite=True, allow_integer=False):
    """Validate a pair of activation matrices with paired rows; return them as (N, Da), (N, Db).
    Two floating inputs are promoted to their common dtype; integer inputs (allow_integer) stay as
    they are."""
    shapes = f"a has shape {tuple(a.shape)}, b has shape {tuple(b.shape)}" \
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) else ""
    a2, b2 = as_sample_matrix(a, "a", allow_integer), as_sample_matrix(b, "b", allow_integer)
    if a2.device != b2.device:
        raise ValueError(f"a and b must be on the same device, got {a2.device} and {b2.device}")
    if a2.shape[0] != b2.shape[0]:
        raise ValueError(f"a and b must have the same number of samples (dim 0): {shapes}")
    if a2.shape[0] < 2:
        raise ValueError(f"MI needs at least 2 samples, got N = {a2.shape[0]}")
    if check_finite:
        for name, x in (("a", a2), ("b", b2)):
            if x.is_floating_point() and not bool(torch.isfinite(x).all()):
                raise ValueError(f"{name} contains NaN or Inf (pass check_finite=False to skip this check)")
    if a2.is_floating_point() and b2.is_floating_point() and a2.dtype != b2.dtype:
        common = torch.promote_types(a2.dtype, b2.dtype)
        a2, b2 = a2.to(common), b2.to(common)
    return a2, b2


def result_dtype(a, b):
    """float64 where an input is float64, float32 otherwise (half-precision inputs, symbols)."""
    return torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32


def choice(value, name, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def check_bool(value, name):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value
