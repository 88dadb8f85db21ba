"""Blocked pure-torch back-end of the KDE estimator: the same math as kernels/kde.py, for CPU tensors,
float64 on any device, and wherever the Triton kernels do not run (docs/design.md, "Back-ends").

It works on a chain of L >= 2 layers side by side: x is (N, sum_m D_m), layer m in the columns
offsets[m]:offsets[m+1], centred and pre-scaled (pair kernel exp2(-||x^m_i - x^m_j||^2)); a pair (a, b)
is the chain of two. Log-sums come as (2L - 1, N): ln S^0..ln S^{L-1} (each layer's marginal), then
ln J^0..ln J^{L-2} (each successive pair's joint). Each layer's distance and exp block is computed once
and serves its marginal and both joints it belongs to (forward), and both pairs' weights (backward:
one S @ X per layer).

Pairs are processed in tiles of at most ROWS rows x CHUNK columns, in a few preallocated buffers
(fresh multi-MB tensors cost page faults): memory O(N*D + ROWS*CHUNK). Pair terms are symmetric, so
a row block lo:hi only computes columns lo:N and hands the columns hi:N their share (half the
distances and exps, at every N: blocks of ROWS rows, not N / few). Whole rows are walked by leave-
one-out (its rows need their own max) and when only a range of rows is asked for (`rows`, as under
torch.distributed). Distances come from one GEMM of augmented operands,
[x_i, |x_i|^2, 1] . [2 x_j, -1, -|x_j|^2] = -||x_i - x_j||^2, with no broadcast pass.

Subnormal floats are ~100x slower on CPUs. Without leave-one-out every exponent is clamped to
[-CUT, 0] (CUT = 50 in float32): a kernel value below 2^-50 becomes 2^-50 (< 1e-15 against a row sum
>= 1), and every product of two kernel values and a 1/S >= 1/N (N <= 2^24) stays normal. Leave-one-
out exponents are shifted by their row's max first, and values below 2^-CUT of it are set to 0.
"""
import functools
import math

import torch

LN2 = math.log(2.0)
ROWS = 128  # rows per tile: tall enough for efficient GEMMs, small enough for the symmetric halving
CHUNK = 1 << 14  # columns per tile: a tile is at most 2M elements, 8 MiB in float32
CUT = {torch.float32: 50.0, torch.float64: 480.0}
CACHE_BYTES = 64 << 20  # the forward keeps its kernel tiles for the backward where they fit (small N)



