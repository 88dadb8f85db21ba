"""The public entry point: fastmi.layer_mi."""
import math

import torch

from . import kde
from ._inputs import choice, paired_samples
from .bandwidth import check_sigma

ESTIMATORS = ("kde",)
DEFAULT_SIGMA = "median"


def layer_mi(a, b, *, estimator="kde", sigma=DEFAULT_SIGMA, bound="kl", loo=False, units="nats",
             backend="auto", check_finite=True):
    """Mutual information between two activation matrices with paired rows.

    Args:
        a, b: tensors (N, ...) on one device; dims after the first are flattened per sample. They are
            promoted to a common floating dtype.
        estimator: "kde", the pairwise Gaussian-KDE estimator (DESIGN.md, estimator 1).
        sigma: kernel bandwidth: a positive float (noise std in raw units), a rule "median",
            "silverman" or "scott" (applied after per-column standardisation), or a pair of those for
            (a, b). Always detached from autograd.
        bound: "kl" (exp(-d^2 / 2 sigma^2), the pairwise-KL upper bound) or "bhattacharyya"
            (exp(-d^2 / 8 sigma^2), the pairwise lower-bound variant).
        loo: leave the self term out of every kernel sum (leave-one-out) instead of resubstitution.
        units: "nats" or "bits".
        backend: "auto" (Triton kernels for CUDA tensors, blocked torch on CPU), "triton" or "torch".
        check_finite: raise ValueError on NaN/Inf inputs (costs one pass and a sync; False skips it).

    Returns:
        0-d tensor, float64 for float64 inputs and float32 otherwise, differentiable with respect
        to a and b. A RuntimeWarning says when the estimate is within 5% of ln N (saturated bandwidth).
    """
    choice(estimator, "estimator", ESTIMATORS)
    choice(bound, "bound", tuple(kde.BOUND_FACTOR))
    choice(units, "units", ("nats", "bits"))
    choice(backend, "backend", kde.BACKENDS)
    if not isinstance(loo, bool):
        raise TypeError(f"loo must be a bool, got {loo!r}")
    check_sigma(sigma)
    a, b = paired_samples(a, b, check_finite)
    common = torch.promote_types(a.dtype, b.dtype)
    value = kde.kde_mi(a.to(common), b.to(common), sigma, bound, loo, backend)
    return value / math.log(2.0) if units == "bits" else value

