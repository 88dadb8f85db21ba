"""Kraskov-Stoegbauer-Grassberger kNN MI (KSG, algorithm 1; Kraskov et al. 2004, eq. 8; docs/design.md, "KSG"):

    I = psi(k) + psi(N) - < psi(n_a(i) + 1) + psi(n_b(i) + 1) >_i

eps_i = the k-th smallest joint distance max(|a_i - a_j|_inf, |b_i - b_j|_inf) over j != i, and
n_a(i) = #{j != i : |a_i - a_j|_inf < eps_i} (strictly inside), n_b(i) likewise. Not differentiable.

Ties: duplicate rows count as separate neighbours, so a row with k or more exact duplicates gets
eps_i = 0 and n_a(i) = n_b(i) = 0; and a marginal neighbour at exactly eps_i is left out of the strict
counts (quantised data: 0.62 nats for a pair with 0.51 rounded to 0.01, N = 2000). The KSG paper
assumes continuous data and prescribes adding low-amplitude noise to break ties. By default we compute
the definition exactly and warn where a column repeats values; jitter= adds jitter x N(0, 1) to every
standardised column that repeats one (a fixed-seed generator: the same noise on every call and device;
continuous columns are untouched), as scikit-learn and NPEET do by default with 1e-10.

Paths, all on the same float64 distances (so the same numbers, ties included): on the CPU at low joint
dimension scipy's cKDTree (a one-column side by binary searches in its sorted values); otherwise brute
force over (row tile, column tile) pairs, the torch tile walk or the Triton kernels, with pruning that
cannot change the result: rows are put in k-d order (recursive median splits on the widest dimension),
each tile gets its bounding box, and a column tile is skipped when the max-norm gap between its box and
the row tile's box is >= every eps_i of the row tile (no pair inside can be strictly closer). Float
subtraction is monotone, so the gap computed in floating point is a true lower bound of every
computed distance. Memory O(N * (Da + Db + k + tile)).
"""
import math

import numpy as np
import torch

from .. import kernels
from ..bandwidth import column_std
from ..inputs import check_int, check_number
from ..warn import warn_user
from .base import Estimator, class_side, entropy, estimate_and_null, permuted_b

ORDER_TILE = 64  # rows per k-d leaf and per tile of the pruning boxes (the torch tile walk)
TRITON_TILE = 32  # the same for the Triton kernels: float64 64 x 64 tiles spill (static GPU report), 32 x 32 do not
TORCH_ROW_TILES = 2  # the torch path works on 2 leaves (128 rows) at a time
# CPU crossover, measured (docs/estimators.md, "kNN estimator"): scipy's cKDTree is faster than the tiles up to
# this joint dimension Da + Db at N rows; in between and beyond, linear in log N.
TREE_CROSSOVER = ((200, 4), (2_000, 7), (20_000, 13), (100_000, 20))
# mi_test on the tile path keeps both sides' N x N distances, their sorted copies and a joint matrix (with
# kthvalue's copy: NULL_COPIES matrices of float64) up to NULL_BYTES: N <= 2364
NULL_BYTES, NULL_COPIES = 256 << 20, 6
DISTANCE_BLOCK_BYTES = 64 << 20  # the broadcast differences max_norm_distances holds at a time


