"""Gaussian-copula MI (GCMI; Ince et al. 2017, Human Brain Mapping 38:1541; docs/design.md, "GCMI"):

    z_c = Phi^-1(r_c / (N + 1))        each column through its ranks r_c (1..N) to standard normal scores
    I = -1/2 sum_i ln(1 - rho_i^2)     rho_i: the canonical correlations between the sides' scores,
                                       = 1/2 [ln det C_a + ln det C_b - ln det C]  (C: sample covariances)

less the analytic bias of Gaussian log-determinants (Wishart; Ince et al. 2017, eq. 5): for S the
sample covariance (N - 1 degrees of freedom) of d Gaussian columns,
E[ln det S] = ln det Sigma + sum_{i=1..d} psi((N - i) / 2) + d ln(2 / (N - 1)), so the estimate subtracts
1/2 [Psi(d_a) + Psi(d_b) - Psi(d_a + d_b)], Psi(d) = sum_{i=1..d} psi((N - i) / 2) (the d ln terms cancel).

Exact in the population for Gaussian copulas, invariant to increasing per-column maps, O(N D log N +
N D^2 + D^3). It bounds the MI from below when each side is one column (the marginals are then exactly
Gaussian, and the Gaussian has the largest joint entropy for its covariance); with several columns per
side it can over- or underestimate (the sides' joint copulas need not be Gaussian).

Ties: tied values share their mean rank (mid-ranks), so a point mass (ReLU zeros) maps to one score.
Rank: each side keeps the directions of its score covariance above rounding (a constant column or a
copy of another carries nothing: exact for degenerate Gaussians); d_a, d_b are those ranks. When the
joint is still singular (N <= d_a + d_b, or one side determines the other: 1 - rho_max <= DETERMINED),
the cross-covariance is shrunk toward 0 by the Ledoit-Wolf weight (Ledoit & Wolf 2004); the estimate,
without bias correction, is biased (low from the shrinkage, high from small N; measured 0.1-0.4 nats on
independent data at N = 10-20, 6-15 dims per side): a RuntimeWarning says so.
"""
import math

import torch

from ..inputs import check_bool
from ..warn import warn_user
from .base import Estimator, class_side, entropy, estimate_and_null, permuted_b

# 1 - rho_max at or below this is a joint the sample cannot tell from singular: rounding in the whitened
# scores moves rho by ~1e-15 times their conditioning (sqrt(eps): at most ~8.6 nats per canonical pair)
DETERMINED = torch.finfo(torch.float64).eps ** 0.5


class GCMI(Estimator):
    """estimator="gcmi": bias_correction (True: subtract the analytic bias of the Gaussian estimate).
    A side of integer class ids (N,) takes the class-conditional Gaussian form (class_conditional_mi),
    at most the ids' plug-in entropy H(Y).
    Not differentiable (ranks); no group=."""
    name = "gcmi"
    supports_group = False
    nan_blind = True
    takes_symbols = True  # integer class ids (N,) on one side

    def __init__(self, *, bias_correction=True):
        self.bias_correction = check_bool(bias_correction, "bias_correction")

    def __call__(self, a, b, backend, shard):
        """GCMI in nats: a 0-d float64 tensor without gradient."""
        return self.with_null(a, b, [], backend)[0]

    def with_null(self, a, b, permutations, backend):
        """A permutation of b's rows permutes its whitened scores: both sides are whitened once (and a
        singular joint, which no permutation changes, is said once)."""
        labelled = class_side(a, b, self.name)
        if labelled is not None:
            return self._class_null(*labelled, permutations)
        with torch.no_grad():
            u, v = whitened(normal_scores(a)), whitened(normal_scores(b))
            values, weights = zip(*[self.from_scores(u, v if p is None else v[p]) for p in [None, *permutations]])
        if weights[0] is not None:
            n, da, db = u.shape[0], u.shape[1], v.shape[1]
            warn_user(f"gcmi: the joint covariance of the normal scores is singular (N = {n} rows for {da} + {db} "
                      "dimensions, or one side determines the other): the cross-covariance is shrunk toward 0 "
                      f"by the Ledoit-Wolf weight {weights[0]:.3g}, without bias correction; the estimate is "
                      "biased (either way at small N): prefer N > Da + Db")
        return values[0], torch.stack(values[1:]) if len(values) > 1 else None

    @torch.no_grad()
    def _class_null(self, x, ids, ids_are_a, permutations):
        """class_conditional_mi of the continuous side's whitened scores and the ids, and with b's rows
        permuted (the scores' if a holds the ids)."""
        z = whitened(normal_scores(x))
        check_class_sizes(ids, z.shape[1])
        ceiling = entropy(ids)  # I(X; Y) <= H(Y): a Gaussian per class can pass it (saturated units)
        return estimate_and_null(lambda rows: torch.minimum(
            class_conditional_mi(*permuted_b(z, ids, ids_are_a, rows), self.bias_correction), ceiling), permutations)

    def from_scores(self, u, v):
        """(estimate, the Ledoit-Wolf weight where the joint is singular, else None) from the two sides'
        whitened scores (N, d_a), (N, d_b)."""
        n, da, db = u.shape[0], u.shape[1], v.shape[1]
        if da == 0 or db == 0:  # a side without variance: independent of everything
            return torch.zeros((), dtype=torch.float64, device=u.device), None
        cross = u.T @ v / (n - 1)
        rho = torch.linalg.svdvals(cross)
        if da + db <= n - 1 and float(1 - rho.max()) > DETERMINED:
            bias = gaussian_bias(n, da, db) if self.bias_correction else 0.0
            return -0.5 * torch.log1p(-rho.square()).sum() - bias, None
        weight = shrinkage_weight(u, v, cross)
        return -0.5 * torch.log1p(-((1 - weight) * rho).square()).sum(), weight


