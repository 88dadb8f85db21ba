"""Triton kernels of the pairwise Gaussian-KDE MI estimator (autograd and API: fastmi/estimators/kde.py;
the math: docs/design.md, "The KDE estimator").

Both kernels take inputs that fastmi.estimators.kde has already centred and scaled so that the Gaussian kernel
of a pair is exp2(-||x_i - x_j||^2) (bandwidth, bound and log2(e) folded into the scale). They work
on (BM x BN) tiles of pairs built from Gram tiles, never on an N x N buffer:

    d_ij = |x_i|^2 + |x_j|^2 - 2 x_i.x_j  (clamped at 0, diagonal forced to 0)

Forward (_kde_chain_fwd_kernel), per row i and column split, for L >= 2 layers side by side in one
operand (a pair is the chain of two):
    ln S^m_i = ln sum_j exp2(-d^m_ij)                 for every layer m,
    ln J^l_i = ln sum_j exp2(-d^l_ij - d^(l+1)_ij)    for every successive pair (l, l + 1);
each layer's Gram and exp2 tile is computed once per (row tile, column tile) and serves its marginal
and both joints it belongs to (the previous layer's tile is carried through the layer loop).
Backward (_kde_bwd_kernel), per row k:  G_k = sum_j S_kj (x_k - x_j)  with S = W + W^T, W = P^x - P^joint.

Operands are repacked, where needed, so that every layer starts at a multiple of 16 elements (zero
columns change neither distances nor norms): the kernels then load 16-byte vectors. float32 operands
are split by the launcher into tf32-exact hi + lo parts, and every float32 product a.b is computed
as three tf32 MMAs hi.lo + lo.hi + hi.hi (the tf32x3 scheme: ~fp32 accuracy; plain tf32 truncates
the operands and biases distances at D >= 256) straight from shared memory, instead of splitting
every tile in registers as tl.dot(input_precision="tf32x3") does.
"""
import torch
import triton
import triton.language as tl

from .launch import check_matrix, check_same_rows, launch, wide
from .tiles import (
    accumulate_grads,
    aligned,
    backward_launch,
    backward_program,
    check_operands,
    column_splits,
    exponent_tile,
    feature_block,
    fp32_split,
    grad_accumulators,
    indices,
    mma_operands,
    padded,
    row_range,
    sq_norms,
    store_grads,
)

LN2: tl.constexpr = tl.constexpr(0.6931471805599453)
LOG2E: tl.constexpr = tl.constexpr(1.4426950408889634)
MAX_LAYERS = 4  # layers one chain launch takes (the kernel's O1..O4); longer chains go in windows
SLOTS = 8  # log-sums a launch accumulates: 2 * MAX_LAYERS - 1, padded to a power of two


@triton.jit
def _add_to_slot(acc, slots, slot, t_sum):
    return tl.where(slots[None, :] == slot, acc + t_sum[:, None], acc)


@triton.jit
def _online_slot(m, s, slots, slot, t):
    """Running (max, sum) of exp2 over a row for one slot: sum_j exp2(t_j) = exp2(m) * s (flash-attention style)."""
    here = slots[None, :] == slot
    m_old = tl.max(tl.where(here, m, float("-inf")), 1)
    m_new = tl.maximum(m_old, tl.max(t, 1))
    shift = tl.where(m_new == float("-inf"), 0.0, m_new)
    s_new = tl.sum(tl.where(here, s, 0.0), 1) * tl.exp2(m_old - shift) + tl.sum(tl.exp2(t - shift[:, None]), 1)
    return tl.where(here, m_new[:, None], m), tl.where(here, s_new[:, None], s)


@triton.jit
def _layer_start(layer, O1, O2, O3, O4):
    """The first column of a layer (offsets passed as scalars: no offsets tensor to copy to the GPU)."""
    start = tl.where(layer == 1, O1, tl.where(layer == 2, O2, tl.where(layer == 3, O3, O4)))
    return tl.multiple_of(tl.where(layer == 0, 0, start), 16)


@triton.jit
def _layer_exponents(X, XL, NORMS, NP, rows, cols, N, layer, O1, O2, O3, O4, stride, LOO: tl.constexpr,
                     BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, SPLIT: tl.constexpr):
    """One layer's exponent tile -d^m_ij."""
    norms = NORMS + layer * NP
    lo, hi = _layer_start(layer, O1, O2, O3, O4), _layer_start(layer + 1, O1, O2, O3, O4)
    return exponent_tile(X, XL, norms, rows, cols, tl.load(norms + rows), N, lo, hi, stride, LOO, BM, BN, BK, SPLIT)


