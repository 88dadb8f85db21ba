"""estimator="auto": the estimator that suits the data, chosen per call (docs/design.md, "auto"; measured on
the ground-truth suite: docs/which-estimator.md). In order:

1. Discrete sides. A side is discrete when it has at most sqrt(N) distinct rows, or when its entries
   are integers (class ids, one-hot rows, counts) and its distinct rows repeat more than k times on
   average. Both discrete: the plug-in MI of the
   joint symbol counts. One discrete: Ross's kNN estimator for a discrete and a continuous variable
   (Ross 2014, PLoS ONE 9:e87357; scikit-learn's mutual_info_classif), which is KSG with the discrete
   side as one column of class ids scaled past every distance of the other side: a row's k-th joint
   neighbour is then the k-th of its own class, and KSG's marginal counts are Ross's m_i - 1 and
   N_y - 1 (rows of classes of k or fewer rows are left out, as scikit-learn leaves out singletons).
   The result is at most the discrete side's plug-in entropy H(Y), the bound I(X; Y) <= H(Y).
2. Continuous sides, KSG's neighbour structure first. KSG's bias grows with the intrinsic dimension of
   the joint sample, not with its number of columns (Kraskov et al. 2004, sec. III):
       m = the Levina-Bickel maximum-likelihood intrinsic dimension of the standardised joint sample,
           1 / mean_i [(1 / (K - 1)) sum_{j < K} ln(T_K(i) / T_j(i))]   (T_j: distance to the j-th
           neighbour; the mean of the inverse, MacKay & Ghahramani 2005), over a strided subsample.
   KSG where m <= MAX_KSG_DIMENSION and no row has k or more exact duplicates (eps = 0: point masses,
   where KSG counts ties as neighbours and overestimates). Ties short of that (quantised data) are
   broken by KSG's jitter (TIE_JITTER): a neighbour at exactly the k-th distance would be left out.
3. Point masses (ReLU zeros): GCMI (Gaussian copula), which ranks ties together.
4. High intrinsic dimension: the larger of GCMI and KSG. Both err low there on smooth dependence
   (KSG's neighbourhoods are too wide; GCMI sees only what ranks see, nothing of an even map such as
   b = a^2 + noise), and neither errs high without point masses, so the larger is the closer.
GCMI is never used where the joint of its scores is singular (N <= d_a + d_b, or one side determines
the other: its shrunk estimate is meaningless there); KSG takes its place. With k >= N (too few rows
for KSG), GCMI.

Not differentiable; no group=. mi_test chooses once, on the unpermuted data, and every surrogate is
computed by the same rule (the larger of both, for rule 4).
"""
import torch

from . import ksg
from .base import entropy, estimate_and_null
from .gcmi import GCMI, normal_scores, whitened

TIE_JITTER = 1e-10  # KSG's jitter= where a column repeats values but no row has k duplicates (quantised data)
MAX_KSG_DIMENSION = 6.0  # measured: docs/which-estimator.md (flat between 5 and 6 at N = 1000, 2000, 4000)
NEIGHBOURS = 10  # K of the intrinsic-dimension estimate
QUERY_ROWS = 512  # rows whose neighbours estimate it (each against all N rows)


class Auto(ksg.KSG):
    """estimator="auto": k (the neighbours of KSG and Ross's estimator, where chosen). Not differentiable;
    no group=."""
    name = "auto"
    takes_symbols = True  # integer inputs: class ids and the like (rule 1), or numbers

    def __init__(self, *, k=3):
        super().__init__(k=k, jitter=TIE_JITTER)  # KSG's ties broken where auto takes KSG (no point masses)

    @torch.no_grad()
    def __call__(self, a, b, backend, shard):
        return self.with_null(a, b, [], backend)[0]

    @torch.no_grad()
    def with_null(self, a, b, permutations, backend):
        """The estimate and, for mi_test, the estimates with b's rows permuted, by the rule choose() picks."""
        rule, detail = self.choose(a, b, backend)
        if rule == "plug-in":
            ids_a, ids_b = detail
            return estimate_and_null(lambda rows: plug_in_mi(ids_a, ids_b if rows is None else ids_b[rows]),
                                     permutations)
        if rule == "labels":
            return self.ross_with_null(*detail, permutations, backend)
        if rule == "gcmi":
            return GCMI().with_null(a, b, permutations, backend)
        if len(permutations) or detail is None:
            estimate, null = super().with_null(a, b, permutations, backend)  # ties broken (TIE_JITTER)
        else:  # the counts choose() found, where no column has ties to break
            estimate, null = ksg.from_counts(*detail, self.k), None
        if rule == "larger":
            copula, copula_null = GCMI().with_null(a, b, permutations, backend)
            estimate = torch.maximum(estimate, copula)
            null = None if null is None else torch.maximum(null, copula_null)
        return estimate, null

    def choose(self, a, b, backend):
        """(rule, what it needs) for validated a, b: ("plug-in", (ids of a, ids of b)), ("labels", (the
        continuous side standardised, the discrete side's ids, whether the discrete side is a)), ("ksg",
        KSG's (eps, n_a, n_b) where no column has ties, else None), ("gcmi", None) or ("larger", the
        same counts) (GCMI or KSG, the larger). Point masses are read off the data as given (eps = 0);
        KSG's estimates then break ties in tied columns (TIE_JITTER)."""
        ids_a, ids_b = symbols(a, self.k), symbols(b, self.k)
        if ids_a is not None and ids_b is not None:
            return "plug-in", (ids_a, ids_b)
        if ids_a is not None or ids_b is not None:
            continuous = self.continuous_side(b if ids_b is None else a)  # jittered: self.jitter is TIE_JITTER
            return "labels", (continuous, ids_b if ids_a is None else ids_a, ids_a is not None)
        if self.k >= a.shape[0]:
            return "gcmi", None  # too few rows for KSG's k neighbours
        x, y = ksg.standardized(a), ksg.standardized(b)
        counts = ksg.neighbour_counts(x, y, self.k, backend)
        point_masses = bool((counts[0] == 0).any())
        reusable = None if bool(ksg.tied_columns(x).any() or ksg.tied_columns(y).any()) else counts
        if not point_masses and intrinsic_dimension(torch.cat([x, y], dim=1)) <= MAX_KSG_DIMENSION:
            return "ksg", reusable
        if copula_is_singular(a, b):
            return "ksg", reusable
        return ("gcmi", None) if point_masses else ("larger", reusable)


def symbols(x, k):
    """Ids (N,) of the distinct rows of x where x is discrete, else None. Discrete: at most sqrt(N)
    distinct rows (at any scale: a constant side, a few classes), or integer entries (class ids, one-hot
    rows, counts) whose distinct rows repeat more than k times on average. Rounded measurements (0.01
    steps) have many distinct non-integer values and stay continuous."""
    distinct, ids = torch.unique(x, dim=0, return_inverse=True)
    count, n = distinct.shape[0], x.shape[0]
    if count * count <= n:
        return ids
    integer = not x.is_floating_point() or bool((x == x.round()).all())
    return ids if integer and count * (k + 1) <= n else None


def plug_in_mi(ids_a, ids_b):
    """Plug-in MI (nats, float64) of two symbol sequences: H(A) + H(B) - H(A, B) of their counts."""
    return entropy(ids_a) + entropy(ids_b) - entropy(ids_a * (int(ids_b.max()) + 1) + ids_b)


def copula_is_singular(a, b):
    """Whether GCMI would have to shrink a singular joint of normal scores (gcmi.GCMI.from_scores)."""
    return GCMI().from_scores(whitened(normal_scores(a)), whitened(normal_scores(b)))[1] is not None


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
