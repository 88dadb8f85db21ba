"""The one pass behind HSIC, CKA and distance correlation (docs/design.md, "Dependence measures"): for
L layers x^1..x^L (N rows each) and their pair matrices P^m_ij = p(x^m_i, x^m_j) of one kind,

    S[m, m'] = sum_ij P^m_ij P^m'_ij   (m <= m'; S is symmetric)        R[m] = P^m 1   (row sums)

(diagonal included), in tiles of at most ROWS x CHUNK pairs, each unordered pair computed once (the
tiles at and right of the diagonal), each layer's tile once per tile whatever L: memory
O(N sum_m D_m + L ROWS CHUNK), no N x N buffer forward or backward. Kinds: "rbf", p = exp(-gamma_m
||x_i - x_j||^2) (gamma = 1 / (2 sigma^2)); "distance", p = ||x_i - x_j|| (0 on the diagonal and for
duplicate rows). HSIC, CKA and distance correlation of two inputs are L = 2; cka_matrix is any L.

Backward (the measures are torch formulas of S and R, so autograd hands back g_S and g_R): P^m is
symmetric and P^m_kj depends on x^m_k through dP^m_kj/dx^m_k = p'_kj (x^m_k - x^m_j), with p' = -2 gamma P
(rbf) or 1 / P (distance; 0 where P = 0, as torch.cdist defines it). With G = g_S + g_S^T and summing
the (k, j) and (j, k) terms,

    dL/dx^m_k = sum_j W_kj (x^m_k - x^m_j),  W_kj = (2 sum_m' G[m, m'] P^m'_kj + g_R[m, k] + g_R[m, j]) p'_kj

= x_k (W 1)_k - (W x)_k: one GEMM per tile and its transpose for the mirrored pairs (W is symmetric),
after recomputing the tile's P^1..P^L. Sums accumulate in float64; tiles are computed in the inputs'
dtype (float32 or float64).
"""
import torch

from ..estimators.kde_torch import Layer, _neg_sq_dist

ROWS = 128  # rows per tile
CHUNK = 1 << 13  # columns per tile: a tile is at most 1M pairs per layer


class GramSums(torch.autograd.Function):
    """(S (L, L), R (L, N)), float64, of the layers side by side in x (columns offsets[m]:offsets[m+1]),
    one floating dtype; gammas: the rbf scales 1 / (2 sigma_m^2) (constants), unused for "distance".

    Under torch.distributed (shard not None): x is this rank's rows and x_all every rank's (gathered,
    detached); the rank sums its own rows against every column and S, R are all-reduced, so every rank
    holds the global sums, computes the same formula of them and so receives the same g_S, g_R: its
    backward, over its own rows against every column, is the global gradient for its rows."""

    @staticmethod
    def forward(ctx, x, x_all, offsets, kind, gammas, shard):
        x_all = x if shard is None else x_all
        n, count = x_all.shape[0], len(offsets) - 1
        sums = torch.zeros((count, count), dtype=torch.float64, device=x.device)
        rows = torch.zeros((count, n), dtype=torch.float64, device=x.device)
        layers = _layers(x_all, offsets)
        upper = torch.triu_indices(count, count).T.tolist()
        for tile in _tiles(n, None if shard is None else shard.rows):
            lo, hi, c0, c1, below = tile
            pairs = torch.stack([_pair_tile(layer, tile, kind, gamma) for layer, gamma in zip(layers, gammas)])
            for m, k in upper:
                product = pairs[m] * pairs[k]
                # columns before `below` lie in the block's own rows (both orders there); the rest count twice
                sums[m, k] += (product[:, :below - c0].sum(dtype=torch.float64)
                               + 2 * product[:, below - c0:].sum(dtype=torch.float64))
            rows[:, lo:hi] += pairs.sum(2, dtype=torch.float64)
            rows[:, below:c1] += pairs[:, :, below - c0:].sum(1, dtype=torch.float64)
        sums = sums + sums.triu(1).T
        if shard is not None:
            sums, rows = shard.sum(sums), shard.sum(rows)
        ctx.save_for_backward(x_all)
        ctx.offsets, ctx.kind, ctx.gammas, ctx.shard = offsets, kind, gammas, shard
        return sums, rows

    @staticmethod
    def backward(ctx, g_sums, g_rows):
        (x,) = ctx.saved_tensors
        n, dtype, shard = x.shape[0], x.dtype, ctx.shard
        grad = torch.zeros_like(x)
        layers = _layers(x, ctx.offsets)
        mixing = (2 * (g_sums + g_sums.T)).to(dtype)  # 2 G
        g_rows = g_rows.to(dtype)
        for tile in _tiles(n, None if shard is None else shard.rows):
            lo, hi, c0, c1, below = tile
            pairs = torch.stack([_pair_tile(layer, tile, ctx.kind, gamma) for layer, gamma in zip(layers, ctx.gammas)])
            weights = torch.einsum("ml,lij->mij", mixing, pairs)
            weights += g_rows[:, lo:hi, None] + g_rows[:, None, c0:c1]
            for m, (layer, gamma, (start, stop)) in enumerate(zip(layers, ctx.gammas, _spans(ctx.offsets))):
                weight = weights[m].mul_(_derivative_factor(pairs[m], ctx.kind, gamma))
                own = grad[:, start:stop]
                own[lo:hi] += layer.x[lo:hi] * weight.sum(1, keepdim=True) - weight @ layer.x[c0:c1]
                mirrored = weight[:, below - c0:]  # W is symmetric: these pairs' (j, k) terms
                own[below:c1] += layer.x[below:c1] * mirrored.sum(0)[:, None] - mirrored.T @ layer.x[lo:hi]
        return (grad if shard is None else grad[slice(*shard.rows)]), None, None, None, None, None