def cache_elements(n, offsets, loo, rows, dtype):
    """How many kernel values the forward keeps for the backward: every layer's symmetric tiles where
    they fit in CACHE_BYTES (the backward then skips its distances and exps), else 0. Closed form of the
    tiles' sizes: blocks of ROWS rows, the block at lo against columns lo:N."""
    if loo or not _row_range(rows, n)[2]:
        return 0
    blocks = -(-n // ROWS)
    last = n - (blocks - 1) * ROWS
    per_layer = ROWS * ((blocks - 1) * n - ROWS * (blocks - 1) * (blocks - 2) // 2) + last * last
    total = per_layer * (len(offsets) - 1)
    return total if total * dtype.itemsize <= CACHE_BYTES else 0


def _cached_tiles(cache, n, count):
    """(tile, [each layer's block of it in `cache`]) of the symmetric tiles, in tile_walk order."""
    start = 0
    for tile in tile_walk(n, 0, n, symmetric=True):
        size = (tile[1] - tile[0]) * (tile[3] - tile[2])
        yield tile, [cache[start + m * size:start + (m + 1) * size].view(tile[1] - tile[0], -1) for m in range(count)]
        start += count * size


def tile_walk(n, start, stop, symmetric, rows=None, chunk=None):
    """(lo, hi, c0, c1): row blocks of rows start:stop, each against chunks of columns lo:N
    (symmetric) or 0:N; blocks of `rows` x `chunk` (default ROWS x CHUNK)."""
    rows, chunk = rows or ROWS, chunk or CHUNK
    for lo in range(start, stop, rows):
        for c0 in range(lo if symmetric else 0, n, chunk):
            yield lo, min(lo + rows, stop), c0, min(c0 + chunk, n)


def mirrored_from(tile, symmetric):
    """The first column of a tile whose pairs also stand for their mirrored (j, i) terms: on a symmetric
    walk, the columns at and after max(hi, c0) (those before lie in the block's own rows, whose both
    orders the tile holds); on a full walk none (c1). The one mirror rule of the torch tiles (the KDE
    here, the kernel measures in fastmi/measures/pair_sums.py)."""
    lo, hi, c0, c1 = tile
    return max(hi, c0) if symmetric else c1


def _row_range(rows, n):
    """(start, stop, whole): the rows asked for, and whether they are all of them."""
    start, stop = rows or (0, n)
    return start, stop, (start, stop) == (0, n)


class Layer:
    """A layer's operand x (a column range of the chain's), and its augmented GEMM operands, made on
    first use (a backward from cached kernel tiles needs none)."""

    def __init__(self, x):
        self.x = x

    @functools.cached_property
    def left(self):
        return torch.cat([self.x, self._norms, torch.ones_like(self._norms)], 1)

    @functools.cached_property
    def right(self):
        return torch.cat([2 * self.x, -torch.ones_like(self._norms), -self._norms], 1)

    @functools.cached_property
    def _norms(self):
        return self.x.square().sum(1, keepdim=True)


def _layers(x, offsets):
    return [Layer(x[:, lo:hi]) for lo, hi in zip(offsets[:-1], offsets[1:])]


class _Buffers:
    """Preallocated tile buffers: buffer k viewed as a contiguous (rows, cols) matrix."""

    def __init__(self, count, n, like):
        self.flat = torch.empty((count, min(n, ROWS) * min(n, CHUNK)), dtype=like.dtype, device=like.device)

    def __getitem__(self, key):
        k, rows, cols = key
        return self.flat[k, :rows * cols].view(rows, cols)


def _buffer(buffers, k, tile):
    lo, hi, c0, c1 = tile
    return buffers[k, hi - lo, c1 - c0]


def neg_sq_dist(layer, tile, loo, out):
    """-d_ij of a tile (rows lo:hi, columns c0:c1) into `out`, clamped at 0 (a NaN stays a NaN); d_ii
    is 0, or -inf when leaving one out."""
    lo, hi, c0, c1 = tile
    t = torch.mm(layer.left[lo:hi], layer.right[c0:c1].T, out=out)
    t.clamp_(max=0.0)
    t.diagonal(offset=lo - c0).fill_(-math.inf if loo else 0.0)
    return t


def kernel_tile(layer, tile, out):
    """exp2(-d_ij) of a tile into `out` (no leave-one-out): exponents clamped to [-CUT, 0], the diagonal
    exactly 1."""
    lo, hi, c0, c1 = tile
    t = torch.mm(layer.left[lo:hi], layer.right[c0:c1].T, out=out)
    t.clamp_(-CUT[t.dtype], 0.0)
    t.diagonal(offset=lo - c0).fill_(0.0)
    return t.exp2_()


def _shifted_exp2_(t):
    """exp2 in place of exponents already shifted below their max: those below -CUT give exactly 0."""
    return t.masked_fill_(t < -CUT[t.dtype], -math.inf).exp2_()


def _loo_log_sums(t):
    """ln sum_j exp2(t_ij) per row, each row shifted by its own max (consumes t); -inf for a row of -inf."""
    top = t.amax(dim=1, keepdim=True)
    top.masked_fill_(top == -math.inf, 0.0)
    return (_shifted_exp2_(t.sub_(top)).sum(1).log2_() + top[:, 0]).mul_(LN2)


# ----------------------------------------------------------------------------------------- forward

def chain_log_sums(x, offsets, loo, rows=None, cache=None):
    """(2L - 1, stop - start) natural-log kernel sums of rows start:stop (default all): the layers'
    marginals ln S^m, then the successive pairs' joints ln J^l. cache: None, or a flat tensor of
    cache_elements() values that receives every layer's kernel tiles for chain_grads."""
    n = x.shape[0]
    start, stop, whole = _row_range(rows, n)
    layers = _layers(x, offsets)
    if loo or not whole:
        out = torch.full((2 * len(layers) - 1, stop - start), -math.inf, dtype=x.dtype, device=x.device)
        buffers = _Buffers(3, n, x)
        for tile in tile_walk(n, start, stop, symmetric=False):
            part = out[:, tile[0] - start:tile[1] - start]
            torch.logaddexp(part, _tile_log_sums(layers, tile, loo, buffers), out=part)
        return out
    return _symmetric_sums(layers, n, cache).log_()


def _symmetric_sums(layers, n, cache):
    """Without LOO the row max is 0 (the diagonal): plain sums, and each joint kernel is the product
    of its layers' kernels, so one exp per layer and pair. The kernel tiles go to `cache` where given,
    else to two rotating buffers."""
    count, x = len(layers), layers[0].x
    sums = torch.zeros((2 * count - 1, n), dtype=x.dtype, device=x.device)
    buffers = _Buffers(3, n, x)
    if cache is None:
        tiles = ((tile, [_buffer(buffers, m % 2, tile) for m in range(count)]) for tile in tile_walk(n, 0, n, True))
    else:
        tiles = _cached_tiles(cache, n, count)
    for tile, blocks in tiles:
        for m, layer in enumerate(layers):
            e = kernel_tile(layer, tile, blocks[m])
            _add_both_ways(sums[m], e, tile)
            if m:
                _add_both_ways(sums[count + m - 1], torch.mul(blocks[m - 1], e, out=_buffer(buffers, 2, tile)), tile)
    return sums


def _add_both_ways(total, e, tile):
    """total_i += sum_j e_ij for the tile's rows, and its columns at and after hi their transposed share."""
    lo, hi, c0, c1 = tile
    total[lo:hi] += e.sum(1)
    below = mirrored_from(tile, symmetric=True)
    if below < c1:
        total[below:c1] += e[:, below - c0:].sum(0)


def _tile_log_sums(layers, tile, loo, buffers):
    """(2L - 1, rows) log-sums of a tile's rows over its columns."""
    count, (lo, hi, _, _) = len(layers), tile
    out = torch.empty((2 * count - 1, hi - lo), dtype=layers[0].x.dtype, device=layers[0].x.device)
    for m, layer in enumerate(layers):
        block = _buffer(buffers, m % 2, tile)
        if loo:  # every sum needs its own row max: the joint from the exponents, then the marginals
            neg_sq_dist(layer, tile, True, block)
            if m:
                previous = _buffer(buffers, (m - 1) % 2, tile)
                out[count + m - 1] = _loo_log_sums(torch.add(previous, block, out=_buffer(buffers, 2, tile)))
                out[m - 1] = _loo_log_sums(previous)
        else:
            e = kernel_tile(layer, tile, block)
            out[m] = e.sum(1).log_()
            if m:
                out[count + m - 1] = _buffer(buffers, (m - 1) % 2, tile).mul_(e).sum(1).log_()
    if loo:
        out[count - 1] = _loo_log_sums(_buffer(buffers, (count - 1) % 2, tile))
    return out


# ---------------------------------------------------------------------------------------- backward

def chain_grads(x, offsets, sums, weights, loo, rows=None, cache=None):
    """d(sum_l weights_l * sum_i [ln J^l_i - ln S^l_i - ln S^{l+1}_i]) / dx_k, before the factor 2 ln2 / N,
    for rows start:stop (default all): (stop - start, sum_m D_m). sums: (2L - 1, N), every row's.

    Per layer m: G^m_k = sum_j W^m_kj (x^m_k - x^m_j) with W^m = c_m (P^m + P^m^T) - sum over the pairs l
    holding m of weights_l (Q^l + Q^l^T), P^m_kj = E^m_kj / S^m_k, Q^l_kj = E^l_kj E^{l+1}_kj / J^l_k and
    c_m = the weights of those pairs (docs/design.md, "The KDE estimator", backward). Accumulated as
    (sum_j W_kj) x_k - (W @ X)_k: the row sums in a vector, the products in place. cache: the forward's
    kernel tiles (chain_log_sums), or None to compute them again."""
    n = x.shape[0]
    start, stop, whole = _row_range(rows, n)
    layers = _layers(x, offsets)
    products = [torch.zeros((stop - start, layer.x.shape[1]), dtype=x.dtype, device=x.device) for layer in layers]
    row_sums = torch.zeros((len(layers), stop - start), dtype=x.dtype, device=x.device)
    weigh = _LayerWeights(layers, sums, weights, loo, _Buffers(6, n, x))
    if cache is None or cache.numel() == 0:
        tiles = ((tile, None) for tile in tile_walk(n, start, stop, symmetric=whole))
    else:
        tiles = _cached_tiles(cache, n, len(layers))
    for tile, cached in tiles:
        lo, hi, c0, c1 = tile
        for m, w in enumerate(weigh(tile, cached)):
            v, out = layers[m].x, products[m]
            if whole:  # the tile's rows, and its columns at and after hi their transposed share (W symmetric)
                out[lo:hi].addmm_(w, v[c0:c1], alpha=-1.0)
                below = max(hi, c0)
                if below < c1:
                    out[below:c1].addmm_(w[:, below - c0:].T, v[lo:hi], alpha=-1.0)
                _add_both_ways(row_sums[m], w, tile)
            else:
                out[lo - start:hi - start].addmm_(w, v[c0:c1], alpha=-1.0)
                row_sums[m, lo - start:hi - start] += w.sum(1)
    return torch.cat([out.addcmul_(total[:, None], layer.x[start:stop])
                      for out, total, layer in zip(products, row_sums, layers)], dim=1)


class _LayerWeights:
    """W^m of a tile, one layer after the other: each layer's block is computed once and serves its
    own weights and the joint terms of both pairs it is in.

    Without LOO from kernel values and per-row factors (1/S >= 1/N cannot overflow):
        W^m = E^m (f_i + f_j) - Q^{m-1} - Q^m,  Q^l = E^l E^{l+1} (g_i + g_j),  f = c_m / S^m, g = w_l / J^l;
    with LOO every term is exp2(exponent - its row's base-2 log-sum), as a row's largest term can be far
    below 1."""

    def __init__(self, layers, sums, weights, loo, buffers):
        count = len(layers)
        coefficients = weights.new_zeros(count)  # c_m: the weights of the pairs that hold layer m
        coefficients[:-1] += weights
        coefficients[1:] += weights
        self.layers, self.loo, self.buffers = layers, loo, buffers
        self.scale = torch.cat([coefficients, weights])  # per sum k: the weight of its terms
        self.log2_sums = sums / LN2
        self.factors = torch.exp2(-self.log2_sums) * self.scale[:, None]

    def __call__(self, tile, cached=None):
        """The weights of each layer for one tile; cached: the layers' kernel tiles from the forward."""
        count = len(self.layers)
        block = [_buffer(self.buffers, k, tile) for k in range(6)]  # 2 blocks, 2 joints, weights, scratch
        current = cached[0] if cached else self._block(0, tile, block[0])
        for m in range(count):
            following = None
            if m + 1 < count:
                following = cached[m + 1] if cached else self._block(m + 1, tile, block[(m + 1) % 2])
            w = self._both_ways(current, m, tile, block[4], block[5])
            if m:
                w.sub_(block[2 + (m - 1) % 2])
            if following is not None:
                joint = torch.add(current, following, out=block[5]) if self.loo else \
                    torch.mul(current, following, out=block[5])
                w.sub_(self._both_ways(joint, count + m, tile, block[2 + m % 2], block[5]))
            yield w
            current = following

    def _block(self, m, tile, out):
        """Layer m's exponents (LOO) or kernel values."""
        layer = self.layers[m]
        return neg_sq_dist(layer, tile, True, out) if self.loo else kernel_tile(layer, tile, out)

    def _both_ways(self, block, k, tile, out, scratch):
        """scale_k * (K_ij / S_i + K_ij / S_j) for the kernel K of sum k, into `out` (scratch may be
        `block` itself, which is then consumed)."""
        lo, hi, c0, c1 = tile
        if self.loo:
            _shifted_exp2_(torch.sub(block, self.log2_sums[k, lo:hi, None], out=out))
            out.add_(_shifted_exp2_(torch.sub(block, self.log2_sums[k, None, c0:c1], out=scratch)))
            return out.mul_(self.scale[k])
        torch.mul(block, self.factors[k, lo:hi, None], out=out)
        return out.addcmul_(block, self.factors[k, None, c0:c1])
