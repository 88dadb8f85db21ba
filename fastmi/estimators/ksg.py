"""Kraskov-Stoegbauer-Grassberger kNN MI (KSG, algorithm 1; Kraskov et al. 2004, eq. 8; docs/design.md, "KSG"):

    I = psi(k) + psi(N) - < psi(n_a(i) + 1) + psi(n_b(i) + 1) >_i

eps_i = the k-th smallest joint distance max(|a_i - a_j|_inf, |b_i - b_j|_inf) over j != i, and
n_a(i) = #{j != i : |a_i - a_j|_inf < eps_i} (strictly inside), n_b(i) likewise. Not differentiable.

Ties: duplicate rows count as separate neighbours, so a row with k or more exact duplicates gets
eps_i = 0 and n_a(i) = n_b(i) = 0. The KSG paper assumes continuous data and prescribes adding
low-amplitude noise to break ties; we compute the definition exactly and warn when eps_i = 0 occurs.

Both back-ends are brute force over (row tile, column tile) pairs with pruning that cannot change the
result: rows are put in k-d order (recursive median splits on the widest dimension), each tile gets
its bounding box, and a column tile is skipped when the max-norm gap between its box and the row
tile's box is >= every eps_i of the row tile (no pair inside can be strictly closer). Float
subtraction is monotone, so the gap computed in floating point is a true lower bound of every
computed distance. Memory O(N * (Da + Db + tile)).
"""
import math

import torch

from .. import kernels
from ..bandwidth import column_std
from ..warn import warn_user
from .base import Estimator

ORDER_TILE = 64  # rows per k-d leaf and per tile of the pruning boxes (the Triton tile)
TORCH_ROW_TILES = 2  # the torch path works on 2 leaves (128 rows) at a time


class KSG(Estimator):
    """estimator="ksg": k (the number of nearest neighbours, 1 <= k < N); columns are scaled to unit
    variance first. Not differentiable; no group=."""
    name = "ksg"
    supports_group = False
    nan_blind = True

    def __init__(self, *, k=3):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        self.k = k

    @torch.no_grad()
    def __call__(self, a, b, backend, shard):
        """KSG MI in nats of standardised a, b: a 0-d float64 tensor without gradient."""
        k, n = self.k, a.shape[0]
        if k >= n:
            raise ValueError(f"KSG needs k < N (each row's k nearest other rows), got k = {k} with N = {n}")
        x, y, boxes = prepared(a, b)
        if backend == "triton":
            eps, na, nb = kernels.ksg.neighbour_counts(x, y, k, ORDER_TILE, boxes)
        else:
            eps, na, nb = neighbour_counts_torch(x, y, k, boxes)
        return from_counts(eps, na, nb, k)


def standardized(x):
    """x / per-column std (float32, or float64 for float64 input); constant columns are left as they are."""
    x = x.double() if x.dtype == torch.float64 else x.float()
    return x / column_std(x)


def prepared(a, b, tile=ORDER_TILE):
    """What both back-ends take: standardised a, b (x, y) in k-d leaf order, and each `tile`-row
    tile's bounding box in x and in y: (x, y, (lo_x, hi_x, lo_y, hi_y))."""
    x, y = standardized(a), standardized(b)
    order = kd_order(torch.cat([x, y], 1), tile)
    x, y = x[order].contiguous(), y[order].contiguous()
    return x, y, (*tile_boxes(x, tile), *tile_boxes(y, tile))


def from_counts(eps, na, nb, k):
    n = eps.shape[0]
    ties = int((eps == 0).sum())
    if ties:
        warn_user(f"KSG: {ties} of {n} rows have k = {k} or more exact duplicates (eps = 0); KSG assumes "
                  "continuous data: add low-amplitude noise, e.g. x + 1e-6 * x.std() * torch.randn_like(x)")
    digamma = torch.special.digamma
    terms = digamma(na.double() + 1) + digamma(nb.double() + 1)
    constant = digamma(torch.tensor([k, n], dtype=torch.float64, device=eps.device)).sum()
    return constant - terms.mean()


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
