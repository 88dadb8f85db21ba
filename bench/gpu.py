"""The GPU check (bench/gpu_check.sh): compiled kernels vs the float64 reference, then timings of
fastmi against the dense torch baseline, written as JSON under bench/results/.

With --quick on a machine without CUDA it runs the same code at tiny sizes (Triton interpreter):
a smoke test of this script, not a measurement.
"""
import json
import math
import os
import platform
import sys
import time

import torch

import fastmi
from bench import results_dir
from bench.baselines import dense_kde_mi
from fastmi import bandwidth, binned, reference

# fixed (value atol, gradient max-relative) tolerances; a case also passes within 2x the error of the
# dense torch baseline in the same dtype (FlashAttention's rule)
TOL = {torch.float32: (2e-5, 2e-5), torch.bfloat16: (5e-2, 5e-2), torch.float16: (5e-3, 1e-2)}


def _inputs(n, d, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g)
    b = torch.tanh(a @ torch.randn(d, d, generator=g) / math.sqrt(d)) + 0.3 * torch.randn(n, d, generator=g)
    return a.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype)


def _value_and_grads(fn, a, b):
    a = a.detach().requires_grad_()
    b = b.detach().requires_grad_()
    value = fn(a, b)
    ga, gb = torch.autograd.grad(value, (a, b))
    return float(value.detach()), ga.double(), gb.double()


def _errors(got, ref):
    value, ga, gb = got
    rel = max(float((g - r).abs().max() / r.abs().max()) for g, r in ((ga, ref[1]), (gb, ref[2])))
    return abs(value - ref[0]), rel


def check_case(n, d, dtype, device):
    a, b = _inputs(n, d, dtype, device)
    joint = 2 * d
    bw = [bandwidth.column_bandwidths(x, "median", joint) for x in (a, b)]
    ref = _value_and_grads(lambda x, y: reference.kde_mi(x, y, *bw), a.double(), b.double())
    fast = _errors(_value_and_grads(lambda x, y: fastmi.layer_mi(x, y, backend="triton"), a, b), ref)
    try:
        dense = _errors(_value_and_grads(dense_kde_mi, a, b), ref)
    except (RuntimeError, NotImplementedError) as e:  # e.g. cdist without this dtype
        dense = (math.nan, math.nan)
        print(f"  dense baseline in {dtype} failed: {e}")
    atol, gtol = TOL[dtype]
    ok = all(err <= max(tol, 2 * base) for err, tol, base in zip(fast, (atol, gtol), dense))
    row = dict(n=n, d=d, dtype=str(dtype), value_error=fast[0], grad_rel_error=fast[1],
               dense_value_error=dense[0], dense_grad_rel_error=dense[1], reference=ref[0], ok=ok)
    print(f"  N={n} D={d} {dtype}: |dI|={fast[0]:.2e} grad rel={fast[1]:.2e} "
          f"(dense same dtype: {dense[0]:.2e}, {dense[1]:.2e}) {'ok' if ok else 'FAIL'}")
    return row


def _seconds(fn, cuda):
    if cuda:
        import triton.testing
        return triton.testing.do_bench(fn, warmup=5, rep=50) / 1e3
    fn()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _timed(fn, cuda):
    try:
        return _seconds(fn, cuda)
    except torch.cuda.OutOfMemoryError:
        return None
    finally:
        if cuda:
            torch.cuda.empty_cache()


def exp_bound_pairs_per_s(clock_hz=1.98e9, exp2_per_clock_per_sm=16, exps_per_pair=2):
    """Pairs/s if the forward were bound by the special-function units (MUFU.EX2): 16 per clock per SM
    on Hopper/Ampere; H100 SXM (132 SMs, 1.98 GHz boost) gives ~2.1e12."""
    sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    return sms * exp2_per_clock_per_sm * clock_hz / exps_per_pair


