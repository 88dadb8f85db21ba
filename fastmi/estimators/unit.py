"""Unit-pair MI (docs/design.md, "Histogram estimators"): for every unit pair (p, q), the plug-in MI of
the K x K joint histogram of (a[:, p], b[:, q]), each unit binned over its own range.

All joint histograms at once are one GEMM, codes(A)^T codes(B) of shape (Da K) x (Db K). Hard codes
count; soft codes spread each sample's mass over the two nearest bin centres (linear interpolation)
and are differentiable. On the GPU a fused kernel (kernels/binned.py) makes the codes on the fly and
writes only the Da x Db MI values. fastmi.unit_mi returns the matrix, estimator="unit" its mean.
"""
import torch

from .. import kernels
from ..inputs import check_bool
from .base import Estimator
from .binned import check_bins, check_range, work_dtype

TINY = 1e-300  # p log p at p = 0 is 0; the clamp keeps its gradient finite
TRITON_MAX_BINS = 128  # one unit's K x K block must fit a tile


class UnitMI(Estimator):
    """estimator="unit": bins (per unit, default 16), soft (linear-interpolation codes, differentiable),
    range ((lo, hi) for every unit; default each unit's own min/max)."""
    name = "unit"
    nan_blind = True

    def __init__(self, *, bins=16, soft=False, range=None):
        self.bins = check_bins(bins)
        self.soft = check_bool(soft, "soft")
        self.range = check_range(range)
        self.differentiable = self.soft

    def __call__(self, a, b, backend, shard):
        return self.matrix(a, b, backend, shard).mean()

    def matrix(self, a, b, backend, shard):
        """(Da, Db) MI of every unit pair: the fused Triton kernel when it applies, else torch GEMMs.

        The kernel computes no gradient and no partial counts, so soft codes that need a gradient and
        the global batch of a Shard take the torch path (autograd through the codes: O(N D K) memory)."""
        bins, soft, value_range = self.bins, self.soft, self.range
        needs_grad = soft and torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)
        if shard is not None:
            counts = shard.sum_with_grad(joint_counts(a, b, bins, soft, value_range, shard))
            return mi_from_joint(counts, sum(shard.sizes), a.shape[1], b.shape[1], bins)
        if backend == "triton" and bins <= TRITON_MAX_BINS and not needs_grad:
            ranges = [r.float().contiguous() for x in (a, b) for r in column_ranges(x, bins, value_range)]
            return kernels.binned.unit_pair_mi(a.contiguous(), b.contiguous(), *ranges, bins, soft)
        counts = joint_counts(a, b, bins, soft, value_range)
        return mi_from_joint(counts, a.shape[0], a.shape[1], b.shape[1], bins)


@torch.no_grad()
def column_ranges(x, bins, value_range, shard=None):
    """Per-column (lo, scale) tensors: each unit binned over its own range (or the given one)."""
    x = work_dtype(x)
    if value_range is not None:
        lo = torch.full((x.shape[1],), value_range[0], dtype=x.dtype, device=x.device)
        hi = torch.full_like(lo, value_range[1])
    else:
        lo, hi = x.min(0).values, x.max(0).values
        lo, hi = (lo, hi) if shard is None else shard.extremes(lo, hi)
    width = hi - lo
    scale = torch.where(width > 0, bins / width.where(width > 0, torch.ones_like(width)), torch.zeros_like(width))
    return lo, scale


def codes(x, lo, scale, bins, soft, count_dtype=None):
    """(rows, D, K) bin codes: one-hot (in count_dtype), or linear interpolation between the two
    nearest bin centres."""
    t = (work_dtype(x) - lo) * scale
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
