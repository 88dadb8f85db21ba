"""Triton kernels of the pairwise Gaussian-KDE MI estimator (autograd and API: fastmi/kde.py).

Both kernels take inputs that fastmi.kde has already centred and scaled so that the Gaussian kernel
of a pair is exp2(-||x_i - x_j||^2) (bandwidth, bound and log2(e) folded into the scale). They work
on (BM x BN) tiles of pairs built from Gram tiles, never on an N x N buffer:

    d_ij = |x_i|^2 + |x_j|^2 - 2 x_i.x_j  (clamped at 0, diagonal forced to 0)

Forward, per row i and column split:   L_i = ln sum_j exp2(-d_ij)   for x, y and the joint (d^x + d^y).
Backward, per row k:  G_k = sum_j S_kj (x_k - x_j)   with S = W + W^T, W = P^x - P^joint (DESIGN.md).
"""
import torch
import triton
import triton.language as tl

LN2: tl.constexpr = tl.constexpr(0.6931471805599453)
LOG2E: tl.constexpr = tl.constexpr(1.4426950408889634)


@triton.jit
def _neg_sq_dist_tile(X, norms, rows, cols, N, D, stride, LOO: tl.constexpr,
                      BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                      DOT_PRECISION: tl.constexpr):
    """-d_ij for a (BM x BN) tile; -inf where column j is out of range (and on the diagonal if LOO)."""
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k in range(0, D, BK):
        f = k + tl.arange(0, BK)
        xi = tl.load(X + rows[:, None] * stride + f[None, :],
                     mask=(rows[:, None] < N) & (f[None, :] < D), other=0.0)
        xj = tl.load(X + cols[:, None] * stride + f[None, :],
                     mask=(cols[:, None] < N) & (f[None, :] < D), other=0.0)
        acc = tl.dot(xi, tl.trans(xj), acc, input_precision=DOT_PRECISION)
    ni = tl.load(norms + rows, mask=rows < N, other=0.0)
    nj = tl.load(norms + cols, mask=cols < N, other=0.0)
    d = tl.maximum(ni[:, None] + nj[None, :] - 2.0 * acc, 0.0, propagate_nan=tl.PropagateNan.ALL)
    diagonal = rows[:, None] == cols[None, :]
    if LOO:
        d = tl.where(diagonal, float("inf"), d)
    else:
        d = tl.where(diagonal, 0.0, d)
    return tl.where(cols[None, :] < N, -d, float("-inf"))


@triton.jit
def _neg_sq_dist_tiles(X, Y, NX, NY, rows, cols, N, DX, DY, stride_x, stride_y, LOO: tl.constexpr,
                       BM: tl.constexpr, BN: tl.constexpr, BKX: tl.constexpr, BKY: tl.constexpr,
                       DOT_PRECISION: tl.constexpr):
    tx = _neg_sq_dist_tile(X, NX, rows, cols, N, DX, stride_x, LOO, BM, BN, BKX, DOT_PRECISION)
    ty = _neg_sq_dist_tile(Y, NY, rows, cols, N, DY, stride_y, LOO, BM, BN, BKY, DOT_PRECISION)
    return tx, ty


@triton.jit
def _log2_sums(L, idx, N):
    """Base-2 log-sums (x, y, joint) at indices idx, from the (3, N) natural-log sums L."""
    keep = idx < N
    lx = tl.load(L + idx, mask=keep, other=0.0) * LOG2E
    ly = tl.load(L + N + idx, mask=keep, other=0.0) * LOG2E
    lj = tl.load(L + 2 * N + idx, mask=keep, other=0.0) * LOG2E
    return lx, ly, lj


@triton.jit
def _online_log2_sum(m, s, t):
    """Running (max, sum) of exp2 over a row: sum_j exp2(t_j) = exp2(m) * s (flash-attention style)."""
    m_new = tl.maximum(m, tl.max(t, 1))
    shift = tl.where(m_new == float("-inf"), 0.0, m_new)
    s = s * tl.exp2(m - shift) + tl.sum(tl.exp2(t - shift[:, None]), 1)
    return m_new, s


