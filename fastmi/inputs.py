"""Checks shared by every estimator: a clear error for each kind of bad input, never a silent wrong number
(docs/design.md, "Bad input")."""
import functools
import math

import numpy as np
import torch

FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def as_tensors(named):
    """[(name, input)] -> (tensors, plain): array-likes (numpy arrays, nested lists) become tensors on
    the device of the tensor among the inputs, if any; plain is True when no input was a tensor, and
    the caller then gives back Python floats and numpy arrays (plain_result)."""
    like = next((x for _, x in named if isinstance(x, torch.Tensor)), None)
    tensors = []
    for name, x in named:
        if not isinstance(x, torch.Tensor):
            try:  # through numpy: Python floats stay float64, as numpy arrays of them are
                x = torch.as_tensor(np.asarray(x), device=None if like is None else like.device)
            except (TypeError, ValueError, RuntimeError) as e:
                raise TypeError(f"{name} must be a torch.Tensor or an array-like of numbers, got "
                                f"{type(x).__name__}") from e
        tensors.append(x)
    return tensors, like is None


def plain_result(value):
    """A result for array-like inputs: a Python float for a 0-d tensor, else a numpy array."""
    value = value.detach().cpu()
    return value.item() if value.dim() == 0 else value.numpy()


def as_sample_matrix(x, name, allow_integer=False):
    """(N, D) view of one input: 1-d is N samples of one feature; more than 2 dims flatten per sample."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    integer = not x.is_floating_point() and not x.is_complex()
    if not (x.dtype in FLOATING or (allow_integer and integer)):
        kinds = "float16, bfloat16, float32 or float64" + (" (or integer symbols)" if allow_integer else "")
        raise TypeError(f"{name} must have a floating dtype ({kinds}), got {x.dtype}; convert it: x.float() for "
                        "a tensor, np.asarray(x, dtype=np.float32) for a numpy array or list")
    if x.dim() == 0:
        raise ValueError(f"{name} must have a sample dimension, got a 0-d tensor")
    x = x.reshape(x.shape[0], math.prod(x.shape[1:]))
    if x.shape[1] == 0:
        raise ValueError(f"{name} has no features: shape {tuple(x.shape)}")
    return x


def paired_samples(a, b, check_finite=True, allow_integer=False, min_rows=2):
    """Validate a pair of activation matrices with paired rows; return them as (N, Da), (N, Db).
    Two floating inputs are promoted to their common dtype; integer inputs (allow_integer) stay as
    they are."""
    return tuple(sample_matrices([("a", a), ("b", b)], check_finite, allow_integer, min_rows))


def chained_samples(activations, check_finite=True, min_rows=2):
    """Validate a list of L >= 2 activation tensors with paired rows (errors name the index); return
    them as (N, D_m) matrices of one floating dtype."""
    if not isinstance(activations, (list, tuple)):
        raise TypeError(f"activations must be a list or tuple of tensors, got {type(activations).__name__}")
    if len(activations) < 2:
        raise ValueError(f"MI between successive layers needs at least two activations, got {len(activations)}")
    return sample_matrices([(f"activations[{m}]", h) for m, h in enumerate(activations)], check_finite,
                           min_rows=min_rows)


def sample_matrices(named, check_finite=True, allow_integer=False, min_rows=2):
    """[(name, tensor)] -> validated (N, D) matrices with paired rows on one device; floating ones
    promoted to their common dtype. min_rows: 2, or 0 for one rank's shard (the global batch is
    checked by fastmi.distributed.shard_of)."""
    matrices = [as_sample_matrix(x, name, allow_integer) for name, x in named]
    (first_name, first), first_raw = (named[0][0], matrices[0]), named[0][1]
    for (name, raw), x in zip(named[1:], matrices[1:]):
        if x.device != first.device:
            raise ValueError(f"{first_name} and {name} must be on the same device, got {first.device} and {x.device}")
        if x.shape[0] != first.shape[0]:
            raise ValueError(f"{first_name} and {name} must have the same number of samples (dim 0): {first_name} "
                             f"has shape {tuple(first_raw.shape)}, {name} has shape {tuple(raw.shape)}")
    if first.shape[0] < min_rows:
        raise ValueError(f"at least 2 samples (rows) are needed, got N = {first.shape[0]}")
    if check_finite:
        for (name, _), x in zip(named, matrices):
            if x.is_floating_point() and not bool(torch.isfinite(x).all()):
                raise ValueError(f"{name} contains NaN or Inf (pass check_finite=False to skip this check)")
    floating = [x.dtype for x in matrices if x.is_floating_point()]
    if len(set(floating)) > 1:
        common = functools.reduce(torch.promote_types, floating)
        matrices = [x.to(common) if x.is_floating_point() else x for x in matrices]
    return matrices


def result_dtype(*inputs):
    """float64 where an input is float64, float32 otherwise (half-precision inputs, symbols)."""
    return torch.float64 if any(x.dtype == torch.float64 for x in inputs) else torch.float32


def choice(value, name, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def check_int(value, name, least):
    """value, an int (not a bool) >= least, else a ValueError that names it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    return value


def check_number(value, name, least):
    """value, a finite real number (not a bool) >= least, as a float, else a ValueError that names it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < least:
        raise ValueError(f"{name} must be a finite number >= {least}, got {value!r}")
    return float(value)


def check_bool(value, name):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def class_ids(labels):
    """labels as int64 class ids, or a clear error."""
    if labels.dim() != 1 or labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be a 1-d tensor of integer class ids, got dtype {labels.dtype} and shape "
                        f"{tuple(labels.shape)}")
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError(f"labels must be class ids >= 0, got {int(labels.min())}")
    return labels.long()