class KSG(Estimator):
    """estimator="ksg": k (the number of nearest neighbours, 1 <= k < N); columns are scaled to unit
    variance first. A side of integer class ids (N,) takes Ross's estimator (ross_mi). Not
    differentiable; no group=."""
    name = "ksg"
    triton_kernels = True
    supports_group = False
    nan_blind = True
    takes_symbols = True  # integer class ids (N,) on one side: Ross 2014

    def __init__(self, *, k=3, jitter=0.0):
        self.k = check_int(k, "k", 1)
        self.jitter = check_number(jitter, "jitter", 0.0)

    @torch.no_grad()
    def __call__(self, a, b, backend, shard):
        """KSG MI in nats of standardised a, b: a 0-d float64 tensor without gradient."""
        self._check_rows(a.shape[0])
        if class_side(a, b, self.name) is not None:
            return self.with_null(a, b, [], backend)[0]
        return from_counts(*neighbour_counts(*self._operands(a, b), self.k, backend), self.k)

    @torch.no_grad()
    def pointwise(self, a, b, backend, shard):
        """(N,) per-row terms psi(k) + psi(N) - psi(n_a,i + 1) - psi(n_b,i + 1) of continuous a, b, whose mean
        is the estimate: a decomposition of KSG's sum, not a per-sample MI in the strict sense."""
        self._check_rows(a.shape[0])
        if class_side(a, b, self.name) is not None:
            raise TypeError("pointwise_mi(estimator='ksg') takes continuous sides; for class ids use layer_mi "
                            "(Ross's estimator has no per-row decomposition here)")
        eps, na, nb = neighbour_counts(*self._operands(a, b), self.k, backend)
        _warn_if_duplicates(eps, self.k)
        return _constant(self.k, eps) - torch.special.digamma(na.double() + 1) - torch.special.digamma(nb.double() + 1)

    def _operands(self, a, b):
        """a and b standardised, their tied columns jittered (jitter > 0) or warned about (jitter = 0)."""
        x, y = standardized(a), standardized(b)
        if self.jitter > 0:
            return broken_ties(x, self.jitter, seed=0), broken_ties(y, self.jitter, seed=1)
        if bool(tied_columns(x).any()) or bool(tied_columns(y).any()):
            warn_user("KSG: columns repeat values (quantised, discrete or ReLU data): a neighbour at exactly the "
                      "k-th distance is left out of KSG's counts and point masses count as neighbours, which "
                      "biases it (a pair rounded to 0.01: 0.62 nats for 0.51). Pass jitter=1e-10 to break the "
                      "ties (as scikit-learn and NPEET do), or use estimator='auto'")
        return x, y

    @torch.no_grad()
    def with_null(self, a, b, permutations, backend):
        """The estimate and the estimates with b's rows permuted (mi_test). a and b are standardised once;
        on the tree path a permutation of b's rows leaves both marginal point sets as they are, so their
        trees are built once and, after the first permutation, each row's nearest marginal distances
        are listed once: a marginal count is then a binary search, and only the joint search is redone."""
        self._check_rows(a.shape[0])
        labelled = class_side(a, b, self.name)
        if labelled is not None:
            continuous, ids, ids_are_a = labelled
            return self.ross_with_null(self.continuous_side(continuous), ids, ids_are_a, permutations, backend)
        k, (x, y) = self.k, self._operands(a, b)
        if uses_tree(x, y, backend):
            return self._tree_null(x, y, permutations)
        if NULL_COPIES * x.shape[0] ** 2 * 8 <= NULL_BYTES:
            return self._matrix_null(x, y, permutations)
        null = [from_counts(*neighbour_counts(x, y[p], k, backend), k, warn=False) for p in permutations]
        return from_counts(*neighbour_counts(x, y, k, backend), k), torch.stack(null) if null else None

    def continuous_side(self, x):
        """The continuous side facing class ids: standardised, its tied columns jittered where jitter > 0."""
        x = standardized(x)
        return broken_ties(x, self.jitter, seed=0) if self.jitter > 0 else x

    def ross_with_null(self, x, ids, ids_are_a, permutations, backend):
        """(Ross's estimate, its estimates with b's rows permuted or None) for x (continuous_side) and ids."""
        return estimate_and_null(lambda rows: self.ross_mi(*permuted_b(x, ids, ids_are_a, rows), backend),
                                 permutations)

    def ross_mi(self, x, ids, backend):
        """Ross's kNN estimate of I(x; y) for class ids y (N,) and standardised x (Ross 2014, PLoS ONE
        9:e87357; scikit-learn's mutual_info_classif), at most the plug-in entropy of the classes used: KSG
        with the ids as one column scaled past every distance of x, so a row's k-th joint neighbour is the
        k-th of its own class and KSG's marginal counts are Ross's m_i - 1 and N_y - 1. Rows of classes of
        k or fewer rows are left out (a class needs k other rows), as scikit-learn leaves out singletons."""
        sizes = torch.bincount(ids)
        kept = sizes[ids] > self.k
        x, ids = x[kept], ids[kept]
        if ids.numel() <= self.k or int(ids.unique().numel()) < 2:
            return torch.zeros((), dtype=torch.float64, device=x.device)
        span = float((x.max(0).values - x.min(0).values).max()) + 1.0  # past every max-norm distance of x
        classes = (ids.double() * span)[:, None]
        estimate = from_counts(*neighbour_counts(x, classes, self.k, backend), self.k)
        return torch.minimum(estimate, entropy(ids))

    def _tree_null(self, x, y, permutations):
        k, sides = self.k, (Marginal(x), Marginal(y))
        estimate, null = from_counts(*tree_counts(x, y, k, sides), k), []
        for p in permutations:
            counts = tree_counts(x, y, k, sides, p.cpu())
            if not null:
                for side, n in zip(sides, counts[1:]):
                    side.list_nearest(n)
            null.append(from_counts(*counts, k, warn=False))
        return estimate, torch.stack(null) if null else None

    def _matrix_null(self, x, y, permutations):
        """The tile path's null from both sides' N x N max-norm distances, computed once: a permutation p
        only reorders y's, so eps_i is the k-th smallest of max(dx_ij, dy_{p_i p_j}) and the strict counts
        are binary searches in each row's sorted distances (the self-distance 0 first). The same float64
        distances as the tiles: the same numbers, O(N^2) per permutation instead of O(N^2 (Da + Db))."""
        dx, dy = max_norm_distances(x), max_norm_distances(y)
        sorted_dx, sorted_dy = dx.sort(dim=1).values, dy.sort(dim=1).values
        diagonal = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)

        def counts(p):
            joint = torch.maximum(dx, dy if p is None else dy[p][:, p]).masked_fill_(diagonal, math.inf)
            eps = joint.kthvalue(self.k, dim=1).values
            n_a = torch.searchsorted(sorted_dx, eps[:, None]).squeeze(1) - 1
            n_b = torch.searchsorted(sorted_dy if p is None else sorted_dy[p], eps[:, None]).squeeze(1) - 1
            return eps, torch.where(eps > 0, n_a, 0), torch.where(eps > 0, n_b, 0)

        null = [from_counts(*counts(p.to(x.device)), self.k, warn=False) for p in permutations]
        return from_counts(*counts(None), self.k), torch.stack(null) if null else None

    def _check_rows(self, n):
        if self.k >= n:
            raise ValueError(f"KSG needs k < N (each row's k nearest other rows), got k = {self.k} with N = {n}")