def mid_ranks(x):
    """(N, D) float64 ranks 1..N of each column; tied values get their mean rank."""
    columns = x.T.contiguous()
    ordered = columns.sort(dim=1).values
    below = torch.searchsorted(ordered, columns, right=False)
    through = torch.searchsorted(ordered, columns, right=True)
    return ((below + through + 1).double() / 2).T  # float64: exact ranks beyond 2^24 rows


def normal_scores(x):
    """Phi^-1(rank / (N + 1)) of each column: (N, D) float64."""
    return torch.special.ndtri(mid_ranks(x) / (x.shape[0] + 1))


def whitened(z):
    """Centred z in the basis of its covariance's eigenvectors above rounding, scaled to unit
    covariance: (N, rank) float64."""
    z = z - z.mean(dim=0)
    values, vectors = torch.linalg.eigh(z.T @ z / (z.shape[0] - 1))
    kept = values > values.max().clamp_min(0) * _rounding(max(z.shape))
    return z @ (vectors[:, kept] / values[kept].sqrt())


def gaussian_bias(n, da, db):
    """1/2 [Psi(d_a) + Psi(d_b) - Psi(d_a + d_b)], Psi(d) = sum_{i=1..d} psi((N - i) / 2): the expected
    excess of the plug-in Gaussian MI of N samples (Ince et al. 2017, eq. 5)."""
    psi = torch.special.digamma((n - torch.arange(1, da + db + 1, dtype=torch.float64)) / 2)
    return float(0.5 * (psi[:da].sum() + psi[:db].sum() - psi.sum()))


def class_conditional_mi(z, ids, bias_correction):
    """Gaussian-copula MI between a continuous side and class ids (Ince et al. 2017, the model of a
    Gaussian per class): I = h(z) - sum_y p(y) h(z | y), each entropy that of the Gaussian with the
    sample covariance of the rows (of the class), 1/2 ln det S up to constants that cancel, less its
    Wishart bias 1/2 [sum_{i<=d} psi((n - i) / 2) + d ln(2 / (n - 1))] (bias_correction). z: the whitened
    normal scores (N, d) of every row; every class needs more than d + 1 rows (check_class_sizes)."""
    def entropy(rows):
        n, d = rows.shape
        half_log_det = 0.5 * torch.linalg.slogdet(torch.cov(rows.T).reshape(d, d))[1]
        if not bias_correction:
            return half_log_det
        psi = torch.special.digamma((n - torch.arange(1, d + 1, dtype=torch.float64)) / 2)
        return half_log_det - 0.5 * (psi.sum() + d * math.log(2 / (n - 1)))
    if z.shape[1] == 0:  # a side without variance: independent of everything
        return torch.zeros((), dtype=torch.float64, device=z.device)
    weights = torch.bincount(ids).double() / ids.numel()
    conditional = sum(weights[y] * entropy(z[ids == y]) for y in range(len(weights)) if weights[y] > 0)
    return entropy(z) - conditional


def check_class_sizes(ids, d):
    """A ValueError naming the smallest class where a class has too few rows (d + 1 or fewer) for its
    d-dimensional covariance to be non-singular."""
    sizes = torch.bincount(ids)
    smallest = int(sizes[sizes > 0].min())
    if smallest <= d + 1:
        raise ValueError(f"gcmi with class ids needs more than d + 1 = {d + 1} rows in every class (each class's "
                         f"covariance of the other side's {d} dimensions), but a class has {smallest}: use "
                         "estimator='ksg' (Ross's estimator) or 'auto', fewer units, or more rows")


def shrinkage_weight(u, v, cross):
    """Ledoit-Wolf weight of the target 0 for the cross-covariance of unit-covariance u, v: the summed
    variance of its entries over their summed squares, clipped to [0, 1]."""
    n = u.shape[0]
    spread = (u.square().sum(1) * v.square().sum(1)).sum() - (n - 2) * cross.square().sum()
    return float((spread / n ** 2 / cross.square().sum().clamp_min(1e-300)).clamp(0, 1))


def _rounding(size):
    """Relative size below which an eigenvalue is rounding (numpy.linalg.matrix_rank's rule)."""
    return size * torch.finfo(torch.float64).eps
