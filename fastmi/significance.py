"""fastmi.mi_test: is an MI estimate above chance? A permutation test (docs/design.md, "Significance").

Permuting b's rows breaks the pairing and keeps both marginals, so the estimates on permuted data are
draws of the estimator under independence (its null distribution, bias included). The p-value counts
the estimate itself among them (Phipson & Smyth 2010): (1 + #{null >= estimate}) / (1 + P), never 0.

Where the estimates on permuted data differ only by rounding, the statistic does not depend on how the
rows are paired (a saturated binned estimate at ln N, GCMI on a singular joint): a p-value would be
made of rounding noise, so the p-value is NaN, with a warning that says why.
"""
import math
from dataclasses import dataclass

import torch

from .api import make_estimator
from .estimators import ESTIMATORS
from .inputs import as_tensors, check_int, choice, paired_samples
from .pipeline import check_common, evaluation, in_units
from .warn import warn_user

# The null's spread at or below this fraction of the values' size is rounding (float64 sums of N terms
# agree to ~1e-13 relative; the smallest real spread seen, 20 permutations of independent data at
# N = 10^5, is ~1e-4 of the estimate)
ROUNDING_SPREAD = 1e-9


@dataclass(frozen=True)
class MITest:
    """What mi_test found, in `units`: `estimate` (what layer_mi gives), the mean and standard deviation
    (ddof = 0) of the `permutations` estimates on permuted data, the permutation `p_value`, and
    `corrected` = estimate - null_mean (the estimate less the estimator's bias under independence).
    `p_value` is NaN (with a warning) where the null's spread is at rounding level: the estimate does not
    depend on the pairing of the rows, so no test of the pairing can be read from it."""
    estimate: float
    null_mean: float
    null_std: float
    p_value: float
    corrected: float
    permutations: int
    estimator: str
    units: str


def mi_test(a, b, *, estimator="auto", permutations=200, seed=0, units="nats", backend="auto", **options):
    """Permutation test of dependence between a and b with an MI estimator; returns an MITest.

    Args:
        a, b: as for layer_mi (N >= 3 paired rows; inputs are checked for NaN/Inf).
        estimator: any of layer_mi's; "auto" (default, docs/which-estimator.md's recommendation) chooses once, on the
            unpermuted data, and computes every surrogate by that rule. Shared between the
            permutations: "ksg" its marginal search trees, "kde" its two kernel matrices (and the
            data's bandwidth), "gcmi" the sides' whitened normal scores. options: the estimator's
            own, as for layer_mi.
        permutations: how many permutations of b's rows make the null (an int >= 1); the smallest
            p-value possible is 1 / (1 + permutations).
        seed: seeds the generator of the permutations (the same seed gives the same test).
        units, backend: as for layer_mi. No group=: gather the rows on one rank.
    """
    choice(estimator, "estimator", tuple(ESTIMATORS))
    chosen = make_estimator(estimator, options)
    check_common(units, backend)
    check_int(permutations, "permutations", 1)
    check_int(seed, "seed", 0)
    (a, b), _ = as_tensors([("a", a), ("b", b)])
    a, b = paired_samples(a, b, True, chosen.takes_symbols)
    n = a.shape[0]
    if n < 3:
        raise ValueError(f"mi_test needs N >= 3 rows (N = 2 has one other pairing), got N = {n}")
    order = row_permutations(n, permutations, seed).to(a.device)
    with evaluation([a, b], backend) as resolved:
        estimate, null = chosen.with_null(a, b, order, resolved)
    estimate, null = float(in_units(estimate.double(), units)), in_units(null.double(), units)
    null_mean, null_std = float(null.mean()), float(null.std(correction=0))
    p_value = (1 + int((null >= estimate).sum())) / (1 + permutations)
    if null_std <= ROUNDING_SPREAD * max(abs(estimate), abs(null_mean), 1.0):
        warn_user(f"mi_test: the {permutations} estimates on permuted rows agree to rounding (spread {null_std:.2g} "
                  f"around {null_mean:.6g} {units}; the estimate {estimate:.6g}), so the estimate does not depend on "
                  "how the rows are paired (a saturated estimate, e.g. binned at ln N, or GCMI on a singular joint) "
                  "and a p-value would be rounding noise: p_value is NaN. Use another estimator, fewer bins, or "
                  "more rows")
        p_value = math.nan
    return MITest(estimate=estimate, null_mean=null_mean, null_std=null_std, p_value=p_value,
                  corrected=estimate - null_mean, permutations=permutations, estimator=estimator, units=units)


def holm(pvalues):
    """Holm's step-down adjusted p-values of several tests (e.g. mi_test over many layer pairs), in the
    order given: the i-th smallest times (m - i + 1), made non-decreasing, capped at 1 (Holm 1979). Reject
    where the adjusted p-value is below alpha: the family-wise error rate is then at most alpha."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def row_permutations(n, count, seed):
    """(count, n) int64: `count` independent uniform permutations of range(n), from a CPU generator
    seeded with `seed` (reproducible on every device)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(n, generator=generator) for _ in range(count)])