def neighbour_counts(x, y, k, backend):
    """(eps, n_a, n_b) per row of standardised x, y, in their row order: the Triton kernels, or on the CPU
    scipy's cKDTree (low joint dimension: it prunes per point) or the tiled brute force (high: trees stop
    pruning). All compute the same float64 max-norm distances, so they give the same numbers, ties
    included."""
    if uses_tree(x, y, backend):
        return tree_counts(x, y, k)
    # the tiles walk rows in k-d order; the counts go back to the rows' own order (pointwise_mi pairs them)
    if backend == "triton":
        ordered_x, ordered_y, boxes, order = in_kd_order(x, y, TRITON_TILE)
        try:
            return in_row_order(kernels.ksg.neighbour_counts(ordered_x, ordered_y, k, TRITON_TILE, boxes), order)
        except kernels.KernelUnavailable:
            pass  # this triton cannot build the kernels (warned once): the torch path below
    ordered_x, ordered_y, boxes, order = in_kd_order(x, y, ORDER_TILE)
    return in_row_order(neighbour_counts_torch(ordered_x, ordered_y, k, boxes), order)


def in_row_order(values, order):
    """Per-row tensors computed on rows in `order` (row i of them is input row order[i]), in input order."""
    return tuple(torch.empty_like(v).index_copy_(0, order, v) for v in values)


def max_norm_distances(v):
    """N x N float64 max-norm distances |v_i - v_j|_inf, rows a block at a time (DISTANCE_BLOCK_BYTES)."""
    n, d = v.shape
    block = max(1, DISTANCE_BLOCK_BYTES // (8 * n * d))
    return torch.cat([(v[i:i + block, None, :] - v[None, :, :]).abs().amax(dim=2) for i in range(0, n, block)])


def tied_columns(x):
    """(D,) bool: which columns of x repeat a value."""
    ordered = x.sort(dim=0).values
    return (ordered[1:] == ordered[:-1]).any(dim=0) if x.shape[0] > 1 else torch.zeros(x.shape[1], dtype=torch.bool)


def broken_ties(x, jitter, seed):
    """Standardised x with jitter x N(0, 1) added to each column that repeats a value (a generator seeded
    with `seed`, on the CPU: the same noise on every device); x itself where no column does."""
    tied = tied_columns(x)
    if not bool(tied.any()):
        return x
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype).to(x.device)
    return x + jitter * noise * tied.to(x.dtype)


def standardized(x):
    """x / per-column std in float64 (every back-end then computes the same distances; float32 inputs
    are exact in float64); constant columns are left as they are."""
    x = x.double()
    return x / column_std(x)


