"""fastmi.mi_interval: an MI estimate with its error bar, by subsampling (Holmes & Nemenman 2019).

The rows are split at random into k disjoint parts of N // k rows, for k = 2 ... parts. An estimator's
variance at n rows falls like 1/n, so the variance of the k estimates at N // k rows, Var_k, scaled by
1/k, is the variance at N; pooled over k with the degrees of freedom each gives,

    Var_N = sum_k (k - 1) / k * Var_k / sum_k (k - 1),      dof = sum_k (k - 1)   (6 for parts = 4),

and the interval is estimate +- t_{dof, (1 + level) / 2} sqrt(Var_N) (a t quantile: a normal one
undercovers at 6 degrees of freedom). The same parts check the estimate has converged: the mean of
the k estimates at N // k rows should not drift from the estimate at N by more than the interval's
half-width at its own size, t sqrt(Var_k / k); where it does, the estimator's bias still moves with N
(larger than the bar at N), `stable` is False and a warning says so.

`debiased` (estimator "ksg" or "auto"): where the estimate is unstable and the smallest part still has
DEBIAS_MIN_PART_ROWS rows, the mean estimates at N, N // 2, ..., N // parts rows are fitted to I + c n^(-1/2)
by least squares, and the intercept I (the estimate at n -> infinity) is reported where it lies above the
estimate, and at most the bound I(X; Y) <= H(Y) where one side is read as classes (auto's discrete side, ksg's
integer ids; H by Miller-Madow's correction of the plug-in); elsewhere `debiased` equals `estimate`. KSG's
bias on dependent data is downward and decays like n^(-gamma / d) (Gao, Oh & Viswanath 2018), slower than 1/n
at a few dimensions; auto errs low but with point masses, so an estimate that falls with n is not that bias
(auto taking the larger of two estimators on a part, say) and is not extrapolated. n^(-1/2) measured best of
1, 1/2, 1/4 (docs/significance.md, "How far from the truth?": it lowers auto's error at N = 2000 on the suite
and on held-out tasks, and raised it when the parts had 125 rows, hence the floor).

Subsampling without replacement, not the bootstrap: duplicated rows put KSG's neighbour distances at 0
and add self terms to the KDE's sums. The interval is the estimator's sampling spread around what it
converges to, not around the true MI: the KDE converges to the MI of the variables smoothed by its
bandwidth (the rule's bandwidth does not shrink to 0 with N), so its interval brackets that limit.
"""
import math
import warnings
from dataclasses import dataclass

import torch

from .api import layer_mi, make_estimator
from .estimators import ESTIMATORS
from .estimators.auto import symbols
from .estimators.base import class_side, entropy
from .inputs import as_tensors, check_int, choice, paired_samples
from .pipeline import check_common, in_units
from .warn import warn_user

MIN_PART_ROWS = 16  # the fewest rows of a part (N // parts): below, an estimate on a part says little
DEBIAS_MIN_PART_ROWS = 500  # measured: extrapolating from parts of 125 rows raised the error (module docstring)
DEBIASED = ("ksg", "auto")  # the estimators whose bias `debiased` extrapolates away (upward only)


@dataclass(frozen=True)
class MIInterval:
    """mi_interval's result, in `units`: `estimate` (layer_mi on every row), the interval [`lower`,
    `upper`] at `level`, `std_error` (sqrt(Var_N)) on `dof` degrees of freedom, `debiased` (for
    "ksg" and "auto", the estimate extrapolated upward to infinite N where it is unstable and the parts
    are large enough, else equal to `estimate`: module docstring), `method`, the rows `n`, and `stable`
    (False where the estimates on parts drift with their size beyond their error: the estimate has not
    converged at this N)."""
    estimate: float
    lower: float
    upper: float
    std_error: float
    dof: int
    debiased: float
    method: str
    n: int
    stable: bool
    level: float
    estimator: str
    units: str


