"""Histogram estimators against the numpy ways, side by side in one process (CPU).

- unit_mi (hard codes, one GEMM) vs looping numpy.histogram2d over every unit pair;
- layer-binned MI (bin + 64-bit row hash + torch.unique) vs np.unique over the binned rows viewed as
  bytes (as in the IDNNs code of Shwartz-Ziv & Tishby).
"""
import numpy as np
import torch

import fastmi
from bench import save_json, timed
from fastmi import reference


def numpy_unique_binned_mi(a, b, bins):
    """The IDNNs way: bin over the layer's range, rows as void bytes, np.unique for the counts."""
    def entropy(symbols):
        rows = np.ascontiguousarray(symbols).view(np.dtype((np.void, symbols.dtype.itemsize * symbols.shape[1])))
        _, counts = np.unique(rows, return_counts=True)
        p = counts / counts.sum()
        return -(p * np.log(p)).sum()
    sa, sb = reference.bin_layer(a, bins, None), reference.bin_layer(b, bins, None)
    return entropy(sa) + entropy(sb) - entropy(np.concatenate([sa, sb], 1))


def run(n_unit=4096, d_unit=256, bins_unit=16, n_layer=100_000, d_layer=256, bins_layer=30):
    g = torch.Generator().manual_seed(0)
    rows = []
    a = torch.randn(n_unit, d_unit, generator=g, dtype=torch.float64)
    b = torch.tanh(a @ torch.randn(d_unit, d_unit, generator=g, dtype=torch.float64) / 16)
    t_fast, fast = timed(lambda: fastmi.unit_mi(a, b, bins=bins_unit))
    t_np, slow = timed(lambda: reference.unit_mi_histogram2d(a.numpy(), b.numpy(), bins_unit))
    err = float((fast - torch.from_numpy(slow)).abs().max())
    rows.append(dict(job="unit_mi", n=n_unit, d=d_unit, bins=bins_unit, fastmi_s=t_fast, numpy_s=t_np,
                     speedup=t_np / t_fast, max_abs_diff=err))
    a = torch.randn(n_layer, d_layer, generator=g)
    b = torch.tanh(a @ torch.randn(d_layer, d_layer, generator=g) / 16)
    t_fast, fast = timed(lambda: fastmi.layer_mi(a, b, estimator="binned", bins=bins_layer))
    t_np, slow = timed(lambda: numpy_unique_binned_mi(a.numpy(), b.numpy(), bins_layer))
    rows.append(dict(job="binned", n=n_layer, d=d_layer, bins=bins_layer, fastmi_s=t_fast, numpy_s=t_np,
                     speedup=t_np / t_fast, max_abs_diff=abs(float(fast) - float(slow))))
    print("| job | N | D | bins | fastmi s | numpy s | speed-up | max |diff| |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['job']} | {r['n']} | {r['d']} | {r['bins']} | {r['fastmi_s']:.3f} | {r['numpy_s']:.3f} | "
              f"{r['speedup']:.1f}x | {r['max_abs_diff']:.1e} |")
    save_json("histogram_cpu.json", dict(rows=rows))
    return rows