@triton.jit
def _kde_fwd_kernel(X, Y, NX, NY, L, N, row_start, row_stop, DX, DY, stride_x, stride_y, cols_per_split,
                    LOO: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                    BKX: tl.constexpr, BKY: tl.constexpr, DOT_PRECISION: tl.constexpr):
    pid_m = tl.program_id(0)
    split = tl.program_id(1)
    n_splits = tl.num_programs(1)
    rows = row_start + pid_m * BM + tl.arange(0, BM)
    # Without LOO every exponent is <= 0 and the diagonal gives exactly 0: the row max is 0, so
    # plain sums in [1, N] need no rescaling and the joint term is exp2(tx) * exp2(ty) (2 exps/pair).
    mx = tl.zeros((BM,), dtype=tl.float32)
    my = tl.zeros((BM,), dtype=tl.float32)
    mj = tl.zeros((BM,), dtype=tl.float32)
    if LOO:
        mx = mx + float("-inf")
        my = my + float("-inf")
        mj = mj + float("-inf")
    sx = tl.zeros((BM,), dtype=tl.float32)
    sy = tl.zeros((BM,), dtype=tl.float32)
    sj = tl.zeros((BM,), dtype=tl.float32)
    col_lo = split * cols_per_split
    for start in range(col_lo, col_lo + cols_per_split, BN):
        cols = start + tl.arange(0, BN)
        tx, ty = _neg_sq_dist_tiles(X, Y, NX, NY, rows, cols, N, DX, DY, stride_x, stride_y, LOO,
                                    BM, BN, BKX, BKY, DOT_PRECISION)
        if LOO:
            mx, sx = _online_log2_sum(mx, sx, tx)
            my, sy = _online_log2_sum(my, sy, ty)
            mj, sj = _online_log2_sum(mj, sj, tx + ty)
        else:
            ex = tl.exp2(tx)
            ey = tl.exp2(ty)
            sx += tl.sum(ex, 1)
            sy += tl.sum(ey, 1)
            sj += tl.sum(ex * ey, 1)
    keep = rows < row_stop
    n_out = row_stop - row_start
    out = L + split * n_out + rows - row_start
    tl.store(out, (mx + tl.log2(sx)) * LN2, mask=keep)
    tl.store(out + n_splits * n_out, (my + tl.log2(sy)) * LN2, mask=keep)
    tl.store(out + 2 * n_splits * n_out, (mj + tl.log2(sj)) * LN2, mask=keep)


@triton.jit
def _pair_weights(tx, ty, lx_i, lx_j, ly_i, ly_j, lj_i, lj_j, LOO: tl.constexpr):
    """S^x_kj and S^y_kj of one tile from exponents t and base-2 log-sums l (rows i, columns j).

    S^x_kj = P^x_kj + P^x_jk - P^J_kj - P^J_jk with P^x_kj = exp2(t_kj - l^x_k) (DESIGN.md, backward).
    Without LOO l >= 0, so exp2(t) * (exp2(-l_k) + exp2(-l_j)) cannot overflow: 2 exps per pair.
    """
    if LOO:
        tj = tx + ty
        pj = tl.exp2(tj - lj_i[:, None]) + tl.exp2(tj - lj_j[None, :])
        w_x = tl.exp2(tx - lx_i[:, None]) + tl.exp2(tx - lx_j[None, :]) - pj
        w_y = tl.exp2(ty - ly_i[:, None]) + tl.exp2(ty - ly_j[None, :]) - pj
    else:
        ex = tl.exp2(tx)
        ey = tl.exp2(ty)
        pj = ex * ey * (tl.exp2(-lj_i)[:, None] + tl.exp2(-lj_j)[None, :])
        w_x = ex * (tl.exp2(-lx_i)[:, None] + tl.exp2(-lx_j)[None, :]) - pj
        w_y = ey * (tl.exp2(-ly_i)[:, None] + tl.exp2(-ly_j)[None, :]) - pj
    return w_x, w_y


