"""Triton kernels of the dependence measures' pair sums (autograd and the math: fastmi/measures/pair_sums.py,
docs/design.md, "Dependence measures"), built from the KDE kernels' tiles (kernels/kde.py).

For two operands x, y (N rows each) and their pair values P_ij = p(x_i, x_j), Q_ij = p(y_i, y_j) of one
kind, either the RBF kernel exp2(-||x_i - x_j||^2) (the launcher's caller folds 1 / (2 sigma^2) and
log2 e into the operands) or the distance ||x_i - x_j|| (0 on the diagonal):

    forward  (_gram_fwd_kernel), per row i of a range, over every column j (5 rows; each tile's sums in
             float32, added across tiles in float64):
             sum_j P_ij,  sum_j Q_ij,  sum_j P_ij^2,  sum_j P_ij Q_ij,  sum_j Q_ij^2
    backward (_gram_bwd_kernel), per row k of a range:  G^x_k = sum_j W^x_kj (x_k - x_j)  and G^y_k, with
             W^x_kj = (c_xx P_kj + c_xy Q_kj + f^x_k + f^x_j) p'(P_kj),
             W^y_kj = (c_xy P_kj + c_yy Q_kj + f^y_k + f^y_j) p'(Q_kj),
             p'(P) = P (rbf: the caller folds -2 ln 2 into c and f) or 1 / P (distance; 0 where P = 0),

the coefficients c (3 scalars) and row factors f (2 rows) coming from the measure's gradient. Distances
are the KDE kernels' Gram-tile distances (tf32x3 for float32 operands); one exp2 (rbf) or sqrt
(distance) per pair and operand, forward and backward.
"""
import torch
import triton
import triton.language as tl

from .launch import launch, wide
from .tiles import (
    accumulate_grads,
    backward_launch,
    backward_program,
    check_operands,
    column_splits,
    exponent_tile,
    feature_block,
    fp32_split,
    grad_accumulators,
    indices,
    layer_operand,
    mma_operands,
    padded,
    row_range,
    sq_norms,
    store_grads,
)

SUMS = 5  # rows of the forward's output: sum P, sum Q, sum P^2, sum PQ, sum Q^2
# The forward's tiles: 128 x 32 pairs at 8 warps, one stage, keep its five float64 row accumulators free
# of spills on sm_80 and sm_90 (64 x 32 at 4 warps, the KDE's, spills 16 bytes on sm_80 fp16/bf16).
FWD = dict(BM=128, BN=32, num_warps=8, num_stages=1)


@triton.jit
def _pair_values(t, DISTANCE: tl.constexpr):
    """P of a tile from its exponents t = -d^2: exp2(t), or the distance sqrt(-t); 0 past column N,
    whose t is -inf (the padded norms)."""
    if DISTANCE:
        return tl.where(t == float("-inf"), 0.0, tl.sqrt(-t))
    return tl.exp2(t)


@triton.jit
def _slope(p, DISTANCE: tl.constexpr):
    """p'(P) with dP_kj / dx_k = p'(P_kj) (x_k - x_j), up to the constant the caller folds in."""
    if DISTANCE:
        return tl.where(p > 0, 1.0 / tl.where(p > 0, p, 1.0), 0.0)
    return p


@triton.jit
def _pair_tiles(X, XL, Y, YL, NX, NY, rows, cols, nx_i, ny_i, N, DX, DY, stride_x, stride_y, DISTANCE: tl.constexpr,
                BM: tl.constexpr, BN: tl.constexpr, BKX: tl.constexpr, BKY: tl.constexpr, SPLIT: tl.constexpr):
    """(P, Q) of a (BM x BN) tile of pairs (rows, cols)."""
    p = _pair_values(exponent_tile(X, XL, NX, rows, cols, nx_i, N, 0, DX, stride_x, False, BM, BN, BKX, SPLIT),
                     DISTANCE)
    q = _pair_values(exponent_tile(Y, YL, NY, rows, cols, ny_i, N, 0, DY, stride_y, False, BM, BN, BKY, SPLIT),
                     DISTANCE)
    return p, q


