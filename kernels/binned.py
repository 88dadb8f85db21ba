"""Triton kernel of the layer-binned estimator (API: fastmi/binned.py): bin every unit and hash each
row's bin pattern in one pass.

    h_i = sum_j (b_ij + 1) * R_j  (mod 2^64)

with b_ij the bin of x_ij (or the integer value itself for discrete inputs) and R_j random odd 64-bit
constants: two different rows collide only if sum_j (b_ij - b_kj) R_j = 0 mod 2^64, which for random
R has probability about 2^-64 per pair (2^(t-64) when every difference shares a factor 2^t).
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _bin_hash_kernel(X, R, H, N, D, stride, lo, scale, K, DISCRETE: tl.constexpr,
                     BM: tl.constexpr, BF: tl.constexpr):
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
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


def bin_hash(x, column_keys, lo, scale, bins, discrete):
    """int64 hash (N,) of each row's bin pattern; lo, scale: Python floats (rounded to fp32 here)."""
    assert x.dim() == 2 and x.is_contiguous(), x.shape
    assert column_keys.shape == (x.shape[1],) and column_keys.dtype == torch.int64
    assert discrete or x.dtype in (torch.float32, torch.float16, torch.bfloat16), x.dtype
    n, d = x.shape
    assert n * d < 2**31, "int32 offsets"
    out = torch.empty(n, dtype=torch.int64, device=x.device)
    bm, bf = 64, max(16, min(64, triton.next_power_of_2(d)))
    _bin_hash_kernel[(triton.cdiv(n, bm),)](x, column_keys, out, n, d, x.stride(0), float(lo),
                                            float(scale), bins, DISCRETE=discrete, BM=bm, BF=bf)
    return out
