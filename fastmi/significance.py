"""fastmi.mi_test: is an MI estimate above chance? A permutation test (docs/design.md, "Significance").

Permuting b's rows breaks the pairing and keeps both marginals, so the estimates on permuted data are
draws of the estimator under independence (its null distribution, bias included). The p-value counts
the estimate itself among them (Phipson & Smyth 2010): (1 + #{null >= estimate}) / (1 + P), never 0.
"""
from dataclasses import dataclass

import torch

from .api import _check_common, _evaluate, _in_units, make_estimator
from .estimators import ESTIMATORS
from .inputs import as_tensors, check_int, choice, paired_samples


@dataclass(frozen=True)
class MITest:
    """What mi_test found, in `units`: `estimate` (what layer_mi gives), the mean and standard deviation
    (ddof = 0) of the `permutations` estimates on permuted data, the permutation `p_value`, and
    `corrected` = estimate - null_mean (the estimate less the estimator's bias under independence)."""
    estimate: float
    null_mean: float
    null_std: float
    p_value: float
    corrected: float
    permutations: int
    estimator: str
    units: str


def mi_test(a, b, *, estimator="ksg", permutations=200, seed=0, units="nats", backend="auto", **options):
    """Permutation test of dependence between a and b with an MI estimator; returns an MITest.

    Args:
        a, b: as for layer_mi (N >= 3 paired rows; inputs are checked for NaN/Inf).
        estimator: any of layer_mi's. Shared between the permutations: "ksg" (default) its marginal
            search trees, "kde" its two kernel matrices (and the data's bandwidth), "gcmi" the sides'
            whitened normal scores; "auto" chooses once, on the unpermuted data. options: the
            estimator's own, as for layer_mi.
        permutations: how many permutations of b's rows make the null (an int >= 1); the smallest
            p-value possible is 1 / (1 + permutations).
        seed: seeds the generator of the permutations (the same seed gives the same test).
        units, backend: as for layer_mi. No group=: gather the rows on one rank.
    """
    choice(estimator, "estimator", tuple(ESTIMATORS))
    chosen = make_estimator(estimator, options)
    _check_common(units, backend)
    check_int(permutations, "permutations", 1)
    check_int(seed, "seed", 0)
    (a, b), _ = as_tensors([("a", a), ("b", b)])
    a, b = paired_samples(a, b, True, chosen.takes_symbols)
    n = a.shape[0]
    if n < 3:
        raise ValueError(f"mi_test needs N >= 3 rows (N = 2 has one other pairing), got N = {n}")
    order = row_permutations(n, permutations, seed).to(a.device)
    estimate, null = _evaluate(lambda resolved, _: chosen.with_null(a, b, order, resolved), [a, b], backend, None)
    estimate, null = float(_in_units(estimate.double(), units)), _in_units(null.double(), units)
    null_mean = float(null.mean())
    return MITest(estimate=estimate, null_mean=null_mean, null_std=float(null.std(correction=0)),
                  p_value=(1 + int((null >= estimate).sum())) / (1 + permutations),
                  corrected=estimate - null_mean, permutations=permutations, estimator=estimator, units=units)


def row_permutations(n, count, seed):
    """(count, n) int64: `count` independent uniform permutations of range(n), from a CPU generator
    seeded with `seed` (reproducible on every device)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(n, generator=generator) for _ in range(count)])