@triton.jit
def _gram_fwd_kernel(X, XL, Y, YL, NX, NY, OUT, N, row_start, row_stop, DX, DY, stride_x, stride_y, cols_per_split,
                     DISTANCE: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BKX: tl.constexpr,
                     BKY: tl.constexpr, SPLIT: tl.constexpr, WIDE: tl.constexpr):
    """OUT[s, split, i - row_start]: the SUMS row sums of one column split."""
    row_lo = row_start + tl.program_id(0) * BM
    split = tl.program_id(1)
    rows = tl.minimum(indices(row_lo, BM, WIDE), N - 1)
    nx_i = tl.load(NX + rows)
    ny_i = tl.load(NY + rows)
    p_sum = tl.zeros((BM,), dtype=tl.float64)  # float64 across tiles: HSIC is a small difference of these sums
    q_sum, pp_sum, pq_sum, qq_sum = p_sum, p_sum, p_sum, p_sum
    col_lo = split * cols_per_split
    for start in range(col_lo, tl.minimum(col_lo + cols_per_split, N), BN):
        cols = indices(start, BN, WIDE)
        p, q = _pair_tiles(X, XL, Y, YL, NX, NY, rows, cols, nx_i, ny_i, N, DX, DY, stride_x, stride_y, DISTANCE, BM,
                           BN, BKX, BKY, SPLIT)
        p_sum += tl.sum(p, 1).to(tl.float64)
        q_sum += tl.sum(q, 1).to(tl.float64)
        pp_sum += tl.sum(p * p, 1).to(tl.float64)
        pq_sum += tl.sum(p * q, 1).to(tl.float64)
        qq_sum += tl.sum(q * q, 1).to(tl.float64)
    rows = indices(row_lo, BM, WIDE)
    n_out = row_stop - row_start
    if WIDE:
        n_out = n_out.to(tl.int64)
    step = tl.num_programs(1) * n_out
    out = OUT + split * n_out + (rows - row_start)
    mask = rows < row_stop
    tl.store(out, p_sum, mask=mask)
    tl.store(out + step, q_sum, mask=mask)
    tl.store(out + 2 * step, pp_sum, mask=mask)
    tl.store(out + 3 * step, pq_sum, mask=mask)
    tl.store(out + 4 * step, qq_sum, mask=mask)


@triton.jit
def _gram_bwd_kernel(X, XL, Y, YL, NX, NY, F, C, GX, GY, N, NP, row_start, row_stop, DX, DY, stride_x, stride_y,
                     cols_per_split, DISTANCE: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BKX: tl.constexpr,
                     BKY: tl.constexpr, BF: tl.constexpr, SPLIT: tl.constexpr, WIDE: tl.constexpr):
    row_lo, split, feats, rows, NP = backward_program(row_start, N, NP, BM, BF, WIDE)
    nx_i = tl.load(NX + rows)
    ny_i = tl.load(NY + rows)
    fx_i = tl.load(F + rows)
    fy_i = tl.load(F + NP + rows)
    c_xx = tl.load(C)
    c_xy = tl.load(C + 1)
    c_yy = tl.load(C + 2)
    acc_x, acc_y, rowsum_x, rowsum_y = grad_accumulators(BM, BF)
    col_lo = split * cols_per_split
    for start in range(col_lo, tl.minimum(col_lo + cols_per_split, N), BN):
        cols = indices(start, BN, WIDE)
        p, q = _pair_tiles(X, XL, Y, YL, NX, NY, rows, cols, nx_i, ny_i, N, DX, DY, stride_x, stride_y, DISTANCE, BM,
                           BN, BKX, BKY, SPLIT)
        fx_j = tl.load(F + cols)
        fy_j = tl.load(F + NP + cols)
        # the diagonal adds W_kk (x_k - x_k) = 0: dropped, not left to cancel in the GEMM form below
        off = rows[:, None] != cols[None, :]
        w_x = tl.where(off, (c_xx * p + c_xy * q + fx_i[:, None] + fx_j[None, :]) * _slope(p, DISTANCE), 0.0)
        w_y = tl.where(off, (c_xy * p + c_yy * q + fy_i[:, None] + fy_j[None, :]) * _slope(q, DISTANCE), 0.0)
        acc_x, acc_y, rowsum_x, rowsum_y = accumulate_grads(acc_x, acc_y, rowsum_x, rowsum_y, w_x, w_y, X, XL, Y,
                                                             YL, cols, feats, N, DX, DY, stride_x, stride_y, SPLIT)
    store_grads(GX, GY, acc_x, acc_y, rowsum_x, rowsum_y, X, XL, Y, YL, row_lo, row_start, row_stop, split, feats, DX,
                 DY, stride_x, stride_y, BM, SPLIT, WIDE)


