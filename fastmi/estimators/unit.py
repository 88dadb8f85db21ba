"""Unit-pair MI (docs/design.md, "Histogram estimators"): for every unit pair (p, q), the plug-in MI of
the K x K joint histogram of (a[:, p], b[:, q]), each unit binned over its own range.

All joint histograms at once are one GEMM, codes(A)^T codes(B) of shape (Da K) x (Db K). Hard codes
count; soft codes spread each sample's mass over the two nearest bin centres (linear interpolation)
and are differentiable. On the GPU a fused kernel (kernels/binned.py) makes the codes on the fly and
writes only the Da x Db MI values. fastmi.unit_mi returns the matrix, estimator="unit" its mean.
"""
import torch

from .. import kernels
from ..bandwidth import power_of_two
from ..inputs import check_bool, check_int
from .base import Estimator
from .binned import SAFE_EXPONENT, check_range, column_extremes, work_dtype

TINY = 1e-300  # p log p at p = 0 is 0; the clamp keeps its gradient finite
TRITON_MAX_BINS = 128  # one unit's K x K block must fit a tile
BLOCK_BYTES = 64 << 20  # the torch path works on as many of a's units at once as fit this


class UnitMI(Estimator):
    """estimator="unit": bins (per unit, default 16), soft (linear-interpolation codes, differentiable),
    range ((lo, hi) for every unit; default each unit's own min/max)."""
    name = "unit"
    triton_kernels = True
    nan_blind = True

    def __init__(self, *, bins=16, soft=False, range=None):
        self.bins = check_int(bins, "bins", 2)
        self.soft = check_bool(soft, "soft")
        self.range = check_range(range)
        self.differentiable = self.soft

    def __call__(self, a, b, backend, shard):
        return self.matrix(a, b, backend, shard).mean()

    def matrix(self, a, b, backend, shard):
        """(Da, Db) MI of every unit pair: the fused Triton kernel when it applies, else torch GEMMs.

        The kernel computes no gradient and no partial counts, so soft codes that need a gradient and
        the global batch of a Shard take the torch path (autograd through the codes: O(N D K) memory).
        The torch path works on blocks of a's units, so its counts stay within BLOCK_BYTES."""
        bins, soft, value_range = self.bins, self.soft, self.range
        needs_grad = soft and torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)
        (a, *ranges_a), (b, *ranges_b) = (column_ranges(x, bins, value_range, shard) for x in (a, b))
        if shard is None and backend == "triton" and bins <= TRITON_MAX_BINS and not needs_grad:
            ranges = [r.float().contiguous() for r in (*ranges_a, *ranges_b)]
            try:
                return kernels.binned.unit_pair_mi(a.contiguous(), b.contiguous(), *ranges, bins, soft)
            except kernels.KernelUnavailable:
                pass  # this triton cannot build the kernel (warned once): the torch path below
        n = a.shape[0] if shard is None else sum(shard.sizes)
        block = max(1, BLOCK_BYTES // (bins * bins * b.shape[1] * 28))  # float32 counts + float64 p log p
        rows = []
        for p in range(0, a.shape[1], block):
            part = slice(p, p + block)
            counts = joint_counts(a[:, part], b, [r[part] for r in ranges_a], ranges_b, bins, soft)
            counts = counts if shard is None else shard.sum_with_grad(counts)
            rows.append(mi_from_joint(counts, n, counts.shape[0] // bins, b.shape[1], bins))
        return torch.cat(rows)


def column_ranges(x, bins, value_range, shard=None):
    """(x, lo, scale): each unit binned over its own range (or the given one) as floor((x - lo) * scale).
    Columns whose range is too small or too large for the work dtype (subnormal, near overflow) come
    back divided by a power of two (exact), with lo and scale of the rescaled column."""
    with torch.no_grad():
        work = work_dtype(x.detach())
        if value_range is not None:
            lo = torch.full((x.shape[1],), value_range[0], dtype=work.dtype, device=x.device)
            hi = torch.full_like(lo, value_range[1])
        else:
            lo, hi = column_extremes(work, dim=0)
            lo, hi = (lo, hi) if shard is None else shard.extremes(lo, hi)
        width, top, safe = hi - lo, torch.maximum(lo.abs(), hi.abs()), 2.0 ** SAFE_EXPONENT[work.dtype]
        units = torch.where((width > 0) & ((width < 1 / safe) | (top >= safe)), power_of_two(top), torch.ones_like(top))
        lo, width = lo / units, width / units
        scale = torch.where(width > 0, bins / width.where(width > 0, torch.ones_like(width)), torch.zeros_like(width))
    if bool((units != 1).any()):
        x = work_dtype(x) / units
    return x, lo, scale


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


def joint_counts(a, b, ranges_a, ranges_b, bins, soft):
    """(Da K) x (Db K) joint histograms of every unit pair: sum over rows of codes(a)^T codes(b), the
    units binned with (lo, scale) = ranges_a, ranges_b (column_ranges)."""
    n, da, db = a.shape[0], a.shape[1], b.shape[1]
    step = max(1, (1 << 22) // (bins * max(da, db)))
    count_dtype = torch.float32 if n < 2**24 else torch.float64  # float32 counts are exact below 2^24
    total = torch.zeros((da * bins, db * bins), dtype=torch.float64 if a.dtype == torch.float64 else count_dtype,
                        device=a.device)
    for lo in range(0, n, step):
        ca = codes(a[lo:lo + step], *ranges_a, bins, soft, count_dtype).reshape(-1, da * bins)
        cb = codes(b[lo:lo + step], *ranges_b, bins, soft, count_dtype).reshape(-1, db * bins)
        total = total + ca.T @ cb
    return total


def _plogp(p, dims):
    return (p * p.clamp_min(TINY).log()).sum(dims)


def mi_from_joint(counts, n, da, db, bins):
    """Plug-in MI (nats, float64) of every K x K block: sum p_uv ln(p_uv / (p_u p_v))."""
    p = (counts.double() / n).reshape(da, bins, db, bins).permute(0, 2, 1, 3)  # (Da, Db, K, K)
    return _plogp(p, (-2, -1)) - _plogp(p.sum(-1), -1) - _plogp(p.sum(-2), -1)
