"""Triton kernels of the histogram estimators (API: fastmi/estimators/binned.py and unit.py).

_bin_hash_kernel: bin every unit and hash each row's bin pattern in one pass (layer-binned MI).
_unit_mi_kernel: the MI of every unit pair; codes are made on the fly from a and b, the K x K joint
histograms accumulate with tl.dot, and an epilogue turns each block into one MI value, so only
Da x Db floats are written (never onehot(A), never the (Da K) x (Db K) counts).

The row hash:

    h_i = sum_j (b_ij + 1) * R_j  (mod 2^64)

with b_ij the bin of x_ij (or the integer value itself for discrete inputs) and R_j random odd 64-bit
constants: two different rows collide only if sum_j (b_ij - b_kj) R_j = 0 mod 2^64, which for random
R has probability about 2^-64 per pair (2^(t-64) when every difference shares a factor 2^t).
"""
import torch
import triton
import triton.language as tl

from .launch import FLOATS, check_matrix, check_same_rows, launch, wide


@triton.jit
def _bin_hash_kernel(X, R, H, N, D, stride, lo, scale, K, DISCRETE: tl.constexpr,
                     BM: tl.constexpr, BF: tl.constexpr, WIDE: tl.constexpr):
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    if WIDE:
        rows = rows.to(tl.int64)
    h = tl.zeros((BM,), dtype=tl.int64)
    for k in range(0, D, BF):
        f = k + tl.arange(0, BF)
        mask = (rows[:, None] < N) & (f[None, :] < D)
        x = tl.load(X + rows[:, None] * stride + f[None, :], mask=mask, other=0)
        if DISCRETE:
            symbol = x.to(tl.int64)
        else:
            position = tl.floor((x.to(tl.float32) - lo) * scale)
            symbol = tl.minimum(tl.maximum(position, 0.0), K - 1.0).to(tl.int64)
        r = tl.load(R + f, mask=f < D, other=0)
        h += tl.sum(tl.where(mask, (symbol + 1) * r[None, :], 0), axis=1)
    tl.store(H + rows, h, mask=rows < N)


SYMBOLS = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def bin_hash(x, column_keys, lo, scale, bins, discrete, wide_offsets=None):
    """int64 hash (N,) of each row's bin pattern; lo, scale: Python floats (rounded to fp32 here)."""
    check_matrix(x, "x", SYMBOLS if discrete else FLOATS)
    if column_keys.shape != (x.shape[1],) or column_keys.dtype != torch.int64:
        raise ValueError(f"column_keys must be int64 of shape ({x.shape[1]},), got {tuple(column_keys.shape)}")
    check_same_rows(("x", x))
    n, d = x.shape
    out = torch.empty(n, dtype=torch.int64, device=x.device)
    # 64 rows of 8-byte symbols spilled a row pointer on sm_90 (triton 3.5-3.8's ptxas); 32 do not
    bm, bf = 64 if x.element_size() <= 4 else 32, max(16, min(64, triton.next_power_of_2(d)))
    launch(_bin_hash_kernel, (triton.cdiv(n, bm),), x, column_keys, out, n, d, x.stride(0), float(lo), float(scale),
           bins, DISCRETE=discrete, BM=bm, BF=bf, WIDE=wide(x) if wide_offsets is None else wide_offsets)
    return out


@triton.jit
def _unit_codes(X, lo_ptr, scale_ptr, rows, units, N, D, stride, K, SOFT: tl.constexpr,
                BR: tl.constexpr, BU: tl.constexpr, KP: tl.constexpr, CODE_DTYPE: tl.constexpr):
    """(BR, BU * KP) codes of BU units' values in BR rows: one-hot bins, or the two-centre
    interpolation weights (SOFT); zero for rows >= N, units >= D and padding bins >= K."""
    mask = (rows[:, None] < N) & (units[None, :] < D)
    x = tl.load(X + rows[:, None] * stride + units[None, :], mask=mask, other=0.0).to(tl.float32)
    lo = tl.load(lo_ptr + units, mask=units < D, other=0.0)
    scale = tl.load(scale_ptr + units, mask=units < D, other=0.0)
    t = (x - lo[None, :]) * scale[None, :]
    k = tl.arange(0, KP)[None, None, :]
    if SOFT:
        t = tl.minimum(tl.maximum(t - 0.5, 0.0), K - 1.0)
        k0 = tl.minimum(tl.floor(t), K - 2.0)
        w = t - k0
        k0i = k0.to(tl.int32)[:, :, None]
        c = tl.where(k == k0i, 1.0 - w[:, :, None], 0.0) + tl.where(k == k0i + 1, w[:, :, None], 0.0)
    else:
        index = tl.minimum(tl.maximum(tl.floor(t), 0.0), K - 1.0).to(tl.int32)
        c = tl.where(k == index[:, :, None], 1.0, 0.0)
    c = tl.where(mask[:, :, None], c, 0.0)
    return tl.reshape(c, (BR, BU * KP)).to(CODE_DTYPE)