@triton.jit
def _accumulate(m, s, slots, slot, t, LOO: tl.constexpr):
    """Slot += sum_j exp2(t_j): (m, s, the tile the next layer's joint needs: exp2(t), or t if LOO).
    Without LOO every exponent is <= 0 and the diagonal gives exactly 0: the row max is 0, so plain
    sums in [1, N] need no rescaling and the joint term is exp2(t^l) * exp2(t^(l+1))."""
    if LOO:
        m, s = _online_slot(m, s, slots, slot, t)
        kept = t
    else:
        kept = tl.exp2(t)
        s = _add_to_slot(s, slots, slot, tl.sum(kept, 1))
    return m, s, kept


@triton.jit
def _kde_chain_fwd_kernel(X, XL, NORMS, L, N, NP, LAYERS, O1, O2, O3, O4, row_start, row_stop, stride, cols_per_split,
                          LOO: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                          SLOTS: tl.constexpr, SPLIT: tl.constexpr, WIDE: tl.constexpr):
    """Slots 0..LAYERS-1: ln S^m; slot LAYERS + l: ln J^l. Partial sums of one column split. Layer 0
    is peeled off the layer loop, so the loop body (a marginal and a joint) has no branch."""
    row_lo = row_start + tl.program_id(0) * BM
    split = tl.program_id(1)
    n_out = row_stop - row_start
    if WIDE:
        NP, n_out = NP.to(tl.int64), n_out.to(tl.int64)
    rows = tl.minimum(indices(row_lo, BM, WIDE), N - 1)
    slots = tl.arange(0, SLOTS)
    m = tl.zeros((BM, SLOTS), dtype=tl.float32)
    if LOO:
        m = m + float("-inf")
    s = tl.zeros((BM, SLOTS), dtype=tl.float32)
    col_lo = split * cols_per_split
    for start in range(col_lo, tl.minimum(col_lo + cols_per_split, N), BN):
        cols = indices(start, BN, WIDE)
        t = _layer_exponents(X, XL, NORMS, NP, rows, cols, N, 0, O1, O2, O3, O4, stride, LOO, BM, BN, BK, SPLIT)
        m, s, previous = _accumulate(m, s, slots, 0, t, LOO)
        for layer in range(1, LAYERS):
            t = _layer_exponents(X, XL, NORMS, NP, rows, cols, N, layer, O1, O2, O3, O4, stride, LOO, BM, BN, BK,
                                 SPLIT)
            joint = t + previous if LOO else previous  # LOO: exponents add; else exp2 tiles multiply
            m, s, current = _accumulate(m, s, slots, layer, t, LOO)
            if LOO:
                m, s, _ = _accumulate(m, s, slots, LAYERS + layer - 1, joint, LOO)
            else:
                s = _add_to_slot(s, slots, LAYERS + layer - 1, tl.sum(current * joint, 1))
            previous = current
    rows = indices(row_lo, BM, WIDE)
    out = L + slots[None, :] * (tl.num_programs(1) * n_out) + split * n_out + (rows - row_start)[:, None]
    used = slots[None, :] < 2 * LAYERS - 1
    tl.store(out, (m + tl.log2(tl.where(used, s, 1.0))) * LN2, mask=(rows[:, None] < row_stop) & used)


@triton.jit
def _row_factors(F, idx, NP):
    """Per-row factors (x, y, joint) of the backward at indices idx from the (3, NP) tensor F: 1/S
    (resubstitution) or log2 S (leave one out), zero-padded to whole tiles."""
    return tl.load(F + idx), tl.load(F + NP + idx), tl.load(F + 2 * NP + idx)


@triton.jit
def _pair_weights(tx, ty, fx_i, fx_j, fy_i, fy_j, fj_i, fj_j, LOO: tl.constexpr):
    """S^x_kj and S^y_kj of one tile from exponents t and the row / column factors f.

    S^x_kj = P^x_kj + P^x_jk - P^J_kj - P^J_jk with P^x_kj = exp2(t_kj) / S^x_k.
    Without LOO S >= 1, so exp2(t) * (1/S_k + 1/S_j) cannot overflow: 2 exps per pair. With LOO the
    factors are log2 S (S can be < 2^-126) and every P is exp2(t - log2 S): 6 exps per pair.
    """
    if LOO:
        tj = tx + ty
        pj = tl.exp2(tj - fj_i[:, None]) + tl.exp2(tj - fj_j[None, :])
        w_x = tl.exp2(tx - fx_i[:, None]) + tl.exp2(tx - fx_j[None, :]) - pj
        w_y = tl.exp2(ty - fy_i[:, None]) + tl.exp2(ty - fy_j[None, :]) - pj
    else:
        ex = tl.exp2(tx)
        ey = tl.exp2(ty)
        joint = fj_i[:, None] + fj_j[None, :]
        w_x = ex * ((fx_i[:, None] + fx_j[None, :]) - ey * joint)
        w_y = ey * ((fy_i[:, None] + fy_j[None, :]) - ex * joint)
    return w_x, w_y


