"""Layer-binned MI (Shwartz-Ziv & Tishby; docs/design.md, "Histogram estimators").

Each unit's value goes into one of K equal-width bins over the layer's range; each row's bin pattern
is one symbol; I = H(A) + H(B) - H(A, B) from plug-in entropies of the symbol counts. Integer (or
bool) inputs are taken as already-discrete symbols, unbinned (e.g. class labels). Not
differentiable. Rows are hashed to 64 bits in one pass (kernels/binned.py on the GPU, the same
integers from torch here):

    h_i = sum_j (b_ij + 1) * R_j  (mod 2^64),  R_j random odd 64-bit constants (fixed seed)
"""
import math

import numpy as np
import torch

from .. import kernels
from ..inputs import check_int
from ..warn import warn_user
from .base import Estimator
from .kde import SATURATION

HASH_SEED = 0x5EED
SAFE_EXPONENT = {torch.float32: 100, torch.float64: 900}  # ranges beyond 2^+-this are rescaled before binning


class Binned(Estimator):
    """estimator="binned": bins (equal-width bins per unit, default 30), range ((lo, hi) for every
    unit; default the layer's min/max)."""
    name = "binned"
    triton_kernels = True
    takes_symbols = True
    nan_blind = True

    def __init__(self, *, bins=30, range=None):
        self.bins = check_int(bins, "bins", 2)
        self.range = check_range(range)

    def __call__(self, a, b, backend, shard):
        """I = H(A) + H(B) - H(A, B) in nats (float64 0-d tensor) from the rows' bin-pattern symbols
        (every rank's rows with a Shard)."""
        def symbols(x):
            h = row_hash(x, self.bins, self.range, backend, shard)
            return h if shard is None else shard.gather(h)
        h_a, ids_a, _ = entropy_from_symbols(symbols(a))
        h_b, ids_b, n_b = entropy_from_symbols(symbols(b))
        h_ab, _, _ = entropy_from_symbols(ids_a * n_b + ids_b)  # exact joint ids, no second hash
        mi = h_a + h_b - h_ab
        _warn_if_saturated(mi, h_a, h_b, ids_a.numel())
        return mi


def _warn_if_saturated(mi, h_a, h_b, n):
    """Where a side's rows nearly all have bin patterns of their own (H within 5% of ln N), H(A, B) is
    about ln N too and the estimate is about the other side's entropy, whatever the dependence: at its
    ceiling min(H(A), H(B)) (not where that ceiling is 0: a constant side's 0 is exact)."""
    ceiling = min(float(h_a), float(h_b))
    if n > 1 and max(float(h_a), float(h_b)) >= SATURATION * math.log(n) and 0 < ceiling <= float(mi) / SATURATION:
        warn_user("binned MI: nearly every row has a bin pattern of its own in one layer (its entropy is within "
                  "5% of ln N), so the estimate is about the other side's entropy whatever the dependence: "
                  "saturated. Too many units x bins for the rows: fewer bins, fewer units (fastmi.unit_mi per "
                  "unit pair), more rows, or estimator='auto'")


def check_range(value_range):
    if value_range is None:
        return None
    if not (isinstance(value_range, (tuple, list)) and len(value_range) == 2):
        raise ValueError(f"range must be None or a pair (lo, hi), got {value_range!r}")
    lo, hi = (float(v) for v in value_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"range must be finite with lo < hi, got {value_range!r}")
    return lo, hi


def work_dtype(x):
    """Histogram arithmetic: float64 for float64 input, float32 otherwise."""
    return x.double() if x.dtype == torch.float64 else x.float()


def _float32(value):
    """Round a Python float to float32 once, so that every back-end bins with the same constants."""
    return float(np.float32(value))


@torch.no_grad()
def layer_range(x, bins, value_range, shard=None):
    """(lo, scale, unit) of one layer: bin = floor((x / unit - lo) * scale), scale = K / (hi - lo) of the
    rescaled range (0 if hi = lo). unit is 1, or a power of two (exact) where the range is too small or
    too large for the work dtype (subnormal, near overflow): binning is scale-free, so it gives the
    bins of the rescaled layer, bit for bit those of ordinary data."""
    if value_range is not None:
        lo, hi = value_range
    else:
        lo, hi = column_extremes(x, dim=None)
        lo, hi = (float(lo), float(hi)) if shard is None else (float(v) for v in shard.extremes(lo, hi))
    unit = _unit(lo, hi, SAFE_EXPONENT[work_dtype(x[:0]).dtype])
    lo, hi = lo / unit, hi / unit
    scale = bins / (hi - lo) if hi > lo else 0.0
    return (lo, scale, unit) if x.dtype == torch.float64 else (_float32(lo), _float32(scale), unit)


def _unit(lo, hi, safe_exponent):
    top = max(abs(lo), abs(hi))
    ordinary = hi <= lo or (2.0 ** -safe_exponent < hi - lo and top < 2.0 ** safe_exponent)
    return 1.0 if ordinary or not math.isfinite(top) else 2.0 ** math.frexp(top)[1]


def column_extremes(x, dim):
    """(min, max) over dim (None: all); +inf, -inf for no rows (an empty shard of the global batch)."""
    if x.shape[0] == 0:
        shape = () if dim is None else x.shape[1:]
        return (torch.full(shape, math.inf, dtype=x.dtype, device=x.device),
                torch.full(shape, -math.inf, dtype=x.dtype, device=x.device))
    return (x.min(), x.max()) if dim is None else (x.min(dim).values, x.max(dim).values)


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
            symbol = ((work_dtype(block) - lo) * scale).floor_().clamp_(0, bins - 1).long()
        out[lo_row:lo_row + step] = ((symbol + 1) * keys).sum(1)
    return out


def row_hash(x, bins, value_range, backend, shard=None):
    """int64 (N,) hash of each row's bin pattern (the pattern itself for integer inputs)."""
    discrete = not x.is_floating_point()
    lo, scale, unit = (0.0, 0.0, 1.0) if discrete else layer_range(x, bins, value_range, shard)
    x = x if unit == 1.0 else work_dtype(x) / unit
    keys = column_keys(x.shape[1], x.device)
    if backend == "triton":
        operand = x.to(torch.int8) if x.dtype == torch.bool else x
        try:
            return kernels.binned.bin_hash(operand.contiguous(), keys, lo, scale, bins, discrete)
        except kernels.KernelUnavailable:
            pass  # this triton cannot build the kernel (warned once): the torch path below
    return row_hash_torch(x, keys, lo, scale, bins, discrete)


def entropy_from_symbols(symbols):
    """Plug-in entropy (nats, float64) of a 1-d tensor of symbols, and each row's symbol id."""
    _, ids, counts = torch.unique(symbols, return_inverse=True, return_counts=True)
    c = counts.double()
    n = c.sum()
    return torch.log(n) - (c * torch.log(c)).sum() / n, ids, counts.numel()