def uses_tree(x, y, backend):
    """Whether the CPU tree path is the faster one for these inputs (TREE_CROSSOVER)."""
    return backend != "triton" and not x.is_cuda and x.shape[1] + y.shape[1] <= tree_max_dim(x.shape[0])


def tree_max_dim(n):
    """The largest joint dimension at which the tree beats the tiles at n rows (TREE_CROSSOVER)."""
    segments = list(zip(TREE_CROSSOVER[:-1], TREE_CROSSOVER[1:]))
    (n0, d0), (n1, d1) = next((s for s in segments if n < s[1][0]), segments[-1])
    return d0 + (d1 - d0) * math.log(n / n0) / math.log(n1 / n0)


def tree_counts(x, y, k, sides=None, rows=None):
    """(eps, n_a, n_b) per row of (x, y[rows]) with scipy's cKDTree (max-norm, float64, all cores): eps_i
    from row i's k + 1 nearest joint neighbours (itself among them); sides: the Marginal of x and of y to
    reuse (rows: a permutation of y's rows, None for y as it is)."""
    from scipy.spatial import cKDTree
    sides = sides or (Marginal(x), Marginal(y))
    joint = np.hstack([x.cpu().numpy(), (y if rows is None else y[rows]).cpu().numpy()])
    eps = torch.from_numpy(cKDTree(joint).query(joint, k=k + 1, p=np.inf, workers=-1)[0][:, -1].copy())
    counts = sides[0].counts(eps), sides[1].counts(eps, rows)
    return tuple(v.to(x.device) for v in (eps, *counts))


class Marginal:
    """One side's standardised points, for strict counts n_i = #{j != i : |v_i - v_j|_inf < eps_i} (0 where
    eps_i = 0). One column: binary searches in the sorted values (sorted_counts). Several: scipy's
    cKDTree, a radius query per row at the largest float below eps_i; after list_nearest, a binary
    search in each row's sorted nearest distances where they reach eps_i (other rows ask the tree)."""
    LIST_BYTES = 64 * 2 ** 20  # the most the listed distances may take

    def __init__(self, v):
        from scipy.spatial import cKDTree
        self.points = v.cpu().numpy()
        one_column = self.points.shape[1] == 1
        self.sorted = np.sort(self.points[:, 0]) if one_column else None
        self.tree = None if one_column else cKDTree(self.points)
        self.nearest = None

    def list_nearest(self, counts):
        """Keep each row's m nearest distances (itself first), m sized from typical counts (1.5 x their
        99th percentile) when that fits LIST_BYTES."""
        n = self.points.shape[0]
        m = min(n, int(1.5 * float(torch.quantile(counts.double(), 0.99))) + 2)
        if self.tree is not None and n * m * 8 <= self.LIST_BYTES:
            self.nearest = torch.from_numpy(self.tree.query(self.points, k=m, p=np.inf, workers=-1)[0].reshape(n, m))

    def counts(self, eps, rows=None):
        """n per row, row i being point rows[i] (rows: None for the points in their order); eps: float64."""
        if rows is not None:  # per point, then back to the rows' order
            return self.counts(torch.empty_like(eps).index_copy_(0, rows, eps))[rows]
        if self.tree is None:
            n = torch.from_numpy(sorted_counts(self.sorted, self.points[:, 0], eps.numpy()))
        elif self.nearest is None:
            n = torch.from_numpy(self._ask_tree(self.points, eps))
        else:
            n = torch.searchsorted(self.nearest, eps[:, None]).squeeze(1) - 1  # strictly closer, less the row itself
            beyond = torch.nonzero(eps > self.nearest[:, -1]).squeeze(1)  # balls that may hold unlisted points
            if beyond.numel():
                n[beyond] = torch.from_numpy(self._ask_tree(self.points[beyond.numpy()], eps[beyond]))
        return torch.where(eps > 0, n, 0)

    def _ask_tree(self, points, eps):
        radius = np.nextafter(eps.numpy(), 0.0)
        return self.tree.query_ball_point(points, radius, p=np.inf, return_length=True, workers=-1) - 1