@triton.jit
def _kde_bwd_kernel(X, XL, Y, YL, NX, NY, F, GX, GY, N, NP, row_start, row_stop, DX, DY, stride_x, stride_y,
                    cols_per_split, LOO: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BKX: tl.constexpr,
                    BKY: tl.constexpr, BF: tl.constexpr, SPLIT: tl.constexpr, WIDE: tl.constexpr):
    row_lo, split, feats, rows, NP = backward_program(row_start, N, NP, BM, BF, WIDE)
    nx_i = tl.load(NX + rows)
    ny_i = tl.load(NY + rows)
    fx_i, fy_i, fj_i = _row_factors(F, rows, NP)
    acc_x, acc_y, rowsum_x, rowsum_y = grad_accumulators(BM, BF)
    col_lo = split * cols_per_split
    for start in range(col_lo, tl.minimum(col_lo + cols_per_split, N), BN):
        cols = indices(start, BN, WIDE)
        tx = exponent_tile(X, XL, NX, rows, cols, nx_i, N, 0, DX, stride_x, LOO, BM, BN, BKX, SPLIT)
        ty = exponent_tile(Y, YL, NY, rows, cols, ny_i, N, 0, DY, stride_y, LOO, BM, BN, BKY, SPLIT)
        fx_j, fy_j, fj_j = _row_factors(F, cols, NP)
        w_x, w_y = _pair_weights(tx, ty, fx_i, fx_j, fy_i, fy_j, fj_i, fj_j, LOO)
        acc_x, acc_y, rowsum_x, rowsum_y = accumulate_grads(acc_x, acc_y, rowsum_x, rowsum_y, w_x, w_y, X, XL, Y,
                                                             YL, cols, feats, N, DX, DY, stride_x, stride_y, SPLIT)
    store_grads(GX, GY, acc_x, acc_y, rowsum_x, rowsum_y, X, XL, Y, YL, row_lo, row_start, row_stop, split, feats, DX,
                 DY, stride_x, stride_y, BM, SPLIT, WIDE)


# ----------------------------------------------------------------------------------- launchers

# Tiles (static report, docs/benchmarks.md, "Static GPU report"): the forward's 64 x 32 pairs at 4 warps, and the
# backward's 64 x 32 at 8 warps (fp16/bf16) or 64 x 16 at 4 warps (fp32, whose MMA operands come in
# two parts), keep every variant free of spills, the forward at 3-5 programs per SM, on every triton of
# the tested range (3.4-3.9: each ships its own ptxas). The fp16/bf16 forward is not software-pipelined:
# two stages spilled on sm_80 with triton 3.5-3.7, and one stage issues ~10% fewer instructions per tile.
FWD = dict(BM=64, BN=32, num_warps=4)


def _forward_stages(dtype):
    return 2 if dtype == torch.float32 else 1


def _chain_launch(x, offsets, loo, rows, splits, wide_offsets):
    """Log-sums (2L - 1, rows) of the aligned operand x of at most MAX_LAYERS layers."""
    n = x.shape[0]
    start, stop = row_range(rows, n)
    layers = len(offsets) - 1
    cols_per_split, n_splits = column_splits(n, stop - start, FWD["BM"], FWD["BN"], splits, x.device)
    partial = torch.empty((2 * layers - 1, n_splits, stop - start), device=x.device, dtype=torch.float32)
    norms = sq_norms(x, offsets, FWD["BN"])
    grid = (triton.cdiv(stop - start, FWD["BM"]), n_splits)
    wide_offsets = wide(x, partial, norms) if wide_offsets is None else wide_offsets
    block = feature_block(max(hi - lo for lo, hi in zip(offsets[:-1], offsets[1:])), x.dtype)
    ends = offsets[1:] + [offsets[-1]] * (MAX_LAYERS - layers)
    launch(_kde_chain_fwd_kernel, grid, *mma_operands(x), norms, partial, n, norms.shape[1], layers, *ends, start,
           stop, x.stride(0), cols_per_split, LOO=loo, BK=block, SLOTS=SLOTS, SPLIT=fp32_split(x.dtype),
           WIDE=wide_offsets, num_stages=_forward_stages(x.dtype), **FWD)
    return torch.logsumexp(partial, dim=1) if n_splits > 1 else partial[:, 0]


def _check_offsets(x, offsets):
    if (len(offsets) < 3 or offsets[0] != 0 or offsets[-1] != x.shape[1]
            or any(hi <= lo for lo, hi in zip(offsets[:-1], offsets[1:]))):
        raise ValueError(f"offsets must be L + 1 >= 3 increasing column offsets from 0 to {x.shape[1]}, got {offsets}")


def cache_elements(n, offsets, loo, rows, dtype):
    """The back-end interface's (fastmi/estimators/kde.py): the kernels keep no tiles for the backward, they
    recompute them."""
    return 0


