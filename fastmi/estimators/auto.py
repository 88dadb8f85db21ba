"""estimator="auto": KSG where kNN distances can resolve the joint distribution, GCMI elsewhere (docs/design.md,
"auto"; the rule was chosen on the ground-truth suite: README, "Which estimator?").

KSG's bias grows with the intrinsic dimension of the joint sample, not with its number of columns:
the k-th neighbour must be close for the local densities to be near constant in its ball (Kraskov et
al. 2004, sec. III). GCMI (Gaussian copula) does not depend on neighbourhoods, is exact for Gaussian
copulas at any dimension, and errs where the copula is far from Gaussian — which, among smooth
dependences, is where low-dimensional structure lets KSG resolve it. So:

    m = the Levina-Bickel maximum-likelihood intrinsic dimension of the standardised joint sample,
        1 / mean_i [(1 / (K - 1)) sum_{j < K} ln(T_K(i) / T_j(i))]   (T_j: distance to the j-th neighbour;
        the mean of the inverse, MacKay & Ghahramani 2005), over an evenly strided subsample of rows
    KSG if m <= MAX_KSG_DIMENSION and no row has k or more exact duplicates (eps = 0: point masses, where
        KSG counts ties as neighbours and overestimates), else GCMI.

Not differentiable; no group=. mi_test chooses once, on the unpermuted data, and every surrogate uses
that estimator.
"""
import torch

from . import ksg
from .gcmi import GCMI

MAX_KSG_DIMENSION = 6.0  # measured: README, "Which estimator?" (flat between 5 and 6 at N = 1000, 2000, 4000)
NEIGHBOURS = 10  # K of the intrinsic-dimension estimate
QUERY_ROWS = 512  # rows whose neighbours estimate it (each against all N rows)


class Auto(ksg.KSG):
    """estimator="auto": k (KSG's neighbours, where KSG is chosen). Not differentiable; no group=."""
    name = "auto"

    @torch.no_grad()
    def __call__(self, a, b, backend, shard):
        chosen, counts = self.choose(a, b, backend)
        return ksg.from_counts(*counts, self.k) if chosen == "ksg" else GCMI()(a, b, backend, None)

    @torch.no_grad()
    def with_null(self, a, b, permutations, backend):
        chosen, _ = self.choose(a, b, backend)
        return (super() if chosen == "ksg" else GCMI()).with_null(a, b, permutations, backend)

    def choose(self, a, b, backend):
        """("ksg", KSG's (eps, n_a, n_b)) or ("gcmi", None) for validated a, b."""
        x, y = ksg.standardized(a), ksg.standardized(b)
        if self.k >= x.shape[0] or intrinsic_dimension(torch.cat([x, y], dim=1)) > MAX_KSG_DIMENSION:
            return "gcmi", None
        counts = ksg.neighbour_counts(x, y, self.k, backend)
        return ("gcmi", None) if bool((counts[0] == 0).any()) else ("ksg", counts)


def intrinsic_dimension(z, neighbours=NEIGHBOURS, query_rows=QUERY_ROWS):
    """Levina-Bickel MLE (MacKay-Ghahramani average) of the intrinsic dimension of the rows of z (N, D):
    Euclidean distances from an evenly strided subsample of at most query_rows rows to their nearest
    `neighbours` other rows. Rows with a duplicate among their neighbours are left out (a zero distance
    has no scale); none left, or N <= neighbours: infinity (too few rows to tell)."""
    n = z.shape[0]
    if n <= neighbours:
        return float("inf")
    queries = torch.arange(0, n, max(1, -(-n // query_rows)), device=z.device)
    # explicit differences, not the GEMM form, whose rounding (~1e-8) would hide duplicates' zero distances
    distances = torch.cdist(z[queries], z, compute_mode="donot_use_mm_for_euclid_dist")
    distances = distances.topk(neighbours + 1, dim=1, largest=False).values[:, 1:]
    distances = distances[distances[:, 0] > 0]
    if distances.shape[0] == 0:
        return float("inf")
    log_ratios = (distances[:, -1:] / distances[:, :-1]).log().mean(dim=1)
    return float(1.0 / log_ratios.mean())
