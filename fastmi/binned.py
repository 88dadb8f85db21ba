"""Histogram MI (DESIGN.md, estimator 2): the layer-binned estimator and the all-unit-pairs MI matrix.

Layer-binned (Shwartz-Ziv & Tishby): each unit's value goes into one of K equal-width bins over the
layer's range; each row's bin pattern is one symbol; I = H(A) + H(B) - H(A, B) from plug-in entropies
of the symbol counts. Integer (or bool) inputs are taken as already-discrete symbols, unbinned
(e.g. class labels). Not differentiable.

unit_mi: for every unit pair (p, q), the plug-in MI of the K x K joint histogram of (a[:, p], b[:, q]),
each unit binned over its own range. All joint histograms at once are one GEMM,
codes(A)^T codes(B) of shape (Da K) x (Db K). Hard codes count; soft codes spread each sample's mass
over the two nearest bin centres (linear interpolation) and are differentiable.
"""
import math

import numpy as np
import torch

from ._dispatch import use_triton

HASH_SEED = 0x5EED
TINY = 1e-300  # p log p at p = 0 is 0; the clamp keeps its gradient finite


def check_bins(bins):
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(f"bins must be an int >= 2, got {bins!r}")


def check_range(value_range):
    if value_range is None:
        return
    if not (isinstance(value_range, (tuple, list)) and len(value_range) == 2):
        raise ValueError(f"range must be None or a pair (lo, hi), got {value_range!r}")
    lo, hi = (float(v) for v in value_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"range must be finite with lo < hi, got {value_range!r}")


def _float32(value):
    """Round a Python float to float32 once, so that every back-end bins with the same constants."""
    return float(np.float32(value))


def _work(x):
    return x.double() if x.dtype == torch.float64 else x.float()


# ------------------------------------------------------------------------------- layer-binned


@torch.no_grad()
def layer_range(x, bins, value_range, shard=None):
    """(lo, scale) of one layer: bin = floor((x - lo) * scale), scale = K / (hi - lo) (0 if hi = lo)."""
    if value_range is not None:
        lo, hi = (float(v) for v in value_range)
    else:
        lo, hi = x.min(), x.max()
        lo, hi = (float(lo), float(hi)) if shard is None else (float(v) for v in shard.extremes(lo, hi))
    scale = bins / (hi - lo) if hi > lo else 0.0
    return (lo, scale) if x.dtype == torch.float64 else (_float32(lo), _float32(scale))


def column_keys(d, device):
    """Random odd 64-bit constants R_j of the row hash (fixed seed: the same on every call)."""
    g = torch.Generator().manual_seed(HASH_SEED)
    keys = torch.randint(-2**63, 2**63 - 1, (d,), generator=g, dtype=torch.int64)
    return (keys | 1).to(device)