def timing_case(n, d, dtype, device):
    cuda = device == "cuda"
    a, b = _inputs(n, d, dtype, device)
    a.requires_grad_()
    b.requires_grad_()
    row = dict(n=n, d=d, dtype=str(dtype))
    for name, fn in (("fastmi", lambda x, y: fastmi.layer_mi(x, y, check_finite=False)),
                     ("dense", dense_kde_mi)):
        with torch.no_grad():
            row[f"{name}_fwd_s"] = _timed(lambda: fn(a, b), cuda)
        row[f"{name}_fwd_bwd_s"] = _timed(lambda: fn(a, b).backward(), cuda)
    for key in ("fwd_s", "fwd_bwd_s"):
        fast, dense = row[f"fastmi_{key}"], row[f"dense_{key}"]
        row[f"fastmi_{key[:-2]}_pairs_per_s"] = n * n / fast if fast else None
        row[f"speedup_{key[:-2]}"] = dense / fast if fast and dense else None
    if cuda and row["fastmi_fwd_s"]:
        row["exp_bound_fraction_fwd"] = row["fastmi_fwd_pairs_per_s"] / exp_bound_pairs_per_s()
    if row["fastmi_fwd_s"] and row["fastmi_fwd_bwd_s"]:
        row["bwd_over_fwd"] = (row["fastmi_fwd_bwd_s"] - row["fastmi_fwd_s"]) / row["fastmi_fwd_s"]

    def fmt(v, spec):
        return "OOM" if v is None else format(v, spec)
    print(f"  N={n} D={d} {dtype}: fwd {fmt(row['fastmi_fwd_s'], '.4f')} s "
          f"({fmt(row['fastmi_fwd_pairs_per_s'], '.3g')} pairs/s, dense {fmt(row['dense_fwd_s'], '.4f')} s, "
          f"x{fmt(row['speedup_fwd'], '.1f')}); fwd+bwd {fmt(row['fastmi_fwd_bwd_s'], '.4f')} s "
          f"(dense {fmt(row['dense_fwd_bwd_s'], '.4f')} s, x{fmt(row['speedup_fwd_bwd'], '.1f')}); "
          f"bwd/fwd {fmt(row.get('bwd_over_fwd'), '.2f')}")
    return row


def histogram_checks(device, quick):
    """Fused unit_mi and bin+hash kernels vs the torch path on the same device."""
    n, d = (200, 9) if quick else (4096, 64)
    a, b = _inputs(n, d, torch.float32, device)
    rows = []
    for soft, tol in ((False, 1e-5), (True, 5e-4)):
        fused = fastmi.unit_mi(a, b, bins=16, soft=soft, backend="triton")
        plain = fastmi.unit_mi(a, b, bins=16, soft=soft, backend="torch")
        err = float((fused - plain).abs().max())
        rows.append(dict(check=f"unit_mi soft={soft}", n=n, d=d, max_abs_diff=err, ok=err <= tol))
    same = bool(torch.equal(binned.row_hash(a, 30, None, "triton"),
                            binned.row_hash(a, 30, None, "torch")))
    rows.append(dict(check="binned row hash triton == torch", n=n, d=d, ok=same))
    for r in rows:
        print(f"  {r['check']}: {r.get('max_abs_diff', '')} {'ok' if r['ok'] else 'FAIL'}")
    return rows


def histogram_timings(device, quick):
    """unit_mi at N = 8192, Da = Db = 1024, K = 16 (int8 tensor-core ops/s) and binned at N = 1M."""
    cuda = device == "cuda"
    n, d, k = (256, 16, 16) if quick else (8192, 1024, 16)
    a, b = _inputs(n, d, torch.float32, device)
    row = dict(job="unit_mi", n=n, d=d, bins=k)
    row["fused_s"] = _timed(lambda: fastmi.unit_mi(a, b, bins=k, backend="triton"), cuda)
    row["torch_s"] = _timed(lambda: fastmi.unit_mi(a, b, bins=k, backend="torch"), cuda)
    if row["fused_s"]:
        row["int8_tops"] = 2 * n * (d * k) ** 2 / row["fused_s"] / 1e12
    n2 = 1024 if quick else 1_000_000
    a, b = _inputs(n2, 64 if quick else 256, torch.float32, device)
    binned_row = dict(job="binned", n=n2, d=a.shape[1], bins=30,
                      fused_s=_timed(lambda: fastmi.layer_mi(a, b, estimator="binned", backend="triton"), cuda),
                      torch_s=_timed(lambda: fastmi.layer_mi(a, b, estimator="binned", backend="torch"), cuda))
    for r in (row, binned_row):
        print(f"  {r}")
    return [row, binned_row]


def ksg_checks(device, quick):
    """KSG: the Triton kernels' eps and neighbour counts equal the torch path's on the same device."""
    from fastmi import ksg
    from fastmi.kernels.ksg import ksg_counts
    rows = []
    for n, da, db, k in ([(150, 2, 2, 3), (130, 1, 5, 65)] if quick else
                         [(4096, 2, 2, 3), (4096, 10, 10, 3), (4096, 1, 64, 5), (3000, 3, 3, 70)]):
        a, b = _inputs(n, max(da, db), torch.float32, device)
        x, y, boxes = ksg.prepared(a[:, :da], b[:, :db])
        same = all(torch.equal(got.to(want.dtype), want)
                   for got, want in zip(ksg_counts(x, y, k, ksg.ORDER_TILE, boxes), ksg.counts(x, y, k, boxes)))
        rows.append(dict(check=f"ksg counts triton == torch (N={n} Da={da} Db={db} k={k})", n=n, ok=same))
        print(f"  {rows[-1]['check']}: {'ok' if same else 'FAIL'}")
    return rows