def mi_interval(a, b, *, estimator="auto", level=0.95, parts=4, seed=0, units="nats", backend="auto", **options):
    """MI of paired rows with a `level` confidence interval, by subsampling (module docstring).

    Args:
        a, b: as for layer_mi (numpy arrays or tensors, paired rows); at least MIN_PART_ROWS * parts rows.
        estimator: any of layer_mi's, with its options; "auto" (default) chooses on each part as on the
            whole (the interval is for the procedure).
        level: the confidence level, in (0, 1).
        parts: the largest number of disjoint parts (an int >= 2; 4 gives 6 degrees of freedom).
        seed: seeds the random splits (the same seed gives the same interval).
        units, backend: as for layer_mi. No group=: gather the rows on one rank.
    """
    choice(estimator, "estimator", tuple(ESTIMATORS))
    chosen = make_estimator(estimator, options)  # its options checked before any work
    check_common(units, backend)
    check_int(parts, "parts", 2)
    check_int(seed, "seed", 0)
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
    (a, b), _ = as_tensors([("a", a), ("b", b)])
    a, b = paired_samples(a, b, True, chosen.takes_symbols)
    n = a.shape[0]
    if n // parts < MIN_PART_ROWS:
        raise ValueError(f"mi_interval splits the rows into up to parts={parts} parts of at least {MIN_PART_ROWS} "
                         f"rows: it needs N >= {MIN_PART_ROWS * parts}, got N = {n} (fewer parts, or more rows)")

    def estimate_on(rows=None):
        x, y = (a, b) if rows is None else (a[rows], b[rows])
        with torch.no_grad():
            return float(layer_mi(x, y, estimator=estimator, units=units, backend=backend, **options))

    estimate = estimate_on()
    generator = torch.Generator().manual_seed(seed)
    spreads = []  # (k, mean of the k estimates, their variance)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a part's warnings (saturation at N // k rows) are not the estimate's
        for k in range(2, parts + 1):
            order = torch.randperm(n, generator=generator).to(a.device)
            values = torch.tensor([estimate_on(order[i * (n // k):(i + 1) * (n // k)]) for i in range(k)],
                                  dtype=torch.float64)
            spreads.append((k, float(values.mean()), float(values.var())))
    dof = sum(k - 1 for k, _, _ in spreads)
    variance = sum((k - 1) / k * var for k, _, var in spreads) / dof
    t = t_quantile((1 + level) / 2, dof)
    half = t * math.sqrt(variance)
    drifts = [(k, mean) for k, mean, var in spreads if abs(mean - estimate) > t * math.sqrt(var / k)]
    if drifts:
        k, mean = drifts[0]
        warn_user(f"mi_interval: the estimates on {k} parts of {n // k} rows average {mean:.4g} {units} against "
                  f"{estimate:.4g} on all {n} rows, beyond their error: the estimate has not converged at this N "
                  "(its bias is then larger than the interval); more rows, or an estimator less biased here")
    debiased = estimate
    if drifts and n // parts >= DEBIAS_MIN_PART_ROWS and estimator in DEBIASED:
        debiased = max(estimate, min(extrapolated(estimate, spreads, n), ceiling(chosen, a, b, estimate, units)))
    return MIInterval(estimate=estimate, lower=estimate - half, upper=estimate + half, std_error=math.sqrt(variance),
                      dof=dof, debiased=debiased, method=f"subsampling into 2..{parts} parts (Holmes & Nemenman 2019)",
                      n=n, stable=not drifts, level=float(level), estimator=estimator, units=units)


def extrapolated(estimate, spreads, n):
    """The intercept I of the least-squares fit of I + c m^(-1/2) to the mean estimate at each size m: the
    estimate at m = n, the k parts' mean at m = n // k."""
    sizes = torch.tensor([n] + [n // k for k, _, _ in spreads], dtype=torch.float64)
    means = torch.tensor([estimate] + [mean for _, mean, _ in spreads], dtype=torch.float64)
    design = torch.stack([torch.ones_like(sizes), sizes.rsqrt()], dim=1)
    return float(torch.linalg.lstsq(design, means[:, None]).solution[0, 0])


def ceiling(chosen, a, b, estimate, units):
    """The most `debiased` may be: where one side is read as classes (Ross's rule: auto's discrete side, or
    ksg's integer ids), that side's entropy (I(X; Y) <= H(Y)); for auto with two discrete sides (the plug-in,
    whose bias is upward), the estimate; else no bound."""
    if chosen.name == "ksg":
        labelled = class_side(a, b, "ksg")
        return math.inf if labelled is None else in_units(miller_madow_entropy(labelled[1]), units)
    if chosen.name != "auto":
        return math.inf
    discrete = [ids for ids in (symbols(a, chosen.k), symbols(b, chosen.k)) if ids is not None]
    if len(discrete) == 2:
        return estimate
    return in_units(miller_madow_entropy(discrete[0]), units) if discrete else math.inf


def miller_madow_entropy(ids):
    """H(Y) of class ids in nats: the plug-in entropy plus (K - 1) / 2N for K classes seen (Miller 1955), its
    first-order bias; the plug-in alone runs low and would hold `debiased` below an MI near H(Y)."""
    classes = int(torch.unique(ids).numel())
    return float(entropy(ids)) + (classes - 1) / (2 * ids.numel())


def t_quantile(p, dof):
    """Student's t quantile (scipy.stats.t)."""
    from scipy.stats import t
    return float(t.ppf(p, dof))
