"""The pair-tile building blocks shared by the KDE's kernels (kernels/kde.py) and the dependence
measures' (kernels/gram.py): Gram-tile distances -d_ij = 2 x_i.x_j - |x_i|^2 - |x_j|^2 (tf32x3 for float32
operands, one MMA for fp16/bf16), the backward's weighted sums G_k = sum_j W_kj (x_k - x_j), and the
launchers' operand preparation (aligned layers, tf32 hi/lo parts, padded norms), row ranges and column
splits. The math: docs/design.md, "The KDE estimator".
"""
import contextlib

import torch
import triton
import triton.language as tl

from .launch import check_matrix, check_same_rows, launch, wide

ALIGN = 16  # elements: each layer's first column and every row stride are multiples of this
# The backward's tiles (static report, docs/benchmarks.md, "Static GPU report"): 64 x 32 pairs at 8 warps (fp16/bf16) or
# 64 x 16 at 4 warps (fp32, whose MMA operands come in two parts), one stage.
BWD = dict(BM=64, num_stages=1)
_VENDOR = []  # the GPU vendor the launches are for when set (compile_check records AMD variants on any machine)


def vendor():
    """"hip" (AMD, ROCm torch) or "cuda": the target of the launches."""
    return _VENDOR[-1] if _VENDOR else ("hip" if torch.version.hip else "cuda")


@contextlib.contextmanager
def launches_for(target_vendor):
    """Launchers specialise for target_vendor ("cuda" or "hip") inside (kernels/compile_check.py)."""
    _VENDOR.append(target_vendor)
    try:
        yield
    finally:
        _VENDOR.pop()


def fp32_split(dtype):
    """Whether float32 products take the tf32x3 split (three tf32 MMAs, NVIDIA) rather than one IEEE fp32
    dot (AMD: gfx90a has no tf32 or xf32 matrix instructions; gfx942's xf32 rounds differently)."""
    return dtype == torch.float32 and vendor() == "cuda"


@triton.jit
def indices(start, size: tl.constexpr, WIDE: tl.constexpr):
    """start + arange(size), in int64 when offsets can pass 2^31 - 1 (WIDE)."""
    idx = start + tl.arange(0, size)
    if WIDE:
        idx = idx.to(tl.int64)
    return idx


@triton.jit
def load_tile(X, rows, feats, stride, hi):
    """X[rows, feats] with the features >= hi read as 0."""
    return tl.load(X + rows[:, None] * stride + feats[None, :], mask=feats[None, :] < hi, other=0.0)


@triton.jit
def dot(a, b, a_lo, b_lo, acc, SPLIT: tl.constexpr):
    """acc + a @ b: one MMA (fp16/bf16), three tf32 MMAs of the hi (a, b) and lo parts (fp32, SPLIT), or one
    IEEE fp32 dot (fp32 on AMD: fp32_split)."""
    if SPLIT:
        acc = tl.dot(a, b_lo, acc, input_precision="tf32")
        acc = tl.dot(a_lo, b, acc, input_precision="tf32")
        acc = tl.dot(a, b, acc, input_precision="tf32")
    elif a.dtype == tl.float32:
        acc = tl.dot(a, b, acc, input_precision="ieee")
    else:
        acc = tl.dot(a, b, acc)
    return acc


@triton.jit
def neg_sq_dist(X, XL, norms, rows, cols, ni, N, lo, hi, stride, BM: tl.constexpr, BN: tl.constexpr,
                 BK: tl.constexpr, SPLIT: tl.constexpr):
    """-d_ij of the features lo:hi for a (BM x BN) tile; -inf where column j >= N (norms: padded with
    inf to whole tiles). rows: indices clamped to N - 1 (loads need no row mask); ni: their norms.
    XL: the lo parts of X (SPLIT, fp32), else unused."""
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    cols_in = tl.minimum(cols, N - 1)
    for k in range(lo, hi, BK):
        f = k + tl.arange(0, BK)
        xi, xj = load_tile(X, rows, f, stride, hi), load_tile(X, cols_in, f, stride, hi)
        xi_lo, xj_lo = xi, xj
        if SPLIT:
            xi_lo, xj_lo = load_tile(XL, rows, f, stride, hi), load_tile(XL, cols_in, f, stride, hi)
        acc = dot(xi, tl.trans(xj), xi_lo, tl.trans(xj_lo), acc, SPLIT)
    nj = tl.load(norms + cols)
    d = tl.maximum(ni[:, None] + nj[None, :] - 2.0 * acc, 0.0, propagate_nan=tl.PropagateNan.ALL)
    return -d


