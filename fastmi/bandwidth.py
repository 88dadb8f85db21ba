"""Kernel bandwidths for the KDE estimator (docs/design.md, "The KDE estimator").

`sigma` is a positive float (the Gaussian noise std in the data's raw units, as in Saxe et al. 2018),
a rule (a name in RULES, or a callable rule(n, d, z) -> float), or a pair (sigma_a, sigma_b) of
those. A rule is applied after per-column standardisation: the bandwidth of column c is
std(c) * rule(N, Da + Db, standardised data). The joint dimension Da + Db is the one that matters:
one bandwidth serves the marginal and the joint kernel sums, and the joint density is the hardest.
Bandwidths are always detached from autograd.

The default, "median", is a quarter of the median distance between standardised rows: of the
fractions 1, 1/2, 1/3, 1/4, 1/6, 1/8 and the Silverman and Scott rules, it had the smallest mean
absolute error on the ground-truth tasks of bench/accuracy.py, and unlike Silverman and Scott it does
not saturate on wide layers of low intrinsic dimension (table in README.md).
"""
import math

import torch

MEDIAN_MAX_ROWS = 1024  # the median rule looks at an evenly strided subsample of at most this many rows
MEDIAN_FRACTION = 0.25  # measured: bench/accuracy.py


def silverman(n, d, z):
    """Silverman's multivariate rule of thumb for unit-variance data: (4 / ((d + 2) n))^(1 / (d + 4))."""
    return (4.0 / ((d + 2) * n)) ** (1.0 / (d + 4))


def scott(n, d, z):
    """Scott's rule for unit-variance data: n^(-1 / (d + 4))."""
    return n ** (-1.0 / (d + 4))


def median(n, d, z, fraction=MEDIAN_FRACTION):
    """The median heuristic, scaled: fraction * median distance between distinct (standardised) rows."""
    rows = z[:: max(1, math.ceil(n / MEDIAN_MAX_ROWS))].double()
    sq = rows.square().sum(1)
    # squared distances from one float64 GEMM (10x faster than pdist at D = 1024), pairs i < j
    d2 = torch.addmm(sq[:, None] + sq[None, :], rows, rows.T, alpha=-2.0)
    i, j = torch.triu_indices(len(rows), len(rows), offset=1, device=rows.device)
    distances = d2[i, j].clamp_min(0.0).sqrt()
    value = distances.median() if distances.numel() else distances.new_zeros(())
    # a tensor, not a float: no host sync (torch.compile); (nearly) all rows equal: any bandwidth gives 0
    return torch.where(value > 0, fraction * value, torch.ones_like(value))


RULES = {"silverman": silverman, "scott": scott, "median": median}


def check_sigma(sigma):
    """Raise a clear error for a bandwidth spec that is not a positive float, a rule, or a pair."""
    specs = sigma if isinstance(sigma, (tuple, list)) else (sigma,)
    if isinstance(sigma, (tuple, list)) and len(sigma) != 2:
        raise ValueError(f"sigma as a sequence must be a pair (sigma_a, sigma_b), got {sigma!r}")
    for spec in specs:
        if callable(spec):
            continue
        if isinstance(spec, str):
            if spec not in RULES:
                raise ValueError(f"unknown bandwidth rule {spec!r}; choose one of {sorted(RULES)} or a float")
        elif isinstance(spec, bool) or not isinstance(spec, (int, float)):
            raise TypeError(f"sigma must be a float, a rule name or a pair of those, got {spec!r}")
        elif not (math.isfinite(spec) and spec > 0):
            raise ValueError(f"sigma must be positive and finite, got {spec!r}")


def split_sigma(sigma):
    """(spec for a, spec for b) from one spec or a pair."""
    return tuple(sigma) if isinstance(sigma, (tuple, list)) else (sigma, sigma)


def column_std(x):
    """(D,) standard deviation of each column, 1 for constant columns (they add no distance anyway)."""
    std = x.std(dim=0)
    return torch.where(std > 0, std, torch.ones_like(std))


@torch.no_grad()
def column_bandwidths(x, spec, joint_dim):
    """Per-column Gaussian bandwidths (float64 tensor of shape (D,)) of a 2-d input for one spec."""
    n, d = x.shape
    rule = RULES.get(spec) if isinstance(spec, str) else spec if callable(spec) else None
    if rule is None:
        return torch.full((d,), float(spec), dtype=torch.float64, device=x.device)
    std = column_std(x.double())
    z = (x.double() - x.double().mean(dim=0)) / std
    value = rule(n, joint_dim, z)
    if not torch.is_tensor(value) or not torch.compiler.is_compiling():  # reading a tensor is a sync
        checked = float(value)
        if not (math.isfinite(checked) and checked > 0):
            raise ValueError(f"bandwidth rule {spec!r} gave {checked!r}; it must return a positive float")
    return std * value
