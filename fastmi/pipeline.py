"""The call pipeline every public entry point goes through (layer_mi, unit_mi, chain_mi, label_mi,
mi_test, the dependence measures, the Regularizer):

    options checked (check_common)  ->  inputs validated; under group= every rank agrees first (validated)
    ->  back-end resolved once, autocast off (evaluation)  ->  units (in_units)

plus the NaN guard of the estimators that would turn NaN/Inf into a plausible number (nan_as_result).
"""
import contextlib
import math

import torch

from .backend import BACKENDS, full_precision, resolve
from .distributed import shard_of
from .inputs import choice

UNITS = ("nats", "bits")


def check_common(units, backend):
    choice(units, "units", UNITS)
    choice(backend, "backend", BACKENDS)


def validated(validate, group):
    """(validate(min_rows), shard): without a group, validation's errors are raised here; with one,
    every rank first agrees on validity (distributed.shard_of), so a bad rank cannot leave the others
    waiting in a collective."""
    if group is None:
        return validate(2), None
    try:
        layers, error = validate(0), None
    except (TypeError, ValueError) as e:
        layers, error = None, e
    return layers, shard_of(layers, group, error)


@contextlib.contextmanager
def evaluation(inputs, backend):
    """`with evaluation(inputs, backend) as resolved:` the back-end resolved once for these inputs, autocast
    off inside (a context, not a wrapper: no frame between the caller and the estimator)."""
    like = next((x for x in inputs if x.is_floating_point()), inputs[0])
    with full_precision(like.device):
        yield resolve(backend, like)


def in_units(value, units):
    return value / math.log(2.0) if units == "bits" else value


def nan_as_result(a, b, guard):
    """For estimators that would turn NaN/Inf into a plausible number (binning, neighbour search), when
    the inputs were not checked: run on zeroed copies and make the result NaN if any input was not
    finite. Returns (a, b, mark) with mark(value) -> value or NaN; no host sync."""
    if not guard:
        return a, b, lambda value: value
    finite = torch.ones((), dtype=torch.bool, device=a.device)
    for x in (a, b):
        if x.is_floating_point():
            finite = finite & torch.isfinite(x).all()
    clean = [torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0) if x.is_floating_point() else x for x in (a, b)]
    return (*clean, lambda value: torch.where(finite, value, torch.full_like(value, math.nan)))