def gram_sums(layers, kind, gammas=None, shard=None, everys=None):
    """GramSums of a list of (N, D_m) tensors of one dtype: (S (L, L), R (L, N)), differentiable. Under a
    shard, layers are this rank's rows and everys every rank's (detached); S and R are the global ones."""
    offsets = [0]
    for layer in layers:
        offsets.append(offsets[-1] + layer.shape[1])
    gammas = tuple(gammas) if gammas is not None else (0.0,) * len(layers)
    x_all = None if shard is None else torch.cat(everys, dim=1)
    return GramSums.apply(torch.cat(layers, dim=1), x_all, offsets, kind, gammas, shard)


def _spans(offsets):
    return list(zip(offsets[:-1], offsets[1:]))


def _layers(x, offsets):
    return [Layer(x[:, start:stop]) for start, stop in _spans(offsets)]


def _tiles(n, rows=None):
    """(lo, hi, c0, c1, below): row blocks lo:hi against column chunks of lo:N (pair terms are symmetric:
    the columns from `below` = max(hi, c0) on stand for their mirrored pairs too; those before it lie in
    the block's own rows, whose both orders the tile holds). With rows = (start, stop), a shard's: its
    row blocks against every column, nothing mirrored (below = c1)."""
    start, stop = rows or (0, n)
    for lo in range(start, stop, ROWS):
        hi = min(lo + ROWS, stop)
        for c0 in range(0 if rows else lo, n, CHUNK):
            c1 = min(c0 + CHUNK, n)
            yield lo, hi, c0, c1, c1 if rows else max(hi, c0)


def _pair_tile(layer, tile, kind, gamma):
    """The tile's P: exp(-gamma d^2) or d from the KDE back-end's -d^2 (one GEMM, clamped at 0, exactly 0 on
    the diagonal)."""
    lo, hi, c0, c1, _ = tile
    t = _neg_sq_dist(layer, tile[:4], False, layer.x.new_empty((hi - lo, c1 - c0)))
    return t.mul_(gamma).exp_() if kind == "rbf" else t.neg_().sqrt_()


def _derivative_factor(p, kind, gamma):
    """p' of the module docstring: dP_kj/dx_k = p'_kj (x_k - x_j)."""
    if kind == "rbf":
        return p * (-2.0 * gamma)
    return torch.where(p > 0, 1.0 / p, torch.zeros_like(p))
