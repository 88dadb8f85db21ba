"""Triton kernels of the pairwise Gaussian-KDE MI estimator (autograd and API: fastmi/estimators/kde.py;
the math: docs/design.md, "The KDE estimator").

Both kernels take inputs that fastmi.estimators.kde has already centred and scaled so that the Gaussian kernel
of a pair is exp2(-||x_i - x_j||^2) (bandwidth, bound and log2(e) folded into the scale). They work
on (BM x BN) tiles of pairs built from Gram tiles, never on an N x N buffer:

    d_ij = |x_i|^2 + |x_j|^2 - 2 x_i.x_j  (clamped at 0, diagonal forced to 0)

Forward, per row i and column split:   L_i = ln sum_j exp2(-d_ij)   for x, y and the joint (d^x + d^y).
Backward, per row k:  G_k = sum_j S_kj (x_k - x_j)   with S = W + W^T, W = P^x - P^joint.
"""
import torch
import triton
import triton.language as tl

from .launch import check_matrix, check_same_rows, launch, wide

LN2: tl.constexpr = tl.constexpr(0.6931471805599453)
LOG2E: tl.constexpr = tl.constexpr(1.4426950408889634)


@triton.jit
def _indices(start, size: tl.constexpr, WIDE: tl.constexpr):
    """start + arange(size), in int64 when offsets can pass 2^31 - 1 (WIDE)."""
    idx = start + tl.arange(0, size)
    if WIDE:
        idx = idx.to(tl.int64)
    return idx


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
                    BKX: tl.constexpr, BKY: tl.constexpr, DOT_PRECISION: tl.constexpr, WIDE: tl.constexpr):
    pid_m = tl.program_id(0)
    split = tl.program_id(1)
    n_splits = tl.num_programs(1)
    rows = _indices(row_start + pid_m * BM, BM, WIDE)
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
        cols = _indices(start, BN, WIDE)
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

    S^x_kj = P^x_kj + P^x_jk - P^J_kj - P^J_jk with P^x_kj = exp2(t_kj - l^x_k).
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
                    DOT_PRECISION: tl.constexpr, WIDE: tl.constexpr):
    pid_m = tl.program_id(0)
    split = tl.program_id(1)
    chunk = tl.program_id(2)
    rows = _indices(row_start + pid_m * BM, BM, WIDE)
    feats = chunk * BF + tl.arange(0, BF)
    lx_i, ly_i, lj_i = _log2_sums(L, rows, N)
    acc_x = tl.zeros((BM, BF), dtype=tl.float32)
    acc_y = tl.zeros((BM, BF), dtype=tl.float32)
    rowsum_x = tl.zeros((BM,), dtype=tl.float32)
    rowsum_y = tl.zeros((BM,), dtype=tl.float32)
    col_lo = split * cols_per_split
    for start in range(col_lo, col_lo + cols_per_split, BN):
        cols = _indices(start, BN, WIDE)
        tx, ty = _neg_sq_dist_tiles(X, Y, NX, NY, rows, cols, N, DX, DY, stride_x, stride_y, LOO,
                                    BM, BN, BKX, BKY, DOT_PRECISION)
        lx_j, ly_j, lj_j = _log2_sums(L, cols, N)
        w_x, w_y = _pair_weights(tx, ty, lx_i, lx_j, ly_i, ly_j, lj_i, lj_j, LOO)
        rowsum_x += tl.sum(w_x, 1)
        rowsum_y += tl.sum(w_y, 1)
        acc_x = _weighted_diff_tile(acc_x, w_x, X, rows, cols, feats, N, DX, stride_x, DOT_PRECISION)
        acc_y = _weighted_diff_tile(acc_y, w_y, Y, rows, cols, feats, N, DY, stride_y, DOT_PRECISION)
    n_out = row_stop - row_start
    if WIDE:
        split = split.to(tl.int64)
    _store_grad(GX + split * n_out * DX, acc_x, rowsum_x, X, rows, row_start, row_stop, feats, DX, stride_x)
    _store_grad(GY + split * n_out * DY, acc_y, rowsum_y, Y, rows, row_start, row_stop, feats, DY, stride_y)


# ----------------------------------------------------------------------------------- launchers

FWD = dict(BM=64, BN=64, num_warps=4)
BWD = dict(BM=64, BN=64, BF=64, num_warps=4)


def _feature_block(d):
    return max(16, min(64, triton.next_power_of_2(d)))


def _dot_precision(dtype):
    # tf32 alone truncates the operands and biases distances at D >= 256; tf32x3 keeps ~fp32 accuracy.
    return "tf32x3" if dtype == torch.float32 else None  # fp16/bf16: tensor cores, fp32 accumulate


