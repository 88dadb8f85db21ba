"""KSG kNN MI: fastmi (torch path on CPU) vs scikit-learn's KD-tree KSG, side by side in one process.

Both get the same columns scaled to unit variance; fastmi runs in float32 (what a layer gives it),
the tree in float64, so the values agree to float32 rounding of the distances.
"""
import torch

import fastmi
from bench import save_json, timed
from bench.baselines import tree_ksg_mi
from fastmi.estimators.ksg import standardized


def correlated(n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g)
    return a, 0.8 * a + 0.6 * torch.randn(n, d, generator=g)


def run(n=20_000, dims=(1, 5, 10), k=3, reps=3):
    rows = []
    print("| N | Da = Db | fastmi s | scikit-learn KD-tree s | speed-up | fastmi MI | tree MI |")
    print("|---|---|---|---|---|---|---|")
    for d in dims:
        a, b = correlated(n, d)
        x, y = standardized(a.double()).numpy(), standardized(b.double()).numpy()
        t_fast, fast = timed(lambda: float(fastmi.layer_mi(a, b, estimator="ksg", k=k)), reps)
        t_tree, tree = timed(lambda: tree_ksg_mi(x, y, k), reps)
        rows.append(dict(n=n, d=d, k=k, fastmi_s=t_fast, tree_s=t_tree, speedup=t_tree / t_fast, fastmi_mi=fast,
                         tree_mi=tree))
        print(f"| {n} | {d} | {t_fast:.2f} | {t_tree:.2f} | {t_tree / t_fast:.2f}x | {fast:.4f} | {tree:.4f} |")
    save_json("ksg_cpu.json", dict(threads=torch.get_num_threads(), rows=rows))
    return rows
