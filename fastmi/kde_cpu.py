"""Blocked pure-torch back-end of the KDE estimator: the same math as kernels/kde.py, for CPU tensors.

Rows are processed in blocks of B so that memory stays O(B*N + N*D); every function here takes the
centred, pre-scaled x, y of fastmi.kde (pair kernel exp2(-||x_i - x_j||^2)).

Subnormal floats are ~100x slower on CPUs, so kernel values below 2^-CUT of the row's largest are set
to exactly 0 (CUT = 40 in float32: each dropped pair weighs < 1e-12 against a row sum >= 1). All
products formed from the remaining values (and 1/S >= 1/N) then stay normal.
"""
import math

import torch

LN2 = math.log(2.0)
BLOCK_ELEMENTS = 1 << 21  # B * N per tile: 8 MiB in float32, a handful of such buffers live at once
CUT = {torch.float32: 40.0, torch.float64: 300.0}


def _row_blocks(n):
    step = max(8, min(n, BLOCK_ELEMENTS // n))
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)]


def _neg_sq_dist(x, norms, lo, hi, loo):
    """-d_ij for rows lo:hi against all columns; the diagonal is 0 (or -inf when leaving one out)."""
    t = torch.addmm(norms[lo:hi, None] + norms[None, :], x[lo:hi], x.T, alpha=-2.0)
    torch.relu_(t).neg_()  # clamp at 0; unlike clamp, relu keeps a NaN a NaN (check_finite=False)
    t.diagonal(offset=lo).fill_(-math.inf if loo else 0.0)
    return t


def _exp2_(t):
    """exp2 in place, with exponents below -CUT (no subnormals) giving exactly 0."""
    return t.masked_fill_(t < -CUT[t.dtype], -math.inf).exp2_()


def _log_sums(t, loo):
    """ln sum_j exp2(t_ij) per row (consumes t). Without LOO the diagonal makes the row max 0."""
    if not loo:
        return _exp2_(t).sum(1).log_()
    top = t.amax(dim=1, keepdim=True)
    return (_exp2_(t.sub_(top)).sum(1).log2_() + top[:, 0]).mul_(LN2)


def forward(x, y, loo):
    """Per-row natural-log kernel sums, tensor (3, N): ln SX, ln SY, ln SJ."""
    n = x.shape[0]
    nx, ny = x.square().sum(1), y.square().sum(1)
    out = torch.empty((3, n), dtype=x.dtype, device=x.device)
    for lo, hi in _row_blocks(n):
        tx = _neg_sq_dist(x, nx, lo, hi, loo)
        ty = _neg_sq_dist(y, ny, lo, hi, loo)
        if loo:
            out[2, lo:hi] = _log_sums(tx + ty, loo)
            out[0, lo:hi] = _log_sums(tx, loo)
            out[1, lo:hi] = _log_sums(ty, loo)
        else:  # exp(-a - b) = exp(-a) exp(-b): 2 exps per pair
            ex, ey = _exp2_(tx), _exp2_(ty)
            out[0, lo:hi] = ex.sum(1).log_()
            out[1, lo:hi] = ey.sum(1).log_()
            out[2, lo:hi] = ex.mul_(ey).sum(1).log_()
    return out


def _pair_weights(tx, ty, log_sums, lo, hi, loo):
    """S^x, S^y for rows lo:hi (DESIGN.md backward): S_kj = P_kj + P_jk - P^J_kj - P^J_jk."""
    l2 = log_sums / LN2  # base-2 log-sums
    if loo:
        def both_ways(t, l):
            return _exp2_(t - l[lo:hi, None]).add_(_exp2_(t - l[None, :]))
        pj = both_ways(tx + ty, l2[2])
        return both_ways(tx, l2[0]).sub_(pj), both_ways(ty, l2[1]).sub_(pj)
    r = torch.exp2(-l2)  # 1 / S, all in [1/N, 1]

    def reciprocal_pair(i):
        return r[i, lo:hi, None] + r[i, None, :]
    ex, ey = _exp2_(tx), _exp2_(ty)
    pj = (ex * ey).mul_(reciprocal_pair(2))
    return ex.mul_(reciprocal_pair(0)).sub_(pj), ey.mul_(reciprocal_pair(1)).sub_(pj)


def backward(x, y, log_sums, loo):
    """G_k = sum_j S_kj (x_k - x_j) for x and y, before the 2 ln2 / N factor."""
    nx, ny = x.square().sum(1), y.square().sum(1)
    gx, gy = torch.empty_like(x), torch.empty_like(y)
    for lo, hi in _row_blocks(x.shape[0]):
        tx = _neg_sq_dist(x, nx, lo, hi, loo)
        ty = _neg_sq_dist(y, ny, lo, hi, loo)
        sx, sy = _pair_weights(tx, ty, log_sums, lo, hi, loo)
        gx[lo:hi] = torch.addmm(sx.sum(1, keepdim=True) * x[lo:hi], sx, x, alpha=-1.0)
        gy[lo:hi] = torch.addmm(sy.sum(1, keepdim=True) * y[lo:hi], sy, y, alpha=-1.0)
    return gx, gy
