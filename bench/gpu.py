"""GPU timings (bench/gpu_check.sh runs them after tests/test_gpu.py has checked the compiled kernels
against the float64 reference): fastmi against the dense torch baseline, the dependence measures
against theirs, the histogram and KSG kernels against their torch paths, N = 1M in bf16; JSON in the
output folder.

With --quick on a machine without CUDA it runs the same code at tiny sizes (Triton interpreter):
a smoke test of this script, not a measurement.
"""
import sys

import torch

import fastmi
from bench import layer_pair, save_json, timed
from bench.baselines import dense_kde_mi


def _seconds(fn, cuda):
    if cuda:
        import triton.testing
        return triton.testing.do_bench(fn, warmup=5, rep=50) / 1e3
    return timed(fn, warmup=True)[0]


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
    a, b = layer_pair(n, d, dtype, device)
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


def histogram_timings(device, quick):
    """unit_mi at N = 8192, Da = Db = 1024, K = 16 (int8 tensor-core ops/s) and binned at N = 1M."""
    cuda = device == "cuda"
    n, d, k = (256, 16, 16) if quick else (8192, 1024, 16)
    a, b = layer_pair(n, d, torch.float32, device)
    row = dict(job="unit_mi", n=n, d=d, bins=k)
    row["fused_s"] = _timed(lambda: fastmi.unit_mi(a, b, bins=k, backend="triton"), cuda)
    row["torch_s"] = _timed(lambda: fastmi.unit_mi(a, b, bins=k, backend="torch"), cuda)
    if row["fused_s"]:
        row["int8_tops"] = 2 * n * (d * k) ** 2 / row["fused_s"] / 1e12
    n2 = 1024 if quick else 1_000_000
    a, b = layer_pair(n2, 64 if quick else 256, torch.float32, device)
    binned_row = dict(job="binned", n=n2, d=a.shape[1], bins=30,
                      fused_s=_timed(lambda: fastmi.layer_mi(a, b, estimator="binned", backend="triton"), cuda),
                      torch_s=_timed(lambda: fastmi.layer_mi(a, b, estimator="binned", backend="torch"), cuda))
    for r in (row, binned_row):
        print(f"  {r}")
    return [row, binned_row]


def ksg_timings(device, quick):
    """KSG (k = 3, Da = Db = 10): Triton kernels vs the torch path (N = 20k), Triton alone at N = 100k,
    and scikit-learn's KD-tree KSG on the host CPU where scikit-learn is installed."""
    cuda = device == "cuda"
    rows = []
    for n in ([300] if quick else [20_000, 100_000]):
        a, b = layer_pair(n, 10, torch.float32, device)
        row = dict(job="ksg", n=n, d=10, k=3)
        row["triton_s"] = _timed(lambda: fastmi.layer_mi(a, b, estimator="ksg", backend="triton"), cuda)
        if n <= 20_000:
            row["torch_same_device_s"] = _timed(lambda: fastmi.layer_mi(a, b, estimator="ksg", backend="torch"), cuda)
        try:
            from bench.baselines import sklearn_ksg_mi
            from fastmi.estimators.ksg import standardized
            x, y = (standardized(v.double()).cpu().numpy() for v in (a, b))
            row["sklearn_tree_cpu_s"] = timed(lambda: sklearn_ksg_mi(x, y))[0]
            row["speedup_vs_tree"] = row["sklearn_tree_cpu_s"] / row["triton_s"] if row["triton_s"] else None
        except ImportError:
            row["sklearn_tree_cpu_s"] = None  # the GPU host may lack scikit-learn
        print(f"  {row}")
        rows.append(row)
    return rows


def dependence_timings(device, quick):
    """RBF CKA and distance correlation (D = 64): fastmi's kernels against the dense torch way (float32,
    N = 16k: forward, forward+backward) and fastmi alone in bf16 at N = 64k (forward pairs/s; the
    issue's target is 5e11)."""
    from bench.baselines import dense_cka, dense_distance_correlation
    cuda = device == "cuda"
    rows = []
    cases = [(64, torch.float32, True), (128, torch.float16, False)] if quick else \
        [(16384, torch.float32, True), (65536, torch.bfloat16, False)]
    for n, dtype, with_dense in cases:
        a, b = layer_pair(n, 16 if quick else 64, dtype, device)
        a.requires_grad_()
        b.requires_grad_()
        for name, fast, dense in (("cka", fastmi.cka, dense_cka),
                                  ("distance_correlation", fastmi.distance_correlation, dense_distance_correlation)):
            row = dict(job=name, n=n, d=a.shape[1], dtype=str(dtype))
            for key, fn in (("fastmi", lambda x, y: fast(x, y, check_finite=False)), ("dense", dense)):
                if key == "dense" and not with_dense:
                    continue
                with torch.no_grad():
                    row[f"{key}_fwd_s"] = _timed(lambda: fn(a, b), cuda)
                row[f"{key}_fwd_bwd_s"] = _timed(lambda: fn(a, b).backward(), cuda)
            fwd = row["fastmi_fwd_s"]
            row["fastmi_fwd_pairs_per_s"] = n * n / fwd if fwd else None
            for key in ("fwd_s", "fwd_bwd_s"):
                fast_s, dense_s = row[f"fastmi_{key}"], row.get(f"dense_{key}")
                row[f"speedup_{key[:-2]}"] = dense_s / fast_s if fast_s and dense_s else None
            print(f"  {row}")
            rows.append(row)
    return rows


def million_rows(device, n=1_000_000, d=64):
    """One forward+backward at N = 1M in bf16: must not run out of memory."""
    a, b = layer_pair(n, d, torch.bfloat16, device)
    a.requires_grad_()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    try:
        seconds = timed(lambda: fastmi.layer_mi(a, b, check_finite=False).backward(), device=device)[0]
        row = dict(n=n, d=d, seconds=seconds, peak_gb=torch.cuda.max_memory_allocated() / 2**30, ok=True)
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
    time_sizes = [4096, 16384, 65536] if not quick else [64, 128]
    print(f"device: {name}, torch {torch.__version__}")
    print("timings, D = 64:")
    timings = [timing_case(n, 64 if not quick else 16, dt, device) for dt in dtypes for n in time_sizes]
    big = million_rows(device) if cuda and not quick else None
    print("dependence measures:")
    dependence_rows = dependence_timings(device, quick)
    print("histogram estimators:")
    hist_timings = histogram_timings(device, quick)
    print("KSG:")
    ksg_rows = ksg_timings(device, quick)
    tag = "".join(c if c.isalnum() else "_" for c in name)
    save_json(f"gpu_timings_{tag}.json", dict(device=name, torch=torch.__version__, triton=_triton_version(),
                                              timings=timings, million_rows=big, histogram_timings=hist_timings,
                                              ksg_timings=ksg_rows, dependence_timings=dependence_rows))
    if big is not None and not big["ok"]:
        sys.exit("N = 1M in bf16 ran out of memory")


def _triton_version():
    import triton
    return triton.__version__