def sorted_counts(s, v, eps):
    """#{j : |fl(s_j - v_i)| < eps_i} - 1 per row (the row itself, v_i being among the sorted values s),
    eps > 0. Float subtraction is monotone, so the values inside are a run of s: binary searches at
    v -+ eps find it to within the values an ulp or two from the bound, which are then settled by
    their computed distance (equal values move together)."""
    below, above = np.searchsorted(s, v), np.searchsorted(s, v, "right")  # v's own run is inside
    lo = np.minimum(np.searchsorted(s, v - eps, "right"), below)
    hi = np.maximum(np.searchsorted(s, v + eps), above)
    hi = _step_over(s, v, eps, hi, 0, s.shape[0], inside=True)  # hi: the first value outside above v
    hi = _step_over(s, v, eps, hi, -1, above, inside=False)
    lo = _step_over(s, v, eps, lo, -1, 0, inside=True)  # lo: the first value inside below v
    lo = _step_over(s, v, eps, lo, 0, below, inside=False)
    return hi - lo - 1


def _step_over(s, v, eps, index, offset, limit, inside):
    """Move each index over whole runs of equal values while the value beside it (s[index + offset]:
    offset 0 the one at it, moving up; -1 the one below, moving down) is inside v's ball (inside=True)
    or outside it (False), never past limit."""
    side = "right" if offset == 0 else "left"
    while True:
        beside = np.clip(index + offset, 0, s.shape[0] - 1)
        movable = index < limit if offset == 0 else index > limit
        i = np.nonzero(movable & ((np.abs(s[beside] - v) < eps) == inside))[0]
        if i.size == 0:
            return index
        index[i] = np.searchsorted(s, s[beside[i]], side)


def prepared(x, y, tile=ORDER_TILE):
    """What the tile back-ends take: standardised x, y in k-d leaf order, and each `tile`-row tile's
    bounding box in x and in y: (x, y, (lo_x, hi_x, lo_y, hi_y))."""
    return in_kd_order(x, y, tile)[:3]


def in_kd_order(x, y, tile):
    """prepared()'s (x, y, boxes) and the order they are in (row i of them is input row order[i])."""
    order = kd_order(torch.cat([x, y], 1), tile)
    x, y = x[order].contiguous(), y[order].contiguous()
    return x, y, (*tile_boxes(x, tile), *tile_boxes(y, tile)), order


def from_counts(eps, na, nb, k, warn=True):
    """KSG's formula from the per-row counts; warn=False for a permutation null (the estimate warns)."""
    n = eps.shape[0]
    if warn:
        _warn_if_duplicates(eps, k)
    return _constant(k, eps) - (_digamma_sum(na) + _digamma_sum(nb)) / n


def _warn_if_duplicates(eps, k):
    ties = int((eps == 0).sum())
    if ties:
        warn_user(f"KSG: {ties} of {eps.shape[0]} rows have k = {k} or more exact duplicates (eps = 0); KSG assumes "
                  "continuous data: add low-amplitude noise, e.g. x + 1e-6 * x.std() * torch.randn_like(x)")


def _constant(k, eps):
    """psi(k) + psi(N), N the rows of eps, in float64 on eps's device."""
    return torch.special.digamma(torch.tensor([k, eps.shape[0]], dtype=torch.float64, device=eps.device)).sum()


def _digamma_sum(counts):
    """sum_i psi(counts_i + 1), from the histogram of the counts: the same float however the rows are
    ordered (each back-end walks them in its own order)."""
    values = torch.special.digamma(torch.arange(1, int(counts.max()) + 2, dtype=torch.float64, device=counts.device))
    return (torch.bincount(counts.long(), minlength=values.shape[0]).double() * values).sum()


# ----------------------------------------------------------------------------- k-d order, boxes


def kd_order(z, tile):
    """Permutation putting rows in k-d leaf order: each segment longer than `tile` is split at a tile
    boundary near its middle along its widest dimension, so every tile of the result is one leaf."""
    n = z.shape[0]
    perm = torch.arange(n, device=z.device)
    segments = [(0, n)]
    while any(stop - start > tile for start, stop in segments):
        lengths = torch.tensor([stop - start for start, stop in segments], device=z.device)
        seg = torch.repeat_interleave(torch.arange(len(segments), device=z.device), lengths)
        zp = z[perm]
        index = seg[:, None].expand_as(zp)
        lo = torch.full((len(segments), z.shape[1]), math.inf, dtype=z.dtype, device=z.device)
        hi = torch.full_like(lo, -math.inf)
        widest = (hi.scatter_reduce(0, index, zp, "amax") - lo.scatter_reduce(0, index, zp, "amin")).argmax(1)
        key = zp.gather(1, widest[seg][:, None]).squeeze(1)
        within = torch.argsort(key, stable=True)
        within = within[torch.argsort(seg[within], stable=True)]
        perm = perm[within]
        segments = [half for start, stop in segments for half in _split(start, stop, tile)]
    return perm