@triton.jit
def exponent_tile(X, XL, norms, rows, cols, ni, N, lo, hi, stride, LOO: tl.constexpr, BM: tl.constexpr,
                   BN: tl.constexpr, BK: tl.constexpr, SPLIT: tl.constexpr):
    """-d_ij with the diagonal set to exactly 0 (resubstitution) or -inf (leave one out). A select on
    every element: branching on tiles that cross the diagonal compiles to two selects (if-converted)."""
    t = neg_sq_dist(X, XL, norms, rows, cols, ni, N, lo, hi, stride, BM, BN, BK, SPLIT)
    return tl.where(rows[:, None] == cols[None, :], float("-inf") if LOO else 0.0, t)


@triton.jit
def tf32_parts(w):
    """(hi, lo): w rounded to tf32 (10 mantissa bits, to nearest) and the exact remainder w - hi."""
    hi = ((w.to(tl.int32, bitcast=True) + 0x1000) & -0x2000).to(tl.float32, bitcast=True)
    return hi, w - hi


@triton.jit
def weighted_sum_tile(acc, w, X, XL, cols, feats, N, D, stride, SPLIT: tl.constexpr):
    """acc += w @ X[cols, feats] (the sum_j S_kj x_j half of G_k)."""
    cols = tl.minimum(cols, N - 1)
    xj = load_tile(X, cols, feats, stride, D)
    if SPLIT:
        w_hi, w_lo = tf32_parts(w)
        acc = dot(w_hi, xj, w_lo, load_tile(XL, cols, feats, stride, D), acc, SPLIT)
    else:
        acc = dot(w.to(xj.dtype), xj, w, xj, acc, SPLIT)
    return acc


@triton.jit
def store_grad(G, acc, rowsum, X, XL, rows, row_start, row_stop, feats, D, stride, SPLIT: tl.constexpr):
    """G_k = (sum_j S_kj) x_k - sum_j S_kj x_j for one split's share of the columns."""
    mask = (rows[:, None] < row_stop) & (feats[None, :] < D)
    xi = tl.load(X + rows[:, None] * stride + feats[None, :], mask=mask, other=0.0).to(tl.float32)
    if SPLIT:
        xi += tl.load(XL + rows[:, None] * stride + feats[None, :], mask=mask, other=0.0)
    tl.store(G + (rows[:, None] - row_start) * D + feats[None, :], rowsum[:, None] * xi - acc, mask=mask)


@triton.jit
def backward_program(row_start, N, NP, BM: tl.constexpr, BF: tl.constexpr, WIDE: tl.constexpr):
    """A backward program's first row, column split, output features, rows (clamped to N - 1) and the
    padded length NP (int64 with WIDE)."""
    row_lo = row_start + tl.program_id(0) * BM
    feats = tl.program_id(2) * BF + tl.arange(0, BF)
    if WIDE:
        NP = NP.to(tl.int64)
    return row_lo, tl.program_id(1), feats, tl.minimum(indices(row_lo, BM, WIDE), N - 1), NP


@triton.jit
def grad_accumulators(BM: tl.constexpr, BF: tl.constexpr):
    """Zero (acc_x, acc_y, rowsum_x, rowsum_y) of a backward program."""
    acc = tl.zeros((BM, BF), dtype=tl.float32)
    rowsum = tl.zeros((BM,), dtype=tl.float32)
    return acc, acc, rowsum, rowsum