def _row_range(rows, n):
    start, stop = rows or (0, n)
    if not 0 <= start < stop <= n:
        raise ValueError(f"rows must be a range (start, stop) with 0 <= start < stop <= {n}, got {rows}")
    return start, stop


def _column_splits(n, n_rows, bm, bn, splits, device):
    """Columns per split (a multiple of BN) and the split count: enough programs to fill the GPU."""
    col_blocks = triton.cdiv(n, bn)
    if splits is None:
        if device.type != "cuda":  # the interpreter: one program at a time anyway
            splits = 1
        else:
            sms = torch.cuda.get_device_properties(device).multi_processor_count
            splits = triton.cdiv(2 * sms, triton.cdiv(n_rows, bm))
    splits = max(1, min(int(splits), col_blocks))
    cols_per_split = triton.cdiv(col_blocks, splits) * bn
    return cols_per_split, triton.cdiv(n, cols_per_split)


def _check_operands(x, y):
    check_matrix(x, "x")
    check_matrix(y, "y", (x.dtype,))
    check_same_rows(("x", x), ("y", y))


def _sq_norms(x):
    # From the same rounded operands that enter tl.dot, so that d_ii is ~0 and d_ij is consistent.
    return x.float().square().sum(1).contiguous()


def _meta(x, y):
    return dict(BKX=_feature_block(x.shape[1]), BKY=_feature_block(y.shape[1]), DOT_PRECISION=_dot_precision(x.dtype))


def log_sums(x, y, loo, rows=None, splits=None, wide_offsets=None):
    """Natural-log kernel sums ln SX, ln SY, ln SJ of rows start:stop (default all) against every
    column: float32 tensor (3, stop - start). wide_offsets: int64 offsets (default: where needed)."""
    _check_operands(x, y)
    n = x.shape[0]
    start, stop = _row_range(rows, n)
    cols_per_split, n_splits = _column_splits(n, stop - start, FWD["BM"], FWD["BN"], splits, x.device)
    partial = torch.empty((3, n_splits, stop - start), device=x.device, dtype=torch.float32)
    grid = (triton.cdiv(stop - start, FWD["BM"]), n_splits)
    wide_offsets = wide(x, y, partial) if wide_offsets is None else wide_offsets
    launch(_kde_fwd_kernel, grid, x, y, _sq_norms(x), _sq_norms(y), partial, n, start, stop, x.shape[1],
           y.shape[1], x.stride(0), y.stride(0), cols_per_split, LOO=loo, WIDE=wide_offsets, **FWD, **_meta(x, y))
    return torch.logsumexp(partial, dim=1) if n_splits > 1 else partial[:, 0]


def pair_grads(x, y, sums, loo, rows=None, splits=None, wide_offsets=None):
    """G_k = sum_j S_kj (x_k - x_j) for x and for y (float32) of rows start:stop (default all), before
    the 2 ln2 / N factor; sums: (3, N) float32 log-sums, every row's."""
    _check_operands(x, y)
    n, dx = x.shape
    dy = y.shape[1]
    start, stop = _row_range(rows, n)
    if sums.shape != (3, n) or sums.dtype != torch.float32:
        raise ValueError(f"sums must be the (3, {n}) float32 log-sums of every row, got {tuple(sums.shape)} {sums.dtype}")
    cols_per_split, n_splits = _column_splits(n, stop - start, BWD["BM"], BWD["BN"], splits, x.device)
    gx = torch.empty((n_splits, stop - start, dx), device=x.device, dtype=torch.float32)
    gy = torch.empty((n_splits, stop - start, dy), device=x.device, dtype=torch.float32)
    grid = (triton.cdiv(stop - start, BWD["BM"]), n_splits, triton.cdiv(max(dx, dy), BWD["BF"]))
    wide_offsets = wide(x, y, gx, gy) if wide_offsets is None else wide_offsets
    launch(_kde_bwd_kernel, grid, x, y, _sq_norms(x), _sq_norms(y), sums.contiguous(), gx, gy, n, start, stop,
           dx, dy, x.stride(0), y.stride(0), cols_per_split, LOO=loo, WIDE=wide_offsets, **BWD, **_meta(x, y))
    return gx.sum(0), gy.sum(0)


def compile_examples():
    """Launches on small CPU tensors that select every variant the launchers use (for compile_check)."""
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        x, y = torch.randn(300, 70).to(dtype), torch.randn(300, 5).to(dtype)
        for loo in (False, True):
            log_sums(x, y, loo, splits=2)
            pair_grads(x, y, torch.zeros(3, 300), loo, splits=2)
    x, y = torch.randn(300, 70), torch.randn(300, 5)
    log_sums(x, y, False, splits=2, wide_offsets=True)
    pair_grads(x, y, torch.zeros(3, 300), False, splits=2, wide_offsets=True)
