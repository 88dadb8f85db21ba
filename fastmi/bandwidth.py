"""Kernel bandwidths for the KDE estimator (docs/design.md, "The KDE estimator").

`sigma` is a positive float (the Gaussian noise std in the data's raw units, as in Saxe et al. 2018),
a rule (a name in RULES, or a callable rule(n, d, z) -> float), or a pair (sigma_a, sigma_b) of
those. A rule is applied after per-column standardisation: the bandwidth of column c is
std(c) * rule(N, Da + Db, standardised data). The joint dimension Da + Db is the one that matters:
one bandwidth serves the marginal and the joint kernel sums, and the joint density is the hardest.

With a rule the estimate is scale-free (layer_mi(2a, 2b) == layer_mi(a, b)), so its gradient must be
too: the column standard deviations stay in the autograd graph and only the rule's scalar factor
(a function of the standardised rows) is detached. The gradient then has no component along scaling
a or b (<dI/da, a - mean(a)> = 0): it is the exact gradient of the estimate at the current factor.
A float sigma is a constant (a noise level in the data's units).

The default, "standardized_median" (before: "median", still accepted with a FutureWarning), is a quarter
of the median distance between standardised rows: of the
fractions 1, 1/2, 1/3, 1/4, 1/6, 1/8 and the Silverman and Scott rules, it had the smallest mean
absolute error on the ground-truth tasks of bench/accuracy.py, and unlike Silverman and Scott it does
not saturate on wide layers of low intrinsic dimension (table in docs/estimators.md).
"""
import math

import torch

from .warn import warn_user

# The median rule looks at an evenly strided subsample of at most this many rows (float32): measured on
# bench/accuracy.py over 5 seeds at N = 2048, mean abs error 0.962 +- 0.018 nats with 256 rows in float32
# against 0.973 +- 0.013 with 1024 rows in float64 (paired difference within the seed spread), 16x cheaper.
MEDIAN_MAX_ROWS = 256
MEDIAN_FRACTION = 0.25  # measured: bench/accuracy.py


def silverman(n, d, z):
    """Silverman's multivariate rule of thumb for unit-variance data: (4 / ((d + 2) n))^(1 / (d + 4))."""
    return (4.0 / ((d + 2) * n)) ** (1.0 / (d + 4))


def scott(n, d, z):
    """Scott's rule for unit-variance data: n^(-1 / (d + 4))."""
    return n ** (-1.0 / (d + 4))


def squared_distances(x):
    """(N, N) squared distances |x_i|^2 + |x_j|^2 - 2 x_i.x_j from one GEMM (10x faster than pdist at
    D = 1024; its rounding is relative to the norms: centre x first), clamped at 0; differentiable."""
    squares = x.square().sum(1)
    return torch.addmm(squares[:, None] + squares[None, :], x, x.T, alpha=-2.0).clamp_min(0.0)