def ksg_timings(device, quick):
    """KSG (k = 3, Da = Db = 10): Triton kernels vs the torch path (N = 20k), Triton alone at N = 100k,
    and scikit-learn's KD-tree KSG on the host CPU where scikit-learn is installed."""
    cuda = device == "cuda"
    rows = []
    for n in ([300] if quick else [20_000, 100_000]):
        a, b = _inputs(n, 10, torch.float32, device)
        row = dict(job="ksg", n=n, d=10, k=3)
        row["triton_s"] = _timed(lambda: fastmi.layer_mi(a, b, estimator="ksg", backend="triton"), cuda)
        if n <= 20_000:
            row["torch_same_device_s"] = _timed(lambda: fastmi.layer_mi(a, b, estimator="ksg", backend="torch"), cuda)
        try:
            from bench.baselines import tree_ksg_mi
            from fastmi.ksg import standardized
            x, y = (standardized(v.double()).cpu().numpy() for v in (a, b))
            start = time.perf_counter()
            tree_ksg_mi(x, y)
            row["sklearn_tree_cpu_s"] = time.perf_counter() - start
            row["speedup_vs_tree"] = row["sklearn_tree_cpu_s"] / row["triton_s"] if row["triton_s"] else None
        except ImportError:
            row["sklearn_tree_cpu_s"] = None  # the GPU host may lack scikit-learn
        print(f"  {row}")
        rows.append(row)
    return rows


def million_rows(device, n=1_000_000, d=64):
    """One forward+backward at N = 1M in bf16: must not run out of memory."""
    a, b = _inputs(n, d, torch.bfloat16, device)
    a.requires_grad_()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        fastmi.layer_mi(a, b, check_finite=False).backward()
        torch.cuda.synchronize()
        row = dict(n=n, d=d, seconds=time.perf_counter() - start,
                   peak_gb=torch.cuda.max_memory_allocated() / 2**30, ok=True)
    except torch.cuda.OutOfMemoryError as e:
        row = dict(n=n, d=d, ok=False, error=str(e)[:300])
    print(f"  N=1,000,000 D=64 bf16 forward+backward: {row}")
    return row


def run(quick=False):
    cuda = torch.cuda.is_available()
    if not cuda and not quick:
        sys.exit("bench gpu needs a CUDA GPU (use --quick for a CPU smoke test of this script)")
    device = "cuda" if cuda else "cpu"
    name = torch.cuda.get_device_name() if cuda else "cpu-interpreter"
    dtypes = (torch.float32, torch.bfloat16) if cuda else (torch.float32, torch.float16)
    check_sizes = [(4096, 64), (4096, 512)] if not quick else [(200, 8), (130, 70)]
    time_sizes = [4096, 16384, 65536] if not quick else [128, 256]
    print(f"device: {name}, torch {torch.__version__}")
    print("correctness vs float64 reference (value, gradient):")
    checks = [check_case(n, d, dt, device) for dt in dtypes for n, d in check_sizes]
    print("timings, D = 64:")
    timings = [timing_case(n, 64 if not quick else 16, dt, device) for dt in dtypes for n in time_sizes]
    big = million_rows(device) if cuda and not quick else None
    print("histogram estimators:")
    checks += histogram_checks(device, quick)
    hist_timings = histogram_timings(device, quick)
    print("KSG:")
    checks += ksg_checks(device, quick)
    ksg_rows = ksg_timings(device, quick)
    payload = dict(device=name, host=platform.node(), torch=torch.__version__, triton=_triton_version(),
                   checks=checks, timings=timings, million_rows=big, histogram_timings=hist_timings,
                   ksg_timings=ksg_rows)
    tag = "".join(c if c.isalnum() else "_" for c in name)
    path = os.path.join(results_dir(), f"gpu_check_{tag}.json")
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)
    print(f"wrote {path}")
    if not all(c["ok"] for c in checks) or (big is not None and not big["ok"]):
        sys.exit("GPU check FAILED: see the rows marked FAIL above")


def _triton_version():
    import triton
    return triton.__version__
