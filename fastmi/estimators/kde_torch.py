"""Blocked pure-torch back-end of the KDE estimator: the same math as kernels/kde.py, for CPU tensors,
float64 on any device, and wherever the Triton kernels do not run (docs/design.md, "Back-ends").

Rows are processed in blocks of B so that memory stays O(B*N + N*D); every function here takes the
centred, pre-scaled x, y of fastmi.kde (pair kernel exp2(-||x_i - x_j||^2)). Pair terms are
symmetric, so a row block lo:hi only computes columns lo:N and hands the columns hi:N their share
(half the distances and exps). Whole rows are walked by the leave-one-out forward (its rows need
their own max) and when only a range of rows is asked for (`rows`, as under torch.distributed).

Subnormal floats are ~100x slower on CPUs, so kernel values below 2^-CUT of the row's largest are set
to exactly 0 (CUT = 40 in float32: each dropped pair weighs < 1e-12 against a row sum >= 1). All
products formed from the remaining values (and 1/S >= 1/N) then stay normal.
"""
import math

import torch

LN2 = math.log(2.0)
BLOCK_ELEMENTS = 1 << 21  # B * N per tile: 8 MiB in float32, a handful of such buffers live at once
CUT = {torch.float32: 40.0, torch.float64: 300.0}


def _row_blocks(n, start, stop):
    step = max(8, min(n, BLOCK_ELEMENTS // n))
    return [(lo, min(lo + step, stop)) for lo in range(start, stop, step)]


def _neg_sq_dist(x, norms, lo, hi, col_lo, loo):
    """-d_ij for rows lo:hi against columns col_lo:N; d_ii is 0 (or -inf when leaving one out)."""
    t = torch.addmm(norms[lo:hi, None] + norms[None, col_lo:], x[lo:hi], x[col_lo:].T, alpha=-2.0)
    torch.relu_(t).neg_()  # clamp at 0; unlike clamp, relu keeps a NaN a NaN (check_finite=False)
    t.diagonal(offset=lo - col_lo).fill_(-math.inf if loo else 0.0)
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


def _tiles(x, y, nx, ny, lo, hi, col_lo, loo):
    return _neg_sq_dist(x, nx, lo, hi, col_lo, loo), _neg_sq_dist(y, ny, lo, hi, col_lo, loo)


def _whole_row_log_sums(tx, ty, loo):
    if loo:
        return torch.stack([_log_sums(tx + ty, loo), _log_sums(tx, loo), _log_sums(ty, loo)])[[1, 2, 0]]
    ex, ey = _exp2_(tx), _exp2_(ty)
    return torch.stack([ex.sum(1), ey.sum(1), ex.mul_(ey).sum(1)]).log_()


def _row_range(rows, n):
    """(start, stop, whole): the rows asked for, and whether they are all of them."""
    start, stop = rows or (0, n)
    return start, stop, (start, stop) == (0, n)


def log_sums(x, y, loo, rows=None):
    """Natural-log kernel sums ln SX, ln SY, ln SJ of rows start:stop (default all): tensor (3, stop - start)."""
    n = x.shape[0]
    start, stop, whole = _row_range(rows, n)
    nx, ny = x.square().sum(1), y.square().sum(1)
    if loo or not whole:
        out = torch.empty((3, stop - start), dtype=x.dtype, device=x.device)
        for lo, hi in _row_blocks(n, start, stop):
            out[:, lo - start:hi - start] = _whole_row_log_sums(*_tiles(x, y, nx, ny, lo, hi, 0, loo), loo)
        return out
    # The row max is 0 (the diagonal): plain sums, and exp(-a - b) = exp(-a) exp(-b), 2 exps per pair.
    sums = torch.zeros((3, n), dtype=x.dtype, device=x.device)
    for lo, hi in _row_blocks(n, 0, n):
        ex, ey = (_exp2_(t) for t in _tiles(x, y, nx, ny, lo, hi, lo, loo))
        for k, e in enumerate((ex, ey, ex * ey)):
            sums[k, lo:hi] += e.sum(1)
            sums[k, hi:] += e[:, hi - lo:].sum(0)
    return sums.log_()


def _pair_weights(tx, ty, sums, lo, hi, col_lo, loo):
    """S^x, S^y of rows lo:hi, columns col_lo:N (docs/design.md, "The KDE estimator", backward): S_kj = P_kj + P_jk - P^J_kj - P^J_jk."""
    l2 = sums / LN2  # base-2 log-sums
    if loo:
        def both_ways(t, log2_sums):
            return _exp2_(t - log2_sums[lo:hi, None]).add_(_exp2_(t - log2_sums[None, col_lo:]))
        pj = both_ways(tx + ty, l2[2])
        return both_ways(tx, l2[0]).sub_(pj), both_ways(ty, l2[1]).sub_(pj)
    r = torch.exp2(-l2)  # 1 / S, all in [1/N, 1]

    def reciprocal_pair(i):
        return r[i, lo:hi, None] + r[i, None, col_lo:]
    ex, ey = _exp2_(tx), _exp2_(ty)
    pj = (ex * ey).mul_(reciprocal_pair(2))
    return ex.mul_(reciprocal_pair(0)).sub_(pj), ey.mul_(reciprocal_pair(1)).sub_(pj)


def _add_symmetric_share(g, s, v, lo, hi):
    """G_k += sum_j S_kj (v_k - v_j) for rows lo:hi over columns lo:N, and the transposed share
    of the columns hi:N over rows lo:hi (S is symmetric)."""
    g[lo:hi] += torch.addmm(s.sum(1, keepdim=True) * v[lo:hi], s, v[lo:], alpha=-1.0)
    below = s[:, hi - lo:]
    g[hi:] += torch.addmm(below.sum(0)[:, None] * v[hi:], below.T, v[lo:hi], alpha=-1.0)


def pair_grads(x, y, log_sums, loo, rows=None):
    """G_k = sum_j S_kj (x_k - x_j) for x and y, rows start:stop (default all), before the 2 ln2 / N
    factor; log_sums: (3, N), every row's."""
    n = x.shape[0]
    start, stop, whole = _row_range(rows, n)
    nx, ny = x.square().sum(1), y.square().sum(1)
    gx = torch.zeros((stop - start, x.shape[1]), dtype=x.dtype, device=x.device)
    gy = torch.zeros((stop - start, y.shape[1]), dtype=y.dtype, device=y.device)
    for lo, hi in _row_blocks(n, start, stop):
        col_lo = lo if whole else 0
        sx, sy = _pair_weights(*_tiles(x, y, nx, ny, lo, hi, col_lo, loo), log_sums, lo, hi, col_lo, loo)
        if whole:
            _add_symmetric_share(gx, sx, x, lo, hi)
            _add_symmetric_share(gy, sy, y, lo, hi)
        else:
            gx[lo - start:hi - start] = torch.addmm(sx.sum(1, keepdim=True) * x[lo:hi], sx, x, alpha=-1.0)
            gy[lo - start:hi - start] = torch.addmm(sy.sum(1, keepdim=True) * y[lo:hi], sy, y, alpha=-1.0)
    return gx, gy