def row_hash_torch(x, keys, lo, scale, bins, discrete):
    """h_i = sum_j (b_ij + 1) R_j mod 2^64, in row blocks (same integers as kernels/binned.py)."""
    out = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    step = max(1, (1 << 22) // x.shape[1])
    for lo_row in range(0, x.shape[0], step):
        block = x[lo_row:lo_row + step]
        if discrete:
            symbol = block.long()
        else:
            symbol = ((_work(block) - lo) * scale).floor_().clamp_(0, bins - 1).long()
        out[lo_row:lo_row + step] = ((symbol + 1) * keys).sum(1)
    return out


def row_hash(x, bins, value_range, backend, shard=None):
    discrete = not x.is_floating_point()
    lo, scale = (0.0, 0.0) if discrete else layer_range(x, bins, value_range, shard)
    keys = column_keys(x.shape[1], x.device)
    if use_triton(backend, x):
        from .kernels.binned import bin_hash
        operand = x.to(torch.int8) if x.dtype == torch.bool else x
        return bin_hash(operand.contiguous(), keys, lo, scale, bins, discrete)
    return row_hash_torch(x, keys, lo, scale, bins, discrete)


def entropy_from_symbols(symbols):
    """Plug-in entropy (nats, float64) of a 1-d tensor of symbols, and each row's symbol id."""
    _, ids, counts = torch.unique(symbols, return_inverse=True, return_counts=True)
    c = counts.double()
    n = c.sum()
    return torch.log(n) - (c * torch.log(c)).sum() / n, ids, counts.numel()


def binned_mi(a, b, bins, value_range, backend, shard=None):
    """I = H(A) + H(B) - H(A, B) in nats (float64 0-d tensor) from the rows' bin-pattern symbols
    (every rank's rows with a Shard)."""
    def symbols(x):
        h = row_hash(x, bins, value_range, backend, shard)
        return h if shard is None else shard.gather(h)
    h_a, ids_a, _ = entropy_from_symbols(symbols(a))
    h_b, ids_b, n_b = entropy_from_symbols(symbols(b))
    h_ab, _, _ = entropy_from_symbols(ids_a * n_b + ids_b)  # exact joint ids, no second hash
    return h_a + h_b - h_ab


# ------------------------------------------------------------------------------- unit pairs


@torch.no_grad()
def column_ranges(x, bins, value_range, shard=None):
    """Per-column (lo, scale) tensors: each unit binned over its own range (or the given one)."""
    x = _work(x)
    if value_range is not None:
        lo = torch.full((x.shape[1],), float(value_range[0]), dtype=x.dtype, device=x.device)
        hi = torch.full_like(lo, float(value_range[1]))
    else:
        lo, hi = x.min(0).values, x.max(0).values
        lo, hi = (lo, hi) if shard is None else shard.extremes(lo, hi)
    width = hi - lo
    scale = torch.where(width > 0, bins / width.where(width > 0, torch.ones_like(width)), torch.zeros_like(width))
    return lo, scale


def codes(x, lo, scale, bins, soft, count_dtype=None):
    """(rows, D, K) bin codes: one-hot (in count_dtype), or linear interpolation between the two
    nearest bin centres."""
    t = (_work(x) - lo) * scale
    if not soft:
        index = t.floor().clamp(0, bins - 1).long()
        return torch.nn.functional.one_hot(index, bins).to(count_dtype or t.dtype)
    t = (t - 0.5).clamp(0, bins - 1)  # position in bin-centre units (centre k at k + 0.5)
    k0 = t.detach().floor().clamp(max=bins - 2).long()
    w = t - k0  # mass w on bin k0 + 1, 1 - w on bin k0
    zeros = torch.zeros(*t.shape, bins, dtype=t.dtype, device=t.device)
    return zeros.scatter(2, k0[..., None], (1 - w)[..., None]).scatter_add(2, k0[..., None] + 1, w[..., None])


def joint_counts(a, b, bins, soft, value_range, shard=None):
    """(Da K) x (Db K) joint histograms of every unit pair: sum over rows of codes(a)^T codes(b)
    (of this rank's rows with a Shard, binned over the global ranges)."""
    lo_a, scale_a = column_ranges(a, bins, value_range, shard)
    lo_b, scale_b = column_ranges(b, bins, value_range, shard)
    n, da, db = a.shape[0], a.shape[1], b.shape[1]
    step = max(1, (1 << 22) // (bins * max(da, db)))
    count_dtype = torch.float32 if n < 2**24 else torch.float64  # float32 counts are exact below 2^24
    total = None
    for lo in range(0, n, step):
        ca = codes(a[lo:lo + step], lo_a, scale_a, bins, soft, count_dtype).reshape(-1, da * bins)
        cb = codes(b[lo:lo + step], lo_b, scale_b, bins, soft, count_dtype).reshape(-1, db * bins)
        part = ca.T @ cb
        total = part if total is None else total + part
    return total


def _plogp(p, dims):
    return (p * p.clamp_min(TINY).log()).sum(dims)


def mi_from_joint(counts, n, da, db, bins):
    """Plug-in MI (nats, float64) of every K x K block: sum p_uv ln(p_uv / (p_u p_v))."""
    p = (counts.double() / n).reshape(da, bins, db, bins).permute(0, 2, 1, 3)  # (Da, Db, K, K)
    return _plogp(p, (-2, -1)) - _plogp(p.sum(-1), -1) - _plogp(p.sum(-2), -1)


TRITON_MAX_BINS = 128  # one unit's K x K block must fit a tile


def unit_mi_matrix(a, b, bins, soft, value_range, backend, shard=None):
    """(Da, Db) MI of every unit pair: the fused Triton kernel when it applies, else torch GEMMs.

    The kernel computes no gradient and no partial counts, so soft codes that need a gradient and
    the global batch of a Shard take the torch path (autograd through the codes: O(N D K) memory)."""
    needs_grad = soft and torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)
    if shard is not None:
        counts = shard.sum_with_grad(joint_counts(a, b, bins, soft, value_range, shard))
        return mi_from_joint(counts, sum(shard.sizes), a.shape[1], b.shape[1], bins)
    if use_triton(backend, a) and bins <= TRITON_MAX_BINS and not needs_grad:
        from .kernels.binned import unit_mi
        ranges = [r.float().contiguous() for x in (a, b) for r in column_ranges(x, bins, value_range)]
        return unit_mi(a.contiguous(), b.contiguous(), *ranges, bins, soft)
    counts = joint_counts(a, b, bins, soft, value_range)
    return mi_from_joint(counts, a.shape[0], a.shape[1], b.shape[1], bins)
