"""The public entry points: fastmi.layer_mi and fastmi.unit_mi."""
import math

import torch

from . import binned, kde, ksg
from ._dispatch import BACKENDS, full_precision
from ._inputs import choice, paired_samples
from .bandwidth import check_sigma
from .distributed import shard_of

ESTIMATORS = ("kde", "binned", "unit", "ksg")
DEFAULT_SIGMA = "median"
DEFAULT_BINS = {"binned": 30, "unit": 16}
REDUCTIONS = ("none", "mean", "sum")


def layer_mi(a, b, *, estimator="kde", sigma=DEFAULT_SIGMA, bound="kl", loo=False, bins=None, range=None,
             soft=False, k=3, units="nats", backend="auto", check_finite=True, group=None):
    """Mutual information between two activation matrices with paired rows.

    Args:
        a, b: tensors (N, ...) on one device; dims after the first are flattened per sample. They are
            promoted to a common floating dtype ("binned" also takes integer tensors, as symbols).
        estimator: "kde", the pairwise Gaussian-KDE estimator (DESIGN.md, estimator 1);
            "binned", plug-in MI of the rows' bin patterns (not differentiable);
            "unit", the mean over unit pairs of fastmi.unit_mi;
            "ksg", the Kraskov-Stoegbauer-Grassberger kNN estimator, algorithm 1 (fastmi/ksg.py; not
            differentiable, the least biased at low dimension).
        sigma: kde: kernel bandwidth: a positive float (noise std in raw units), a rule "median",
            "silverman" or "scott" (applied after per-column standardisation), a callable rule,
            or a pair of those for (a, b). Always detached from autograd.
        bound: kde: "kl" (exp(-d^2 / 2 sigma^2), the pairwise-KL upper bound) or "bhattacharyya"
            (exp(-d^2 / 8 sigma^2), the pairwise lower-bound variant).
        loo: kde: leave the self term out of every kernel sum (leave-one-out) instead of resubstitution.
        bins: binned / unit: equal-width bins per unit (default 30 for "binned", 16 for "unit").
        range: binned / unit: (lo, hi) for every unit; default: the layer's min/max ("binned") or
            each unit's own min/max ("unit"). Values outside go to the edge bins.
        soft: unit: linear-interpolation codes (differentiable) instead of hard counts.
        k: ksg: the number of nearest neighbours (1 <= k < N); columns are scaled to unit variance first.
        units: "nats" or "bits".
        backend: "auto" (Triton kernels for CUDA tensors, torch on CPU), "triton" or "torch".
        check_finite: raise ValueError on NaN/Inf inputs (costs one pass and a sync; False skips it).
        group: a torch.distributed process group: a and b are this rank's rows, and the estimate
            (the same on every rank) is over the global batch; each rank's gradient is the global
            estimate's gradient for its own rows (fastmi/distributed.py).

    Returns:
        0-d tensor, float64 for float64 inputs and float32 otherwise; differentiable with respect
        to a and b for "kde" and soft "unit". A RuntimeWarning says when a KDE estimate is within 5%
        of ln N (saturated bandwidth).
    """
    choice(estimator, "estimator", ESTIMATORS)
    if estimator == "unit":
        bins = DEFAULT_BINS["unit"] if bins is None else bins
        return unit_mi(a, b, bins=bins, soft=soft, range=range, reduction="mean", units=units, backend=backend,
                       check_finite=check_finite, group=group)
    choice(units, "units", ("nats", "bits"))
    choice(backend, "backend", BACKENDS)
    if estimator == "binned":
        bins = DEFAULT_BINS["binned"] if bins is None else bins
        binned.check_bins(bins)
        binned.check_range(range)
        a, b = paired_samples(a, b, check_finite, allow_integer=True)
        shard = None if group is None else shard_of(a, b, group)
        a_ok, b_ok, finite = _finite_or_nan(a, b, check_finite)
        value = finite(binned.binned_mi(a_ok, b_ok, bins, range, backend, shard).to(_result_dtype(a, b)))
    elif estimator == "ksg":
        if group is not None:
            raise ValueError("group= is not supported by estimator='ksg' (gather the rows and call it on one rank)")
        a, b = paired_samples(a, b, check_finite)
        a_ok, b_ok, finite = _finite_or_nan(a, b, check_finite)
        value = finite(ksg.ksg_mi(a_ok, b_ok, k, backend).to(device=a.device, dtype=_result_dtype(a, b)))
    else:
        choice(bound, "bound", tuple(kde.BOUND_FACTOR))
        if not isinstance(loo, bool):
            raise TypeError(f"loo must be a bool, got {loo!r}")
        check_sigma(sigma)
        a, b = paired_samples(a, b, check_finite)
        common = torch.promote_types(a.dtype, b.dtype)
        value = kde.kde_mi(a.to(common), b.to(common), sigma, bound, loo, backend, group)
    return value / math.log(2.0) if units == "bits" else value


def unit_mi(a, b, *, bins=16, soft=False, range=None, reduction="none", units="nats", backend="auto",
            check_finite=True, group=None):
    """MI of every unit pair (a[:, p], b[:, q]) from its bins x bins joint histogram (plug-in, nats).

    Each unit is binned into `bins` equal-width bins over its own min/max (or `range`). Hard codes
    count samples; `soft=True` spreads each sample's mass over the two nearest bin centres (linear
    interpolation), which makes the result differentiable. Returns a (Da, Db) tensor, or its mean or
    sum (`reduction`), float64 for float64 inputs and float32 otherwise. With a torch.distributed
    `group`, a and b are this rank's rows and the histograms are those of the global batch.
    """
    binned.check_bins(bins)
    binned.check_range(range)
    choice(reduction, "reduction", REDUCTIONS)
    choice(units, "units", ("nats", "bits"))
    choice(backend, "backend", BACKENDS)
    if not isinstance(soft, bool):
        raise TypeError(f"soft must be a bool, got {soft!r}")
    a, b = paired_samples(a, b, check_finite)
    shard = None if group is None else shard_of(a, b, group)
    a_ok, b_ok, finite = _finite_or_nan(a, b, check_finite)
    with full_precision(a.device):
        matrix = finite(binned.unit_mi_matrix(a_ok, b_ok, bins, soft, range, backend, shard).to(_result_dtype(a, b)))
    value = {"none": matrix, "mean": matrix.mean(), "sum": matrix.sum()}[reduction]
    return value / math.log(2.0) if units == "bits" else value


def _finite_or_nan(a, b, checked):
    """For estimators that would turn NaN/Inf into a plausible number (binning, neighbour search): when
    the inputs were not checked, run on zeroed copies and make the result NaN if any input was not
    finite. Returns (a, b, mark) with mark(value) -> value or NaN; no host sync."""
    if checked:
        return a, b, lambda value: value
    finite = torch.ones((), dtype=torch.bool, device=a.device)
    for x in (a, b):
        if x.is_floating_point():
            finite = finite & torch.isfinite(x).all()
    clean = [torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0) if x.is_floating_point() else x for x in (a, b)]
    return (*clean, lambda value: torch.where(finite, value, torch.full_like(value, math.nan)))


def _result_dtype(a, b):
    return torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
