"""KSG kNN MI on the CPU: fastmi vs scipy's cKDTree vs scikit-learn's KD-tree, side by side in one process,
and fastmi's two CPU paths (tree, tiles) at every size, which is where ksg.TREE_CROSSOVER comes from.

Every method gets the same columns scaled to unit variance in float64 and gives the same value (the
tree baselines to float rounding of their digamma sums). A method whose time, predicted from its
previous sizes at this dimension (the power of N they showed, quadratic from one size), exceeds
`budget` seconds is a "-": the baselines' rows appear where they finish. Then mi_test's cost against
one estimate's (bench/significance.py).
"""
import json
import math
import os
import subprocess
import sys

import torch

import fastmi
from bench import save_json, significance, timed
from bench.baselines import ckdtree_ksg_mi, sklearn_ksg_mi
from bench.significance import correlated
from fastmi.estimators import ksg

METHODS = ("fastmi", "fastmi_tree", "fastmi_tiles", "ckdtree", "sklearn")


def path_ksg(x, y, k, tree):
    """fastmi's KSG on standardised x, y through one CPU path (tree or tiles), whatever it would choose."""
    if tree:
        return float(ksg.from_counts(*ksg.tree_counts(x, y, k), k))
    xs, ys, boxes = ksg.prepared(x, y)
    return float(ksg.from_counts(*ksg.neighbour_counts_torch(xs, ys, k, boxes), k))


def _calls(a, b, k):
    x, y = ksg.standardized(a), ksg.standardized(b)
    xn, yn = x.numpy(), y.numpy()
    return dict(fastmi=lambda: float(fastmi.layer_mi(a, b, estimator="ksg", k=k)),
                fastmi_tree=lambda: path_ksg(x, y, k, tree=True),
                fastmi_tiles=lambda: path_ksg(x, y, k, tree=False),
                ckdtree=lambda: ckdtree_ksg_mi(xn, yn, k),
                sklearn=lambda: sklearn_ksg_mi(xn, yn, k))


def run(sizes=(2_000, 20_000, 200_000, 1_000_000), dims=(1, 2, 5, 10, 20), k=3, reps=3, budget=100.0,
        test_n=4096, test_d=2, permutations=100, memory_n=1_000_000):
    print(f"KSG, k = {k}, CPU threads {torch.get_num_threads()}; seconds (median of up to {reps}); "
          f"'-': predicted over {budget:.0f} s")
    print("| N | Da = Db | path | fastmi | fastmi tree | fastmi tiles | cKDTree | scikit-learn | vs cKDTree | "
          "vs scikit-learn | MI |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows, last = [], {}
    for d in dims:
        for n in sizes:
            rows.append(_row(n, d, k, reps, budget, last))
    test = significance.cost("ksg", test_n, test_d, permutations, k=k)
    memory = peak_memory(memory_n, 2, k) if memory_n else None
    save_json("ksg_cpu.json", dict(threads=torch.get_num_threads(), k=k, budget_s=budget, rows=rows,
                                   crossover=ksg.TREE_CROSSOVER, mi_test=test, memory=memory))
    return rows, test


def _row(n, d, k, reps, budget, last):
    """One (N, d) row: each method timed unless its predicted time exceeds the budget."""
    a, b = correlated(n, d)
    calls, row = _calls(a, b, k), dict(n=n, d=d, k=k)
    row["path"] = "tree" if ksg.uses_tree(a, b, "torch") else "tiles"
    for method in METHODS:
        times = last.setdefault((method, d), [])
        if times and predicted(times, n) > budget:
            row[f"{method}_s"] = None
            continue
        large = n >= 200_000  # one cold run: a warm-up and repeats would cost minutes
        if not large:
            calls[method]()  # warm-up: first-call costs (imports, thread pools) are not the method's
        seconds, value = timed(calls[method], 1 if large else reps)
        row[f"{method}_s"], row[f"{method}_mi"] = seconds, value
        times.append((n, seconds))
    _print(row)
    return row


def predicted(times, n):
    """Seconds at n rows from [(n, seconds)] so far: the power of N between the last two sizes (1 to 2),
    2 from one size."""
    (n1, t1) = times[-1]
    power = 2.0 if len(times) < 2 else min(2.0, max(1.0, math.log(t1 / times[-2][1]) / math.log(n1 / times[-2][0])))
    return t1 * (n / n1) ** power


def _print(r):
    def s(method):
        return "-" if r.get(f"{method}_s") is None else f"{r[f'{method}_s']:.3g}"

    def ratio(method):
        other, ours = r.get(f"{method}_s"), r["fastmi_s"]
        return "-" if other is None or ours is None else f"{other / ours:.2f}x"
    mi = f"{r['fastmi_mi']:.4f}" if r.get("fastmi_s") is not None else "-"
    print(f"| {r['n']:,} | {r['d']} | {r['path']} | {s('fastmi')} | {s('fastmi_tree')} | {s('fastmi_tiles')} | "
          f"{s('ckdtree')} | {s('sklearn')} | {ratio('ckdtree')} | {ratio('sklearn')} | {mi} |")


def crossover(sizes=(200, 500, 2_000, 20_000, 100_000), dims=(1, 2, 3, 4, 5, 6, 8, 10), k=3):
    """fastmi's tree path against its tiles at Da = Db = d: where the tiles start to win at each N (the
    source of ksg.TREE_CROSSOVER). Stops a size at the first dimension where the tiles win."""
    print("| N | Da + Db | tree s | tiles s | tiles / tree |")
    print("|---|---|---|---|---|")
    rows = []
    for n in sizes:
        for d in dims:
            x, y = (ksg.standardized(v) for v in correlated(n, d))
            tree, _ = timed(lambda: path_ksg(x, y, k, tree=True), 1 if n > 20_000 else 3)
            tiles, _ = timed(lambda: path_ksg(x, y, k, tree=False), 1 if n > 20_000 else 3)
            rows.append(dict(n=n, joint_dim=2 * d, tree_s=tree, tiles_s=tiles))
            print(f"| {n:,} | {2 * d} | {tree:.3g} | {tiles:.3g} | {tiles / tree:.2f} |")
            if tiles < tree:
                break
    save_json("ksg_crossover_cpu.json", dict(threads=torch.get_num_threads(), k=k, rows=rows,
                                             chosen=ksg.TREE_CROSSOVER))
    return rows


def peak_memory(n, d, k):
    """fastmi's KSG alone in a fresh process: peak RSS above what the process held with its inputs."""
    code = ("import json, fastmi; from bench.compare import status_mb; from bench.ksg import correlated; "
            f"a, b = correlated({n}, {d}); base = status_mb('VmRSS'); "
            f"fastmi.layer_mi(a, b, estimator='ksg', k={k}); "
            "peak = status_mb('VmHWM')\n"
            "print(json.dumps(dict(peak_above_inputs_mb=peak - base, process_peak_mb=peak)))")
    env = dict(os.environ, TRITON_INTERPRET="0")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    result = dict(n=n, d=d, **json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"fastmi alone, N = {n:,}, Da = Db = {d}, fresh process: peak RSS {result['peak_above_inputs_mb']:.0f} MB "
          f"above the inputs ({result['process_peak_mb']:.0f} MB for the whole process)")
    return result