@triton.jit
def accumulate_grads(acc_x, acc_y, rowsum_x, rowsum_y, w_x, w_y, X, XL, Y, YL, cols, feats, N, DX, DY, stride_x,
                      stride_y, SPLIT: tl.constexpr):
    """One tile's share of G_k = sum_j W_kj (x_k - x_j) for both operands: the row sums of W and W @ X."""
    rowsum_x += tl.sum(w_x, 1)
    rowsum_y += tl.sum(w_y, 1)
    acc_x = weighted_sum_tile(acc_x, w_x, X, XL, cols, feats, N, DX, stride_x, SPLIT)
    acc_y = weighted_sum_tile(acc_y, w_y, Y, YL, cols, feats, N, DY, stride_y, SPLIT)
    return acc_x, acc_y, rowsum_x, rowsum_y


@triton.jit
def store_grads(GX, GY, acc_x, acc_y, rowsum_x, rowsum_y, X, XL, Y, YL, row_lo, row_start, row_stop, split, feats, DX,
                 DY, stride_x, stride_y, BM: tl.constexpr, SPLIT: tl.constexpr, WIDE: tl.constexpr):
    """Both operands' G_k of one column split, at GX/GY[split, rows - row_start, feats]."""
    rows = indices(row_lo, BM, WIDE)
    n_out = row_stop - row_start
    if WIDE:
        split = split.to(tl.int64)
    store_grad(GX + split * n_out * DX, acc_x, rowsum_x, X, XL, rows, row_start, row_stop, feats, DX, stride_x, SPLIT)
    store_grad(GY + split * n_out * DY, acc_y, rowsum_y, Y, YL, rows, row_start, row_stop, feats, DY, stride_y, SPLIT)


# ----------------------------------------------------------------------------------- launchers

def feature_block(d, dtype):
    # fp32 operands load two parts (hi, lo) per element: half the block of fp16/bf16, same shared memory
    widest = 32 if dtype == torch.float32 else 64
    return max(16, min(widest, triton.next_power_of_2(d)))


def row_range(rows, n):
    start, stop = rows or (0, n)
    if not 0 <= start < stop <= n:
        raise ValueError(f"rows must be a range (start, stop) with 0 <= start < stop <= {n}, got {rows}")
    return start, stop


def column_splits(n, n_rows, bm, bn, splits, device):
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


def aligned(layers):
    """(x, offsets): the layers side by side in one new row-major tensor, each starting at a multiple
    of ALIGN elements (zero columns in between)."""
    offsets = [0]
    for layer in layers:
        offsets.append(offsets[-1] + triton.cdiv(layer.shape[1], ALIGN) * ALIGN)
    first = layers[0]
    x = torch.zeros((first.shape[0], offsets[-1]), dtype=first.dtype, device=first.device)
    for layer, lo in zip(layers, offsets):
        x[:, lo:lo + layer.shape[1]] = layer
    return x, offsets


def layer_operand(x):
    """x itself where it is row-major with an aligned start and stride, else an aligned copy."""
    fits = x.shape[1] % ALIGN == 0 and x.stride(0) % ALIGN == 0
    return x if fits and x.data_ptr() % (ALIGN * x.element_size()) == 0 else aligned([x])[0]


def split_tf32(x):
    """(hi, lo) float32 tensors, each exact in tf32, with hi + lo = x to ~2^-22 (the tf32x3 split)."""
    def rounded(v):  # to 10 mantissa bits, to nearest
        return ((v.view(torch.int32) + 0x1000) & -0x2000).view(torch.float32)
    hi = rounded(x)
    return hi, rounded(x - hi)


def mma_operands(x):
    """(x, its lo part) for the kernels: float32 is split into tf32 hi + lo where it takes the tf32x3 path
    (fp32_split); otherwise x goes as it is (the second pointer then unused)."""
    return split_tf32(x) if fp32_split(x.dtype) else (x, x)


