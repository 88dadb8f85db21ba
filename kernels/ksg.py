"""Triton kernels of the KSG estimator (API and the math: fastmi/estimators/ksg.py).

Rows arrive in k-d order with per-tile bounding boxes; one program owns one row tile and walks every
column tile, starting at its own (the nearest), skipping a tile whose box gap (max-norm, a true lower
bound of every distance in it) is >= every eps of the row tile.

_eps_kernel: each row's k smallest joint distances max(|a_i - a_j|_inf, |b_i - b_j|_inf), kept as an
unsorted set of k values per row: per tile, k times, the tile's row minimum replaces the set's
maximum when smaller, and that one column is masked (so duplicates count separately). Writes eps_i.
_count_kernel: n_a(i) = #{j != i : |a_i - a_j|_inf < eps_i} and n_b(i) likewise, in one walk.

Features are read one at a time from transposed (D, N) copies, so loads are contiguous and the
register footprint does not grow with D; no N x N buffer, no atomics.
"""
import torch
import triton
import triton.language as tl

from .launch import check_matrix, check_same_rows, launch


@triton.jit
def _max_abs_diff(d, XT, rows, cols, N, D):
    """d updated with max over features f < D of |x_row,f - x_col,f| (XT: the transposed (D, N) matrix)."""
    for f in range(D):
        xr = tl.load(XT + f * N + rows, mask=rows < N, other=0.0)
        xc = tl.load(XT + f * N + cols, mask=cols < N, other=0.0)
        d = tl.maximum(d, tl.abs(xr[:, None] - xc[None, :]))
    return d


@triton.jit
def _box_gap(LO, HI, row_tile, col_tile, D, DP: tl.constexpr):
    """Max-norm gap between two tiles' bounding boxes (LO, HI: (tiles, D) row-major; DP >= D)."""
    f = tl.arange(0, DP)
    row_lo = tl.load(LO + row_tile * D + f, mask=f < D, other=0.0)
    row_hi = tl.load(HI + row_tile * D + f, mask=f < D, other=0.0)
    col_lo = tl.load(LO + col_tile * D + f, mask=f < D, other=0.0)
    col_hi = tl.load(HI + col_tile * D + f, mask=f < D, other=0.0)
    return tl.max(tl.maximum(tl.maximum(col_lo - row_hi, row_lo - col_hi), 0.0), axis=0)


@triton.jit
def _eps_kernel(XT, YT, LOX, HIX, LOY, HIY, EPS, N, DA, DB, TILES, K,
                BM: tl.constexpr, KP: tl.constexpr, DAP: tl.constexpr, DBP: tl.constexpr):
    i = tl.program_id(0)
    rows = i * BM + tl.arange(0, BM)
    slots = tl.arange(0, KP)
    best = tl.where(slots[None, :] < K, float("inf"), -float("inf")) + tl.zeros((BM, KP), dtype=XT.dtype.element_ty)
    for t in range(TILES):
        j = (i + t) % TILES
        bound = tl.max(tl.where(rows < N, tl.max(best, axis=1), -float("inf")), axis=0)
        gap = tl.maximum(_box_gap(LOX, HIX, i, j, DA, DAP), _box_gap(LOY, HIY, i, j, DB, DBP))
        if gap < bound:
            cols = j * BM + tl.arange(0, BM)
            d = tl.zeros((BM, BM), dtype=XT.dtype.element_ty)
            d = _max_abs_diff(d, XT, rows, cols, N, DA)
            d = _max_abs_diff(d, YT, rows, cols, N, DB)
            valid = (rows[:, None] < N) & (cols[None, :] < N) & (rows[:, None] != cols[None, :])
            d = tl.where(valid, d, float("inf"))
            if tl.max(tl.where(d < tl.max(best, axis=1)[:, None], 1, 0)) > 0:
                for _ in range(K):
                    smallest = tl.min(d, axis=1)
                    largest = tl.max(best, axis=1)
                    at = tl.argmax(best, axis=1)
                    take = (slots[None, :] == at[:, None]) & (smallest < largest)[:, None]
                    best = tl.where(take, smallest[:, None], best)
                    d = tl.where(cols[None, :] == tl.argmin(d, axis=1)[:, None] + j * BM, float("inf"), d)
    tl.store(EPS + rows, tl.max(best, axis=1), mask=rows < N)