def chain_log_sums(x, offsets, loo, rows=None, splits=None, cache=None):
    """Natural-log kernel sums of rows start:stop (default all) against every column for L >= 2 layers
    side by side in x (layer m: columns offsets[m]:offsets[m + 1]): float32 tensor (2L - 1, stop - start),
    rows 0..L-1 the layers' ln S^m, rows L..2L-2 the successive pairs' ln J^l. One launch takes up to
    MAX_LAYERS layers; longer chains go in windows that share their boundary layer. cache: unused (the
    back-end interface's; cache_elements is 0)."""
    check_matrix(x, "x")
    check_same_rows(("x", x))
    offsets = [int(o) for o in offsets]
    _check_offsets(x, offsets)
    row_range(rows, x.shape[0])
    layers = [x[:, lo:hi] for lo, hi in zip(offsets[:-1], offsets[1:])]
    marginals, joints = [], []
    for first in range(0, len(layers) - 1, MAX_LAYERS - 1):
        window = layers[first:first + MAX_LAYERS]
        sums = _chain_launch(*aligned(window), loo, rows, splits, None)
        marginals.append(sums[:len(window)] if first == 0 else sums[1:len(window)])
        joints.append(sums[len(window):])
    return torch.cat(marginals + joints)


def log_sums(x, y, loo, rows=None, splits=None, wide_offsets=None):
    """Natural-log kernel sums ln SX, ln SY, ln SJ of rows start:stop (default all) against every
    column: float32 tensor (3, stop - start); the chain kernel on the pair. wide_offsets: int64
    offsets (default: where needed)."""
    check_operands(x, y)
    row_range(rows, x.shape[0])
    return _chain_launch(*aligned([x, y]), loo, rows, splits, wide_offsets)


def _backward_factors(sums, loo, length):
    """(3, length) float32: 1/S per row (resubstitution), or log2 S (leave one out), from ln S; zero past N."""
    return padded(sums * LOG2E.value if loo else torch.exp(-sums), length, 0.0)


def pair_grads(x, y, sums, loo, rows=None, splits=None, wide_offsets=None):
    """G_k = sum_j S_kj (x_k - x_j) for x and for y (float32) of rows start:stop (default all), before
    the 2 ln2 / N factor; sums: (3, N) float32 log-sums, every row's."""
    check_operands(x, y)
    n = x.shape[0]
    if sums.shape != (3, n) or sums.dtype != torch.float32:
        raise ValueError(f"sums must be the (3, {n}) float32 log-sums of every row, got {tuple(sums.shape)} "
                         f"{sums.dtype}")
    return backward_launch(_kde_bwd_kernel, x, y, lambda padded_n: (_backward_factors(sums, loo, padded_n),), rows,
                           splits, wide_offsets, LOO=loo)


def chain_grads(x, offsets, sums, weights, loo, rows=None, cache=None):
    """sum_l weights_l * (pair l's G_k) of the layers side by side in x (offsets as for chain_log_sums), for
    rows start:stop (default all), float32 (rows, D): each successive pair's pair_grads, added into its two
    layers' columns; sums: the (2L - 1, N) chain log-sums of every row; cache: unused."""
    layers = [x[:, lo:hi] for lo, hi in zip(offsets[:-1], offsets[1:])]
    count = len(layers)
    start, stop = row_range(rows, x.shape[0])
    grads = torch.zeros((stop - start, x.shape[1]), dtype=torch.float32, device=x.device)
    outputs = [grads[:, lo:hi] for lo, hi in zip(offsets[:-1], offsets[1:])]
    for m in range(count - 1):
        ga, gb = pair_grads(layers[m], layers[m + 1], sums[[m, m + 1, count + m]].contiguous(), loo, rows=rows)
        outputs[m].add_(ga * weights[m])
        outputs[m + 1].add_(gb * weights[m])
    return grads


def compile_examples():
    """Launches on small CPU tensors that select every variant the launchers use (for compile_check):
    layer widths 64 (the launchers align every width to 16), D = 512 for the backward's 128-feature
    chunk, and odd widths for the int64 variants."""
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        x, y = torch.randn(300, 64).to(dtype), torch.randn(300, 64).to(dtype)
        for loo in (False, True):
            log_sums(x, y, loo, splits=2)
            chain_log_sums(torch.cat([x, y, x], 1), [0, 64, 128, 192], loo, splits=2)
            pair_grads(x, y, torch.zeros(3, 300), loo, splits=2)
        pair_grads(torch.randn(300, 512).to(dtype), torch.randn(300, 512).to(dtype), torch.zeros(3, 300), False)
    x, y = torch.randn(300, 70), torch.randn(300, 5)
    log_sums(x, y, False, splits=2, wide_offsets=True)
    pair_grads(x, y, torch.zeros(3, 300), False, splits=2, wide_offsets=True)