def padded(rows, length, value):
    """rows (R, N) as a contiguous (R, length) float32 tensor, the columns past N set to value."""
    out = torch.full((rows.shape[0], length), value, dtype=torch.float32, device=rows.device)
    out[:, :rows.shape[1]] = rows
    return out


def sq_norms(x, offsets, block):
    """(L, N padded to whole blocks with inf) float32 squared norms of each layer's rows, from the same
    rounded operands that enter the MMAs, so that d_ii is ~0 and d_ij is consistent; a padded column's
    distances are inf, so it adds nothing and needs no mask."""
    squares = x.float().square()
    norms = torch.stack([squares[:, lo:hi].sum(1) for lo, hi in zip(offsets[:-1], offsets[1:])])
    return padded(norms, triton.cdiv(x.shape[0], block) * block, float("inf"))


def check_operands(x, y):
    check_matrix(x, "x")
    check_matrix(y, "y", (x.dtype,))
    check_same_rows(("x", x), ("y", y))


def backward_columns(dtype):
    return 16 if dtype == torch.float32 else 32  # fp32 MMA operands come in two parts (tf32 hi, lo)


def backward_meta(x, y, wide_offsets):
    """Tiles of the backward. The output chunk BF: every chunk recomputes the pair tiles, so it is as
    wide as two fp32 accumulators (x and y) allow without spilling: up to 128 features for fp16/bf16
    (D = 512: pair work done 4 times, not 8), 64 for fp32, whose tf32 hi/lo parts take the registers,
    and 32 for fp32 with int64 offsets (64 spilled on sm_80 with triton 3.3 and 3.5)."""
    fp32 = x.dtype == torch.float32  # the tiles of either fp32 path (a tf32x3 split, or IEEE on AMD)
    widest = (32 if wide_offsets else 64) if fp32 else 128
    chunk = max(16, min(widest, triton.next_power_of_2(max(x.shape[1], y.shape[1]))))
    return dict(BN=backward_columns(x.dtype), num_warps=4 if fp32 else 8, BF=chunk, SPLIT=fp32_split(x.dtype),
                BKX=feature_block(x.shape[1], x.dtype), BKY=feature_block(y.shape[1], y.dtype), **BWD)


def backward_launch(kernel, x, y, row_args, rows, splits, wide_offsets, **constexprs):
    """(gx, gy) float32 of rows start:stop of a backward kernel with _kde_bwd_kernel's parameters: the
    operands, their norms, row_args(padded N) (per-row factors and such), the outputs, sizes and tiles."""
    widths = (x.shape[1], y.shape[1])
    n = x.shape[0]
    start, stop = row_range(rows, n)
    x, y = layer_operand(x), layer_operand(y)
    dx, dy = x.shape[1], y.shape[1]
    bn = backward_columns(x.dtype)
    cols_per_split, n_splits = column_splits(n, stop - start, BWD["BM"], bn, splits, x.device)
    gx = torch.empty((n_splits, stop - start, dx), device=x.device, dtype=torch.float32)
    gy = torch.empty((n_splits, stop - start, dy), device=x.device, dtype=torch.float32)
    norms_x, norms_y = (sq_norms(v, [0, v.shape[1]], bn)[0] for v in (x, y))
    padded_n = norms_x.shape[0]
    extra = row_args(padded_n)
    wide_offsets = wide(x, y, gx, gy, *extra) if wide_offsets is None else wide_offsets
    meta = backward_meta(x, y, wide_offsets)
    grid = (triton.cdiv(stop - start, BWD["BM"]), n_splits, triton.cdiv(max(dx, dy), meta["BF"]))
    launch(kernel, grid, *mma_operands(x), *mma_operands(y), norms_x, norms_y, *extra, gx, gy, n, padded_n, start,
           stop, dx, dy, x.stride(0), y.stride(0), cols_per_split, WIDE=wide_offsets, **constexprs, **meta)
    return gx.sum(0)[:, :widths[0]], gy.sum(0)[:, :widths[1]]