@triton.jit
def _strict_count(XT, rows, cols, eps, N, D, BM: tl.constexpr):
    d = _max_abs_diff(tl.zeros((BM, BM), dtype=XT.dtype.element_ty), XT, rows, cols, N, D)
    inside = (d < eps[:, None]) & (cols[None, :] < N) & (rows[:, None] != cols[None, :])
    return tl.sum(inside.to(tl.int32), axis=1)


@triton.jit
def _count_kernel(XT, YT, LOX, HIX, LOY, HIY, EPS, NA, NB, N, DA, DB, TILES,
                  BM: tl.constexpr, DAP: tl.constexpr, DBP: tl.constexpr):
    i = tl.program_id(0)
    rows = i * BM + tl.arange(0, BM)
    eps = tl.load(EPS + rows, mask=rows < N, other=0.0)
    bound = tl.max(eps, axis=0)
    na = tl.zeros((BM,), dtype=tl.int32)
    nb = tl.zeros((BM,), dtype=tl.int32)
    for j in range(TILES):
        cols = j * BM + tl.arange(0, BM)
        if _box_gap(LOX, HIX, i, j, DA, DAP) < bound:
            na += _strict_count(XT, rows, cols, eps, N, DA, BM)
        if _box_gap(LOY, HIY, i, j, DB, DBP) < bound:
            nb += _strict_count(YT, rows, cols, eps, N, DB, BM)
    tl.store(NA + rows, na, mask=rows < N)
    tl.store(NB + rows, nb, mask=rows < N)


def neighbour_counts(x, y, k, tile, boxes):
    """(eps, n_a, n_b) of k-d-ordered x (N, Da), y (N, Db), float64 (as fastmi gives them: the same distances
    as the CPU paths) or float32, whose `tile`-row tiles are the leaves;
    boxes: (lo_x, hi_x, lo_y, hi_y), each (tiles, D), every tile's min and max per column."""
    check_matrix(x, "x", (torch.float64, torch.float32))
    check_matrix(y, "y", (x.dtype,))
    check_same_rows(("x", x), ("y", y))
    n = x.shape[0]
    if not (0 < k < n and tile > 0 and tile & (tile - 1) == 0):
        raise ValueError(f"need 0 < k < N and a power-of-two tile, got k = {k}, N = {n}, tile = {tile}")
    if x.numel() >= 2**31 or y.numel() >= 2**31:  # transposed copies are indexed f * N + row in int32
        raise ValueError(f"the Triton KSG kernels take at most 2^31 - 1 elements per input, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}; use backend='torch' or fewer samples")
    xt, yt = x.t().contiguous(), y.t().contiguous()
    lo_x, hi_x, lo_y, hi_y = (v.contiguous() for v in boxes)
    tiles = lo_x.shape[0]
    if tiles != triton.cdiv(n, tile) or lo_x.shape[1] != x.shape[1] or lo_y.shape[1] != y.shape[1]:
        raise ValueError(f"boxes must be ({triton.cdiv(n, tile)}, D) per space, got {[tuple(v.shape) for v in boxes]}")
    eps = torch.empty(n, dtype=x.dtype, device=x.device)
    na = torch.empty(n, dtype=torch.int32, device=x.device)
    nb = torch.empty_like(na)
    operands = (xt, yt, lo_x, hi_x, lo_y, hi_y)
    widths = dict(DAP=triton.next_power_of_2(x.shape[1]), DBP=triton.next_power_of_2(y.shape[1]))
    launch(_eps_kernel, (tiles,), *operands, eps, n, x.shape[1], y.shape[1], tiles, k, BM=tile,
           KP=max(2, triton.next_power_of_2(k)), **widths)
    launch(_count_kernel, (tiles,), *operands, eps, na, nb, n, x.shape[1], y.shape[1], tiles, BM=tile, **widths)
    return eps, na, nb


def compile_examples(n=300, da=3, db=9, tile=32):
    """Launches on small CPU tensors that select every variant the launcher uses (for compile_check);
    the data need not be in k-d order to compile."""
    x, y = torch.randn(n, da, dtype=torch.float64), torch.randn(n, db, dtype=torch.float64)
    tiles = triton.cdiv(n, tile)
    boxes = [v[:tiles].contiguous() for v in (x, x, y, y)]
    neighbour_counts(x, y, 3, tile, boxes)
