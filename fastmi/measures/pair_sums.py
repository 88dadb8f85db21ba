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

Back-ends: "torch" is the tile walk above. "triton" (kernels/gram.py) takes the layers in pairs (a, b):
every ordered pair of rows (nothing mirrored), per-tile sums in float32 added across tiles in float64,
each layer's own terms (R, S[m, m], G[m, m], g_R[m]) from the one launch that owns it, so with L > 2 a
layer's tiles are computed L - 1 times; operands in the inputs' dtype (fp16/bf16 as they are), RBF ones
scaled so that a kernel is one exp2. Both run behind custom ops while torch.compile traces.
"""
import math

import torch

from .. import kernels
from ..backend import op_or_function, opaque
from ..estimators import kde_torch
from ..estimators.kde_torch import Layer, neg_sq_dist

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
    def forward(ctx, x, x_all, offsets, kind, gammas, shard, backend, dtype, pairs):
        x_all = x if shard is None else x_all
        ctx.save_for_backward(x_all)
        ctx.offsets, ctx.kind, ctx.gammas, ctx.backend, ctx.dtype = offsets, kind, gammas, backend, dtype
        ctx.launches = _launch_pairs(len(offsets) - 1, pairs)
        ctx.rows = (0, x_all.shape[0]) if shard is None else shard.rows  # this process's rows
        sums = None
        if backend == "triton":
            try:
                sums, rows = triton_sums(_operands(x_all, offsets, kind, gammas, dtype), kind, ctx.rows, ctx.launches)
            except kernels.KernelUnavailable:  # this triton cannot build the kernel (warned once): torch
                ctx.backend = "torch"
        if sums is None:
            sums, rows = op_or_function(torch_sums_op, _torch_sums)(x_all, offsets, kind, list(gammas), *ctx.rows)
        if shard is not None:
            sums, rows = shard.sum(sums), shard.sum(rows)
        return sums, rows

    @staticmethod
    def backward(ctx, g_sums, g_rows):
        (x,) = ctx.saved_tensors
        mixing = 2 * (g_sums + g_sums.T)  # 2 G
        grad = None
        if ctx.backend == "triton":
            layers = _operands(x, ctx.offsets, ctx.kind, ctx.gammas, ctx.dtype)
            try:
                grad = triton_grads(layers, _scales(ctx.kind, ctx.gammas), ctx.kind, mixing, g_rows, ctx.rows,
                                    x.dtype, ctx.launches)
            except kernels.KernelUnavailable:
                pass  # this triton cannot build the kernel (warned once): the torch path
        if grad is None:
            grads_of = op_or_function(torch_grads_op, _torch_grads)
            grad = grads_of(x, ctx.offsets, ctx.kind, list(ctx.gammas), *ctx.rows, mixing, g_rows)
        return grad, None, None, None, None, None, None, None, None


def _torch_sums(x_all, offsets, kind, gammas, row_start, row_stop):
    """(S, R) float64 of rows row_start:row_stop in tiles (the module docstring), before any all-reduce."""
    n, count = x_all.shape[0], len(offsets) - 1
    sums = torch.zeros((count, count), dtype=torch.float64, device=x_all.device)
    rows = torch.zeros((count, n), dtype=torch.float64, device=x_all.device)
    layers = _layers(x_all, offsets)
    upper = torch.triu_indices(count, count).T.tolist()
    for tile, below in _tiles(n, row_start, row_stop):
        lo, hi, c0, c1 = tile
        pairs = torch.stack([_pair_tile(layer, tile, kind, gamma) for layer, gamma in zip(layers, gammas)])
        for m, k in upper:
            product = pairs[m] * pairs[k]
            # columns before `below` lie in the block's own rows (both orders there); the rest count twice
            sums[m, k] += (product[:, :below - c0].sum(dtype=torch.float64)
                           + 2 * product[:, below - c0:].sum(dtype=torch.float64))
        rows[:, lo:hi] += pairs.sum(2, dtype=torch.float64)
        rows[:, below:c1] += pairs[:, :, below - c0:].sum(1, dtype=torch.float64)
    return sums + sums.triu(1).T, rows


def _torch_grads(x, offsets, kind, gammas, row_start, row_stop, mixing, g_rows):
    """dL/dx of rows row_start:row_stop, tile by tile (the module docstring's backward)."""
    n, dtype = x.shape[0], x.dtype
    grad = torch.zeros_like(x)
    layers = _layers(x, offsets)
    mixing, g_rows = mixing.to(dtype), g_rows.to(dtype)
    for tile, below in _tiles(n, row_start, row_stop):
        lo, hi, c0, c1 = tile
        pairs = torch.stack([_pair_tile(layer, tile, kind, gamma) for layer, gamma in zip(layers, gammas)])
        weights = torch.einsum("ml,lij->mij", mixing, pairs)
        weights += g_rows[:, lo:hi, None] + g_rows[:, None, c0:c1]
        for m, (layer, gamma, (start, stop)) in enumerate(zip(layers, gammas, _spans(offsets))):
            weight = weights[m].mul_(_derivative_factor(pairs[m], kind, gamma))
            own = grad[:, start:stop]
            own[lo:hi] += layer.x[lo:hi] * weight.sum(1, keepdim=True) - weight @ layer.x[c0:c1]
            mirrored = weight[:, below - c0:]  # W is symmetric: these pairs' (j, k) terms
            own[below:c1] += layer.x[below:c1] * mirrored.sum(0)[:, None] - mirrored.T @ layer.x[lo:hi]
    return grad[row_start:row_stop]


def gram_sums(layers, kind, gammas=None, shard=None, everys=None, backend="torch", dtype=None, pairs=None):
    """GramSums of a list of (N, D_m) tensors of one dtype: (S (L, L), R (L, N)), differentiable. Under a
    shard, layers are this rank's rows and everys every rank's (detached); S and R are the global ones.
    backend: "torch" (tiles above) or "triton" (kernels/gram.py; operands in `dtype`, default the layers').
    pairs: the (m, m') whose S[m, m'] the caller needs (default every pair; each layer in one at least):
    the Triton path launches only those (the torch path's tiles give every pair at no extra exp)."""
    offsets = [0]
    for layer in layers:
        offsets.append(offsets[-1] + layer.shape[1])
    gammas = tuple(gammas) if gammas is not None else (0.0,) * len(layers)
    x_all = None if shard is None else torch.cat(everys, dim=1)
    return GramSums.apply(torch.cat(layers, dim=1), x_all, offsets, kind, gammas, shard, backend,
                          dtype or layers[0].dtype, None if pairs is None else tuple(map(tuple, pairs)))


def triton_sums(operands, kind, rows, launches):
    """(S, R) float64 of rows start:stop of the kernels' operands (one per layer), from one row_sums launch
    per layer pair (a, b) of `launches` (_launch_pairs): each layer's R and S[m, m] from the pair that owns it."""
    count, n = len(operands), operands[0].shape[0]
    sums = torch.zeros((count, count), dtype=torch.float64, device=operands[0].device)
    row_sums = torch.zeros((count, n), dtype=torch.float64, device=operands[0].device)
    start, stop = rows
    for a, b, owns_a, owns_b in launches if stop > start else ():  # a shard may have no rows
        out = op_or_function(row_sums_op, _row_sums)(operands[a], operands[b], kind == "distance", start, stop).double()
        sums[a, b] = sums[b, a] = out[3].sum()
        if owns_a:
            row_sums[a, start:stop], sums[a, a] = out[0], out[2].sum()
        if owns_b:
            row_sums[b, start:stop], sums[b, b] = out[1], out[4].sum()
    return sums, row_sums


def triton_grads(operands, scales, kind, mixing, g_rows, rows, dtype, launches):
    """dL/dx (rows start:stop, the layers side by side, `dtype`) from g_S, g_R as 2G = mixing and g_rows:
    per layer pair one pair_grads launch, each layer's own terms (G[m, m], g_R[m]) in the pair that owns it.
    rbf: the kernels differentiate exp2(-|x_s,k - x_s,j|^2) of the scaled operands x_s = x * scale, so
    p' = -2 ln2 P there and dL/dx = scale * dL/dx_s."""
    slope = -2.0 * math.log(2.0) if kind == "rbf" else 1.0
    start, stop = rows
    widths = [x.shape[1] for x in operands]
    grads = [torch.zeros((stop - start, d), dtype=torch.float32, device=mixing.device) for d in widths]
    zero = torch.zeros_like(g_rows[0])
    for a, b, owns_a, owns_b in launches if stop > start else ():
        coefficients = torch.stack([mixing[a, a] * owns_a, mixing[a, b] * (a != b), mixing[b, b] * owns_b]) * slope
        factors = torch.stack([g_rows[a] if owns_a else zero, g_rows[b] if owns_b else zero]) * slope
        # W in units of its largest coefficient: the measures' scale (~1/N^2) would round fp16 MMA operands to 0
        unit = torch.cat([coefficients, factors.flatten()]).abs().amax().clamp_min(torch.finfo(torch.float32).tiny)
        grads_of = op_or_function(pair_grads_op, _pair_grads)
        ga, gb = grads_of(operands[a], operands[b], coefficients / unit, factors / unit, kind == "distance", start,
                          stop)
        grads[a] += ga * unit
        grads[b] += gb * unit
    return torch.cat([g * scale for g, scale in zip(grads, scales)], dim=1).to(dtype)


def _row_sums(x, y, distance, row_start, row_stop):
    return kernels.gram.row_sums(x, y, distance, rows=(row_start, row_stop))


def _pair_grads(x, y, coefficients, factors, distance, row_start, row_stop):
    return kernels.gram.pair_grads(x, y, coefficients, factors, distance, rows=(row_start, row_stop))


# The launches as custom ops while torch.compile / torch.export trace (opaque to them, as the KDE's are).
def _row_sums_shapes(x, y, distance, row_start, row_stop):
    return x.new_empty((kernels.gram.SUMS, row_stop - row_start), dtype=torch.float64)


@opaque("fastmi::gram_row_sums", _row_sums_shapes)
def row_sums_op(x: torch.Tensor, y: torch.Tensor, distance: bool, row_start: int, row_stop: int) -> torch.Tensor:
    return _row_sums(x, y, distance, row_start, row_stop)


def _pair_grads_shapes(x, y, coefficients, factors, distance, row_start, row_stop):
    rows = row_stop - row_start
    return x.new_empty((rows, x.shape[1]), dtype=torch.float32), y.new_empty((rows, y.shape[1]), dtype=torch.float32)


@opaque("fastmi::gram_pair_grads", _pair_grads_shapes)
def pair_grads_op(x: torch.Tensor, y: torch.Tensor, coefficients: torch.Tensor, factors: torch.Tensor, distance: bool,
                  row_start: int, row_stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    grads = _pair_grads(x, y, coefficients, factors, distance, row_start, row_stop)
    return tuple(g.clone(memory_format=torch.contiguous_format) for g in grads)  # dense, as the fake op says


def _torch_sums_shapes(x, offsets, kind, gammas, row_start, row_stop):
    count = len(offsets) - 1
    return x.new_empty((count, count), dtype=torch.float64), x.new_empty((count, x.shape[0]), dtype=torch.float64)


@opaque("fastmi::gram_torch_sums", _torch_sums_shapes)
def torch_sums_op(x: torch.Tensor, offsets: list[int], kind: str, gammas: list[float], row_start: int,
                  row_stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _torch_sums(x, offsets, kind, gammas, row_start, row_stop)


def _torch_grads_shapes(x, offsets, kind, gammas, row_start, row_stop, mixing, g_rows):
    return x.new_empty((row_stop - row_start, x.shape[1]))


@opaque("fastmi::gram_torch_grads", _torch_grads_shapes)
def torch_grads_op(x: torch.Tensor, offsets: list[int], kind: str, gammas: list[float], row_start: int, row_stop: int,
                   mixing: torch.Tensor, g_rows: torch.Tensor) -> torch.Tensor:
    return _torch_grads(x, offsets, kind, gammas, row_start, row_stop, mixing, g_rows).clone()  # no storage offset


def _launch_pairs(count, pairs=None):
    """[(a, b, whether the launch owns a's own terms, b's)] for `pairs` (default every a < b; one layer
    alone pairs with itself): the first launch with layer m owns it (its R, S[m, m], G[m, m], g_R[m])."""
    pairs = pairs or ([(0, 0)] if count == 1 else [(a, b) for a in range(count) for b in range(a + 1, count)])
    owned, launches = set(), []
    for a, b in pairs:
        launches.append((a, b, a not in owned, b not in owned and b != a))
        owned |= {a, b}
    if owned != set(range(count)):
        raise ValueError(f"pairs {list(pairs)} leave layers {sorted(set(range(count)) - owned)} out")
    return launches


def _scales(kind, gammas):
    """Per layer, the factor that turns it into a kernel operand: sqrt(gamma log2 e) (rbf: exp2(-|x_s|^2)
    is exp(-gamma |x|^2)), 1 (distance)."""
    return [math.sqrt(gamma / math.log(2.0)) if kind == "rbf" else 1.0 for gamma in gammas]


def _operands(x, offsets, kind, gammas, dtype):
    """The layers of x as the kernels' operands: scaled (_scales), contiguous, in `dtype`."""
    return [(x[:, start:stop] * scale).to(dtype).contiguous()
            for (start, stop), scale in zip(_spans(offsets), _scales(kind, gammas))]


def _spans(offsets):
    return list(zip(offsets[:-1], offsets[1:]))


def _layers(x, offsets):
    return [Layer(x[:, start:stop]) for start, stop in _spans(offsets)]


def _tiles(n, row_start, row_stop):
    """(tile, below) of the KDE back-end's tile walk (kde_torch.tile_walk) at ROWS x CHUNK: all rows, row
    blocks against the columns from their own on, pairs from `below` on standing for their mirrored terms
    too (kde_torch.mirrored_from); some rows (a shard's), against every column, nothing mirrored."""
    whole = (row_start, row_stop) == (0, n)
    for tile in kde_torch.tile_walk(n, row_start, row_stop, whole, ROWS, CHUNK):
        yield tile, kde_torch.mirrored_from(tile, whole)


def _pair_tile(layer, tile, kind, gamma):
    """The tile's P: exp(-gamma d^2) or d from the KDE back-end's -d^2 (one GEMM, clamped at 0, exactly 0 on
    the diagonal)."""
    lo, hi, c0, c1 = tile
    t = neg_sq_dist(layer, tile, False, layer.x.new_empty((hi - lo, c1 - c0)))
    return t.mul_(gamma).exp_() if kind == "rbf" else t.neg_().sqrt_()


def _derivative_factor(p, kind, gamma):
    """p' of the module docstring: dP_kj/dx_k = p'_kj (x_k - x_j)."""
    if kind == "rbf":
        return p * (-2.0 * gamma)
    return torch.where(p > 0, 1.0 / p, torch.zeros_like(p))