# ----------------------------------------------------------------------------------- launchers

def row_sums(x, y, distance, rows=None, splits=None, wide_offsets=None):
    """(SUMS, stop - start) float64: per row start:stop (default all), over every column, sum P, sum Q,
    sum P^2, sum PQ, sum Q^2 (module docstring; P, Q the rbf kernels exp2(-d^2) or the distances)."""
    check_operands(x, y)
    n = x.shape[0]
    start, stop = row_range(rows, n)
    x, y = layer_operand(x), layer_operand(y)
    cols_per_split, n_splits = column_splits(n, stop - start, FWD["BM"], FWD["BN"], splits, x.device)
    out = torch.empty((SUMS, n_splits, stop - start), device=x.device, dtype=torch.float64)
    norms_x, norms_y = (sq_norms(v, [0, v.shape[1]], FWD["BN"])[0] for v in (x, y))
    wide_offsets = wide(x, y, out, norms_x) if wide_offsets is None else wide_offsets
    grid = (triton.cdiv(stop - start, FWD["BM"]), n_splits)
    launch(_gram_fwd_kernel, grid, *mma_operands(x), *mma_operands(y), norms_x, norms_y, out, n, start, stop,
           x.shape[1], y.shape[1], x.stride(0), y.stride(0), cols_per_split, DISTANCE=distance,
           BKX=feature_block(x.shape[1], x.dtype), BKY=feature_block(y.shape[1], y.dtype),
           SPLIT=fp32_split(x.dtype), WIDE=wide_offsets, **FWD)
    return out.sum(1)


def pair_grads(x, y, coefficients, factors, distance, rows=None, splits=None, wide_offsets=None):
    """(G^x, G^y) float32 of rows start:stop (default all): G^x_k = sum_j W^x_kj (x_k - x_j) (module
    docstring); coefficients: (c_xx, c_xy, c_yy), factors: (2, N) the rows f^x, f^y (float32)."""
    check_operands(x, y)
    n = x.shape[0]
    if factors.shape != (2, n):
        raise ValueError(f"factors must be (2, {n}), got {tuple(factors.shape)}")
    coefficients = torch.as_tensor(coefficients, dtype=torch.float32, device=x.device).reshape(3)
    return backward_launch(_gram_bwd_kernel, x, y, lambda padded_n: (padded(factors.float(), padded_n, 0.0),
                                                                      coefficients), rows, splits, wide_offsets,
                           DISTANCE=distance)


def compile_examples():
    """Launches on small CPU tensors that select every variant the launchers use (for compile_check)."""
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        x, y = torch.randn(300, 64).to(dtype), torch.randn(300, 64).to(dtype)
        for distance in (False, True):
            row_sums(x, y, distance, splits=2)
            pair_grads(x, y, (1.0, 1.0, 1.0), torch.zeros(2, 300), distance, splits=2)
        wide_layers = torch.randn(300, 512).to(dtype), torch.randn(300, 512).to(dtype)  # the 128-feature chunk
        pair_grads(*wide_layers, (1.0, 1.0, 1.0), torch.zeros(2, 300), False)
    x, y = torch.randn(300, 70), torch.randn(300, 5)
    row_sums(x, y, False, splits=2, wide_offsets=True)
    pair_grads(x, y, (1.0, 1.0, 1.0), torch.zeros(2, 300), False, splits=2, wide_offsets=True)