@triton.jit
def _plogp(p):
    return p * tl.log(tl.maximum(p, 1e-30))  # 0 at p = 0


@triton.jit
def _unit_mi_kernel(A, B, LO_A, SC_A, LO_B, SC_B, OUT, N, DA, DB, stride_a, stride_b, inv_n, K,
                    SOFT: tl.constexpr, BP: tl.constexpr, BQ: tl.constexpr, KP: tl.constexpr,
                    BR: tl.constexpr, CODE_DTYPE: tl.constexpr, ACC_DTYPE: tl.constexpr, WIDE: tl.constexpr):
    p = tl.program_id(0) * BP + tl.arange(0, BP)
    q = tl.program_id(1) * BQ + tl.arange(0, BQ)
    acc = tl.zeros((BP * KP, BQ * KP), dtype=ACC_DTYPE)
    for start in range(0, N, BR):
        rows = start + tl.arange(0, BR)
        if WIDE:
            rows = rows.to(tl.int64)
        ca = _unit_codes(A, LO_A, SC_A, rows, p, N, DA, stride_a, K, SOFT, BR, BP, KP, CODE_DTYPE)
        cb = _unit_codes(B, LO_B, SC_B, rows, q, N, DB, stride_b, K, SOFT, BR, BQ, KP, CODE_DTYPE)
        # out_dtype: triton 3.5-3.7 check that acc has it (default float32), so int8 codes name int32
        acc = tl.dot(tl.trans(ca), cb, acc, out_dtype=ACC_DTYPE)
    # epilogue: each (KP x KP) block -> sum p_uv ln p_uv - sum p_u ln p_u - sum p_v ln p_v
    joint = tl.reshape(acc.to(tl.float32) * inv_n, (BP, KP, BQ, KP))
    h_joint = tl.sum(tl.sum(_plogp(joint), axis=3), axis=1)
    h_a = tl.sum(_plogp(tl.sum(joint, axis=3)), axis=1)
    h_b = tl.sum(_plogp(tl.sum(joint, axis=1)), axis=2)
    mask = (p[:, None] < DA) & (q[None, :] < DB)
    tl.store(OUT + p[:, None] * DB + q[None, :], h_joint - h_a - h_b, mask=mask)


MAX_BINS = 128  # one unit's bins must fit one tile
# Rows per step of the unit-pair kernel: 32 (the int8 MMA's smallest K) keeps the codes of both sides
# in registers without spilling on every triton of the tested range (64 spilled up to 56 bytes with
# 3.3-3.4's ptxas) and issues fewer instructions per row (static report).
ROWS_PER_STEP = 32


def unit_pair_mi(a, b, lo_a, scale_a, lo_b, scale_b, bins, soft, wide_offsets=None):
    """(Da, Db) float32 plug-in MI of every unit pair; lo/scale: per-column float32 bin constants."""
    check_matrix(a, "a")
    check_matrix(b, "b")
    check_same_rows(("a", a), ("b", b))
    if not 2 <= bins <= MAX_BINS:
        raise ValueError(f"the fused unit_mi kernel takes 2 <= bins <= {MAX_BINS}, got {bins}")
    n, da = a.shape
    db = b.shape[1]
    kp = max(2, triton.next_power_of_2(bins))
    bu = max(1, 128 // kp)
    out = torch.empty((da, db), dtype=torch.float32, device=a.device)
    # hard counts: int8 codes, int32 accumulation (exact); soft: fp16 codes, fp32 accumulation
    code_dtype, acc_dtype = (tl.float16, tl.float32) if soft else (tl.int8, tl.int32)
    grid = (triton.cdiv(da, bu), triton.cdiv(db, bu))
    launch(_unit_mi_kernel, grid, a, b, lo_a, scale_a, lo_b, scale_b, out, n, da, db, a.stride(0), b.stride(0),
           1.0 / n, bins, SOFT=soft, BP=bu, BQ=bu, KP=kp, BR=ROWS_PER_STEP, CODE_DTYPE=code_dtype, ACC_DTYPE=acc_dtype,
           WIDE=wide(a, b) if wide_offsets is None else wide_offsets, num_warps=8)
    return out


def compile_examples():
    """Launches on small CPU tensors that select every variant the launchers use (for compile_check)."""
    a, b = torch.randn(300, 7), torch.randn(300, 9)
    keys = torch.ones(7, dtype=torch.int64)
    ranges = (torch.zeros(7), torch.ones(7), torch.zeros(9), torch.ones(9))
    for wide_offsets in (False, True):
        bin_hash(a, keys, 0.0, 1.0, 30, False, wide_offsets)
        unit_pair_mi(a, b, *ranges, 16, False, wide_offsets)
    bin_hash(torch.ones(300, 7, dtype=torch.int64), keys, 0.0, 1.0, 30, True)
    unit_pair_mi(a, b, *ranges, 16, True)