def median(n, d, z, fraction=MEDIAN_FRACTION):
    """The median heuristic, scaled: fraction * the median distance between the rows of an evenly
    strided subsample of at most MEDIAN_MAX_ROWS rows (z's columns centred near 0: the Gram form's
    rounding is relative to the norms), in float64 for float64 z and float32 otherwise; the median of
    an even count is the mean of the two middle values (numpy's, hyppo's)."""
    rows = z[:: max(1, math.ceil(n / MEDIAN_MAX_ROWS))]
    rows = rows if rows.dtype == torch.float64 else rows.float()
    i, j = torch.triu_indices(len(rows), len(rows), offset=1, device=rows.device)
    squared = squared_distances(rows)[i, j]  # pairs i < j
    count = squared.numel()
    # the two middle squared distances by selection (5x faster than a sort at 256 rows); sqrt is monotone
    middle = [squared.kthvalue(k + 1).values for k in sorted({(count - 1) // 2, count // 2})] if count else []
    value = sum(m.sqrt() for m in middle) / len(middle) if count else squared.new_zeros(())
    # a tensor, not a float: no host sync (torch.compile); (nearly) all rows equal: any bandwidth gives 0
    return torch.where(value > 0, fraction * value, torch.ones_like(value))


# The two conventions, named apart (docs/design.md, "Bandwidths"):
# - the KDE's (layer_mi, chain_mi, label_mi, its Regularizer terms): rules in standard deviations of the
#   standardised columns, sigma_c = std_c * rule(n, Da + Db, z); "standardized_median" is a quarter of the
#   median distance between standardised rows; a callable returns that factor;
# - the kernel measures' (hsic, cka, cka_matrix, MinibatchCKA): "median" is the median distance between
#   the centred raw rows (the field's median heuristic), a callable returns sigma in the data's units.
KDE_MEDIAN = "standardized_median"
RULES = {"silverman": silverman, "scott": scott, KDE_MEDIAN: median}
DIMENSION_FREE = (KDE_MEDIAN,)  # rules that ignore their d argument
RENAMED = {"median": KDE_MEDIAN}  # the KDE's old spellings: the same rule, with a FutureWarning
MEASURE_RULES = ("median",)


def kde_sigma(sigma):
    """The KDE's sigma checked, old rule names spelled anew (a FutureWarning where one is passed): a
    positive float (data units), a rule name of RULES, a callable rule(n, d, z) -> a factor in standard
    deviations, or a pair of those for (a, b). TypeError for a wrong type, ValueError for a bad value."""
    specs = _spec_list(sigma, 2, "a pair (sigma_a, sigma_b)")
    renamed = [spec for spec in specs if isinstance(spec, str) and spec in RENAMED]
    if renamed:
        warn_user(f"the KDE's sigma={renamed[0]!r} is now spelled sigma={RENAMED[renamed[0]]!r} (the same rule: a "
                  "quarter of the median distance between standardised rows); in hsic and cka 'median' is the "
                  "field's median distance in the data's units", FutureWarning)
    specs = [RENAMED.get(spec, spec) if isinstance(spec, str) else spec for spec in specs]
    for spec in specs:
        if isinstance(spec, str) and spec not in RULES:
            raise ValueError(f"unknown bandwidth rule {spec!r}; the KDE takes {sorted(RULES)}, a positive float or "
                             "a callable rule(n, d, z)")
        _check_spec(spec)
    return tuple(specs) if isinstance(sigma, (tuple, list)) else specs[0]


def measure_sigma(sigma, count=None):
    """The kernel measures' sigma checked (hsic, cka, ...): a positive float (data units), "median" (the
    median distance between rows), a callable rule(n, d, x) -> sigma in the data's units, or one of those
    per input (count inputs, where known). TypeError for a wrong type, ValueError for a bad value."""
    specs = _spec_list(sigma, count, f"one spec per input ({count})" if count else "one spec per input")
    for spec in specs:
        if isinstance(spec, str) and spec not in MEASURE_RULES:
            kde = f" ({spec!r} is a rule of the KDE, in standard deviations)" if spec in RULES else ""
            raise ValueError(f"unknown bandwidth rule {spec!r}{kde}; hsic and cka take 'median' (the median "
                             "distance between rows, in the data's units), a positive float or a callable "
                             "rule(n, d, x)")
        _check_spec(spec)
    return specs


def _spec_list(sigma, count, expected):
    """sigma as a list of specs: one, or a sequence of `count` (any length > 0 where count is None)."""
    if not isinstance(sigma, (tuple, list)):
        return [sigma]
    if not sigma or (count is not None and len(sigma) != count):
        raise ValueError(f"sigma as a sequence must be {expected}, got {sigma!r}")
    return list(sigma)


def _check_spec(spec):
    """A TypeError for a spec that is neither a number, a string nor a callable; a ValueError for a number
    that is not positive and finite."""
    if isinstance(spec, str) or callable(spec):
        return
    if isinstance(spec, bool) or not isinstance(spec, (int, float)):
        raise TypeError(f"sigma must be a positive float, a rule name, a callable rule, or one of those per input; "
                        f"got {spec!r}")
    if not (math.isfinite(spec) and spec > 0):
        raise ValueError(f"sigma must be positive and finite, got {spec!r}")


def split_sigma(sigma):
    """(spec for a, spec for b) from one spec or a pair."""
    return tuple(sigma) if isinstance(sigma, (tuple, list)) else (sigma, sigma)


def column_mean_std(x, sum_rows=None, n=None):
    """Column means and sample standard deviations (N - 1 in the denominator), differentiable. A column
    is constant, with std 1 and a zero gradient (not NaN), when its spread is at the rounding level of
    its mean (N eps |mean|: the mean of N equal values is not exactly that value). Under
    torch.distributed, sum_rows(t) sums a (D,) partial over every process and n is the global number
    of rows."""
    sum_rows = sum_rows or (lambda t: t)
    n = x.shape[0] if n is None else n
    mean = sum_rows(x.sum(dim=0)) / n
    var = sum_rows((x - mean).square().sum(dim=0)) / max(n - 1, 1)
    spread = var > (n * torch.finfo(x.dtype).eps * mean.detach().abs()).square()
    return mean, torch.where(spread, var, torch.ones_like(var)).sqrt()


OUTLIER_STDS = 8.0  # a value this many column stds from its mean drags the mean (Gaussian maxima: ~6 at N = 10^8)


def column_centres(x, moments=None):
    """(D,) detached offsets the pair kernels subtract before their Gram-matrix distances
    |x_i|^2 + |x_j|^2 - 2 x_i.x_j: the column means, or, in a column with a value more than
    min(OUTLIER_STDS, sqrt(N) / 2) of its stds from its mean (one outlier among N rows sits ~sqrt(N) stds
    out: it inflates the std too), the column's median over all rows. Distances ignore shifts, but the
    float rounding of that form is relative to the norms: one row at 1e7 in a column of 500 drags the mean
    far from every other row, and float32 then loses their distances (HSIC -91%); the median keeps the
    typical rows near 0. The check costs ~0.1 ms for 256 x 1024 on one core, the median ~1.7 ms: it is
    paid only where an outlier asks for it. Either is the same for any row order up to rounding.
    moments: the (mean, population variance, min, max) of x's columns where the caller has them (detached)."""
    x = x.detach()
    n = x.shape[0]
    if not n:
        return torch.zeros_like(x[0])
    if moments is None:
        mean = x.mean(dim=0)
        variance = (x.square().mean(dim=0) - mean.square()).clamp_min(0)  # for the test only: no centred copy
        moments = (mean, variance, *column_extremes(x))
    mean, variance, lo, hi = moments
    reach = torch.maximum(hi - mean, mean - lo)
    far = reach.square() > min(OUTLIER_STDS, math.sqrt(n) / 2) ** 2 * variance
    if not torch.compiler.is_compiling() and not bool(far.any()):  # one host read, where the mean will do
        return mean
    return torch.where(far, x.median(dim=0).values, mean)  # traced: no data-dependent branch


def power_of_two(magnitude):
    """A power of two within a factor 2 of each (non-negative) magnitude, 1 where it is 0 or not finite:
    dividing by it is exact and brings any float's range (subnormal to near-overflow) to about 1."""
    exponent = torch.frexp(magnitude).exponent
    scale = torch.ldexp(torch.ones_like(magnitude), exponent)
    return torch.where(torch.isfinite(magnitude) & (magnitude > 0), scale, torch.ones_like(magnitude))


def column_extremes(x):
    """((D,) min, (D,) max) of each column, detached (zeros where x has no rows). Not torch.aminmax: over
    the rows of a row-major matrix it took 10-20x amin + amax (CPU, 128 x 32768)."""
    if not x.shape[0]:
        return torch.zeros_like(x[0]), torch.zeros_like(x[0])
    x = x.detach()
    return x.amin(dim=0), x.amax(dim=0)


def column_scales(x, extremes=None):
    """(D,) power of two near each column's largest |value| (detached): x / scales is in [-1, 1].
    extremes: column_extremes(x), where the caller has them."""
    lo, hi = column_extremes(x) if extremes is None else extremes
    return power_of_two(torch.maximum(hi, -lo))


def column_std(x):
    """(D,) sample standard deviation of each column, 1 for constant columns (they add no distance anyway),
    computed on the rescaled columns so that neither subnormal nor huge values lose it."""
    scales = column_scales(x)
    return column_mean_std(x / scales)[1] * scales


def rule_of(spec):
    """The rule function of a spec, or None for a float sigma."""
    return RULES.get(spec) if isinstance(spec, str) else spec if callable(spec) else None


def depends_on_dimension(spec):
    """Whether a spec's bandwidth depends on the joint dimension Da + Db (so on the pair a layer is in)."""
    return rule_of(spec) is not None and not (isinstance(spec, str) and spec in DIMENSION_FREE)


@torch.no_grad()
def rule_factor(spec, n, joint_dim, z):
    """The rule's bandwidth in standard deviations, from the standardised rows z (detached): a float or
    a 0-d tensor (no host sync while compiling)."""
    value = rule_of(spec)(n, joint_dim, z)
    if not torch.is_tensor(value) or not torch.compiler.is_compiling():  # reading a tensor is a sync
        checked = float(value)
        if not (math.isfinite(checked) and checked > 0):
            raise ValueError(f"bandwidth rule {spec!r} gave {checked!r}; it must return a positive float")
    return value


def column_bandwidths(x, spec, joint_dim):
    """Per-column Gaussian bandwidths (D,) of a 2-d input, in x's dtype: sigma itself for a float sigma;
    for a rule std_c(x) * factor, differentiable through the column stds, the factor detached."""
    if rule_of(spec) is None:
        return torch.full((x.shape[1],), float(spec), dtype=x.dtype, device=x.device)
    mean, std = column_mean_std(x)
    return std * rule_factor(spec, x.shape[0], joint_dim, (x - mean) / std)