@triton.jit
def _weighted_diff_tile(acc, w, X, rows, cols, feats, N, D, stride, DOT_PRECISION: tl.constexpr):
    """acc += w @ X[cols, feats] (the sum_j S_kj x_j half of G_k)."""
    xj = tl.load(X + cols[:, None] * stride + feats[None, :],
                 mask=(cols[:, None] < N) & (feats[None, :] < D), other=0.0)
    return tl.dot(w.to(xj.dtype), xj, acc, input_precision=DOT_PRECISION)


@triton.jit
def _store_grad(G, acc, rowsum, X, rows, row_start, row_stop, feats, D, stride):
    """G_k = (sum_j S_kj) x_k - sum_j S_kj x_j for one split's share of the columns."""
    mask = (rows[:, None] < row_stop) & (feats[None, :] < D)
    xi = tl.load(X + rows[:, None] * stride + feats[None, :], mask=mask, other=0.0).to(tl.float32)
    tl.store(G + (rows[:, None] - row_start) * D + feats[None, :], rowsum[:, None] * xi - acc, mask=mask)


@triton.jit
def _kde_bwd_kernel(X, Y, NX, NY, L, GX, GY, N, row_start, row_stop, DX, DY, stride_x, stride_y,
                    cols_per_split,
                    LOO: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                    BKX: tl.constexpr, BKY: tl.constexpr, BF: tl.constexpr,
                    DOT_PRECISION: tl.constexpr):
    pid_m = tl.program_id(0)
    split = tl.program_id(1)
    chunk = tl.program_id(2)
    rows = row_start + pid_m * BM + tl.arange(0, BM)
    feats = chunk * BF + tl.arange(0, BF)
    lx_i, ly_i, lj_i = _log2_sums(L, rows, N)
    acc_x = tl.zeros((BM, BF), dtype=tl.float32)
    acc_y = tl.zeros((BM, BF), dtype=tl.float32)
    rowsum_x = tl.zeros((BM,), dtype=tl.float32)
    rowsum_y = tl.zeros((BM,), dtype=tl.float32)
    col_lo = split * cols_per_split
    for start in range(col_lo, col_lo + cols_per_split, BN):
        cols = start + tl.arange(0, BN)
        tx, ty = _neg_sq_dist_tiles(X, Y, NX, NY, rows, cols, N, DX, DY, stride_x, stride_y, LOO,
                                    BM, BN, BKX, BKY, DOT_PRECISION)
        lx_j, ly_j, lj_j = _log2_sums(L, cols, N)
        w_x, w_y = _pair_weights(tx, ty, lx_i, lx_j, ly_i, ly_j, lj_i, lj_j, LOO)
        rowsum_x += tl.sum(w_x, 1)
        rowsum_y += tl.sum(w_y, 1)
        acc_x = _weighted_diff_tile(acc_x, w_x, X, rows, cols, feats, N, DX, stride_x, DOT_PRECISION)
        acc_y = _weighted_diff_tile(acc_y, w_y, Y, rows, cols, feats, N, DY, stride_y, DOT_PRECISION)
    n_out = row_stop - row_start
    _store_grad(GX + split * n_out * DX, acc_x, rowsum_x, X, rows, row_start, row_stop, feats, DX, stride_x)
    _store_grad(GY + split * n_out * DY, acc_y, rowsum_y, Y, rows, row_start, row_stop, feats, DY, stride_y)


# ----------------------------------------------------------------------------------- launchers

def _is_interpreting():
    import os
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _feature_block(d):
    return max(16, min(64, triton.next_power_of_2(d)))


def _dot_precision(dtype):
    # tf32 alone truncates the operands and biases distances at D >= 256; tf32x3 keeps ~fp32 accuracy.
    return "tf32x3" if dtype == torch.float32 else None  # fp16/bf16: tensor cores, fp32 accumulate


def _row_range(rows, n):
    start, stop = rows or (0, n)
    assert 0 <= start < stop <= n, (rows, n)
    return start, stop