def _split(start, stop, tile):
    if stop - start <= tile:
        return [(start, stop)]
    middle = start + tile * math.ceil((stop - start) / tile / 2)
    return [(start, middle), (middle, stop)]


def tile_boxes(x, tile):
    """(lo, hi), each (tiles, D): per-tile min and max of each column (the last tile may be short)."""
    n, d = x.shape
    tiles = math.ceil(n / tile)
    padded = torch.cat([x, x[-1:].expand(tiles * tile - n, d)]).view(tiles, tile, d)
    return padded.amin(1), padded.amax(1)


def box_gaps(lo, hi, rows):
    """(tiles,) max-norm lower bound of the distance between the row box (lo, hi)[rows] and each box."""
    row_lo, row_hi = lo[rows].amin(0), hi[rows].amax(0)
    return torch.maximum(lo - row_hi, row_lo - hi).clamp_min(0).amax(1)


# ------------------------------------------------------------------------------------ torch path


def neighbour_counts_torch(x, y, k, boxes):
    """(eps, n_a, n_b) per row of prepared() x, y, boxes: the torch back-end, TORCH_ROW_TILES row tiles at a time.

    Per block: an upper bound of every eps_i from the neighbouring tiles; the column tiles within it
    in the joint space give eps, those within it in a's (b's) space give n_a (n_b). Where the three
    sets are nearly the same (high dimension) one pass over their union is cheaper: it is taken."""
    n = x.shape[0]
    lo_x, hi_x, lo_y, hi_y = boxes
    tiles = lo_x.shape[0]
    eps = torch.empty(n, dtype=x.dtype, device=x.device)
    na = torch.empty(n, dtype=torch.int64, device=x.device)
    nb = torch.empty_like(na)
    for first in range(0, tiles, TORCH_ROW_TILES):
        block = torch.arange(first, min(first + TORCH_ROW_TILES, tiles), device=x.device)
        rows = torch.arange(first * ORDER_TILE, min((first + TORCH_ROW_TILES) * ORDER_TILE, n), device=x.device)
        near = _columns(torch.arange(max(0, first - 1), min(tiles, first + TORCH_ROW_TILES + 1)), n)
        near = near if near.numel() > k else torch.arange(n)
        bound = _kth_smallest(torch.maximum(*_distances(x, y, rows, near.to(x.device))), k).max()  # >= every eps_i
        near_x = (box_gaps(lo_x, hi_x, block) <= bound).cpu()
        near_y = (box_gaps(lo_y, hi_y, block) <= bound).cpu()
        joint, either = near_x & near_y, near_x | near_y
        if 2 * int(either.sum()) <= 2 * int(joint.sum()) + int(near_x.sum()) + int(near_y.sum()):
            dx, dy = _distances(x, y, rows, _tile_columns(either, n, x.device))
            e = _kth_smallest(torch.maximum(dx, dy), k)[:, None]
        else:
            e = _kth_smallest(torch.maximum(*_distances(x, y, rows, _tile_columns(joint, n, x.device))), k)[:, None]
            dx = _distances(x, None, rows, _tile_columns(near_x, n, x.device))[0]
            dy = _distances(y, None, rows, _tile_columns(near_y, n, x.device))[0]
        eps[rows] = e[:, 0]
        na[rows] = (dx < e).sum(1, dtype=torch.int32).long()
        nb[rows] = (dy < e).sum(1, dtype=torch.int32).long()
    return eps, na, nb


def _tile_columns(selected, n, device):
    return _columns(torch.nonzero(selected).flatten(), n).to(device)


def _columns(tiles, n):
    """Row indices of the given tiles (a CPU index tensor)."""
    columns = (tiles[:, None] * ORDER_TILE + torch.arange(ORDER_TILE)).flatten()
    return columns[columns < n]


def _distances(x, y, rows, columns):
    """Max-norm distances (rows x columns) in a's space and b's (y=None: a's only), +inf for a row
    against itself. columns: ascending."""
    at = torch.searchsorted(columns, rows).clamp_max(columns.numel() - 1)
    own = torch.nonzero(columns[at] == rows).flatten()  # rows that appear among the columns
    out = []
    for v in (x, y) if y is not None else (x,):
        d = torch.cdist(v[rows], v[columns], p=float("inf"))
        d[own, at[own]] = float("inf")
        out.append(d)
    return out


def _kth_smallest(d, k):
    return torch.topk(d, k, dim=1, largest=False).values[:, -1]
