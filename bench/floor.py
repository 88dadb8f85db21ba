"""How close the CPU path of the KDE estimator is to its floor: the GEMM and exp work it cannot avoid,
at this machine's measured rates (side by side in one process).

Model (no leave-one-out, symmetric blocks, N rows, layer widths Da, Db):
    forward  >= Gram: N^2 / 2 pairs x 2 (D + 2) flops per layer at the Gram-block GEMM rate
              + exps: N^2 / 2 per layer at the exp2 rate
    backward >= the same Gram and exps again
              + weighted sums S @ X: 2 N^2 D flops per layer at the S @ X-block GEMM rate
Rates are measured on the very tile shapes the torch path uses (ROWS x CHUNK, K = D + 2 for the
Gram, CHUNK x D for S @ X) and on an in-place exp2 over a block; everything else the path does
(clamps, products, weights, row and column sums) is what the ratio to the floor measures.
"""

import torch

import fastmi
from bench import layer_pair, run_times
from fastmi.estimators import kde_torch


def _best(fn, reps=5):
    """The fastest of `reps` timed calls after a warm-up (a rate's floor: the least-disturbed run)."""
    return min(run_times(fn, reps, warmup=True)[0])


def rates(n, d):
    """GEMM flops/s of the Gram and S @ X block shapes and exp2/s, measured here."""
    rows, cols = min(n, kde_torch.ROWS), min(n, kde_torch.CHUNK)
    g = torch.Generator().manual_seed(0)
    left, right = torch.randn(rows, d + 2, generator=g), torch.randn(cols, d + 2, generator=g)
    block, x = torch.empty(rows, cols), torch.randn(cols, d, generator=g)
    gram = 2 * rows * cols * (d + 2) / _best(lambda: torch.mm(left, right.T, out=block))
    weighted = 2 * rows * cols * d / _best(lambda: torch.mm(block, x))
    exponents = -30 * torch.rand(rows, cols, generator=g)
    exp2 = rows * cols / (_best(lambda: block.copy_(exponents).exp2_()) - _best(lambda: block.copy_(exponents)))
    return dict(gram_flops_per_s=gram, weighted_sum_flops_per_s=weighted, exp2_per_s=exp2)


def floors(n, widths, r):
    """Modelled forward and backward floors in seconds."""
    pairs = n * n / 2
    gram = sum(pairs * 2 * (d + 2) for d in widths) / r["gram_flops_per_s"]
    exps = pairs * len(widths) / r["exp2_per_s"]
    weighted = sum(2 * n * n * d for d in widths) / r["weighted_sum_flops_per_s"]
    return gram + exps, gram + exps + weighted


def measure(n=16384, d=64, reps=3, rounds=3):
    """fastmi's forward and backward against the floor at this machine's rates: a dict. Rates and times
    are measured in alternating rounds (a shared machine's speed drifts); the fastest of each counts."""
    a, b = layer_pair(n, d)
    a_grad = a.clone().requires_grad_()
    runs = []
    for _ in range(rounds):
        with torch.no_grad():
            forward = _best(lambda: fastmi.layer_mi(a, b, check_finite=False, backend="torch"), reps)
        both = _best(lambda: fastmi.layer_mi(a_grad, b, check_finite=False, backend="torch").backward(), reps)
        runs.append((rates(n, d), forward, both))
    r = {key: max(run[0][key] for run in runs) for key in runs[0][0]}
    forward, both = min(run[1] for run in runs), min(run[2] for run in runs)
    floor_fwd, floor_bwd = floors(n, [d, d], r)
    return dict(n=n, d=d, threads=torch.get_num_threads(), **r, forward_s=forward, backward_s=both - forward,
                floor_forward_s=floor_fwd, floor_backward_s=floor_bwd, forward_over_floor=forward / floor_fwd,
                backward_over_floor=(both - forward) / floor_bwd)


def report(row):
    print(f"\nCPU floor model, N = {row['n']}, D = {row['d']} per side, {row['threads']} threads: Gram blocks "
          f"{row['gram_flops_per_s'] / 1e9:.0f} GFLOP/s, S @ X blocks {row['weighted_sum_flops_per_s'] / 1e9:.0f} "
          f"GFLOP/s, exp2 {row['exp2_per_s'] / 1e9:.2f} G/s")
    print("| pass | fastmi s | floor s | fastmi / floor |")
    print("|---|---|---|---|")
    for name in ("forward", "backward"):
        print(f"| {name} | {row[f'{name}_s']:.3f} | {row[f'floor_{name}_s']:.3f} | {row[f'{name}_over_floor']:.2f}x |")