def _column_splits(n, n_rows, bm, bn, splits):
    """Columns per split (a multiple of BN) and the split count: enough programs to fill the GPU."""
    col_blocks = triton.cdiv(n, bn)
    if splits is None:
        if _is_interpreting():
            splits = 1
        else:
            sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
            splits = triton.cdiv(2 * sms, triton.cdiv(n_rows, bm))
    splits = max(1, min(int(splits), col_blocks))
    cols_per_split = triton.cdiv(col_blocks, splits) * bn
    return cols_per_split, triton.cdiv(n, cols_per_split)


def _check_operands(x, y):
    assert x.dim() == 2 and y.dim() == 2 and x.shape[0] == y.shape[0], (x.shape, y.shape)
    if x.numel() >= 2**31 or y.numel() >= 2**31:  # the kernels index with int32 offsets
        raise ValueError(f"the Triton kernels take at most 2^31 - 1 elements per input, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}; use backend='torch' or fewer samples")
    assert x.is_contiguous() and y.is_contiguous(), "kernels index rows with stride(0), columns with 1"
    assert x.dtype == y.dtype and x.dtype in (torch.float32, torch.float16, torch.bfloat16), x.dtype
    assert x.device == y.device


def _sq_norms(x):
    # From the same rounded operands that enter tl.dot, so that d_ii is ~0 and d_ij is consistent.
    return x.float().square().sum(1).contiguous()


FWD_BLOCKS = dict(BM=64, BN=64)
BWD_BLOCKS = dict(BM=64, BN=64, BF=64)


def kde_forward(x, y, loo, splits=None, rows=None):
    """Natural-log kernel sums ln SX, ln SY, ln SJ of rows start:stop (default all) against every
    column: float32 tensor (3, stop - start)."""
    _check_operands(x, y)
    n, dx = x.shape
    dy = y.shape[1]
    start, stop = _row_range(rows, n)
    bm, bn = FWD_BLOCKS["BM"], FWD_BLOCKS["BN"]
    cols_per_split, n_splits = _column_splits(n, stop - start, bm, bn, splits)
    partial = torch.empty((3, n_splits, stop - start), device=x.device, dtype=torch.float32)
    grid = (triton.cdiv(stop - start, bm), n_splits)
    _kde_fwd_kernel[grid](x, y, _sq_norms(x), _sq_norms(y), partial, n, start, stop, dx, dy,
                          x.stride(0), y.stride(0), cols_per_split, LOO=loo, BM=bm, BN=bn,
                          BKX=_feature_block(dx), BKY=_feature_block(dy),
                          DOT_PRECISION=_dot_precision(x.dtype), num_warps=4)
    return torch.logsumexp(partial, dim=1) if n_splits > 1 else partial[:, 0]


def kde_backward(x, y, log_sums, loo, splits=None, rows=None):
    """G_k = sum_j S_kj (x_k - x_j) for x and for y (float32) of rows start:stop (default all), before
    the 2 ln2 / N factor; log_sums: (3, N), every row's."""
    _check_operands(x, y)
    n, dx = x.shape
    dy = y.shape[1]
    start, stop = _row_range(rows, n)
    assert log_sums.shape == (3, n) and log_sums.dtype == torch.float32
    bm, bn, bf = BWD_BLOCKS["BM"], BWD_BLOCKS["BN"], BWD_BLOCKS["BF"]
    cols_per_split, n_splits = _column_splits(n, stop - start, bm, bn, splits)
    assert n_splits * n * max(dx, dy) < 2**31, "partial gradients would overflow int32 offsets"
    gx = torch.empty((n_splits, stop - start, dx), device=x.device, dtype=torch.float32)
    gy = torch.empty((n_splits, stop - start, dy), device=x.device, dtype=torch.float32)
    grid = (triton.cdiv(stop - start, bm), n_splits, triton.cdiv(max(dx, dy), bf))
    _kde_bwd_kernel[grid](x, y, _sq_norms(x), _sq_norms(y), log_sums.contiguous(), gx, gy, n, start, stop,
                          dx, dy, x.stride(0), y.stride(0), cols_per_split, LOO=loo, BM=bm, BN=bn,
                          BKX=_feature_block(dx), BKY=_feature_block(dy), BF=bf,
                          DOT_PRECISION=_dot_precision(x.dtype), num_warps=4)
    return gx.sum(0), gy.sum(0)
