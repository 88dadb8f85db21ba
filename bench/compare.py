"""fastmi's KDE MI against naive ways of computing the same estimate: time and peak memory, each
measurement in a fresh process, side by side at each N.

Methods (bench/baselines.py): "fastmi"; "dense" (torch cdist + logsumexp, autograd through N x N
matrices: the naive baseline every ratio is against); "numpy" (scipy cdist + logsumexp, forward
only: no autograd); "keops" (pykeops LazyTensor logsumexp, when installed: the `keops` extra).

Timing: one untimed warm-up when repeats > 1, then the median of `repeats` runs, with min and max as
the spread. Peak memory of the timed runs: peak RSS above what the process held after the inputs
and the warm-up existed (CPU; the peak is restarted after the warm-up), or
torch.cuda.max_memory_allocated above the inputs (CUDA). A baseline that cannot run is a row with an
"error" and never stops the benchmark: "skipped: needs ~X GB" (dense matrices that would not fit the
memory limit), "out of memory", "timed out after S s", "not installed", "forward only", "failed: ...".

The same machinery measures the dependence measures (bench/dependence.py): `quantity` names what is
computed ("kde_mi", "cka", "distance_correlation"), and "dense" is always that quantity's naive torch way.

JSON rows (one per N):
    {"quantity", "n", "d", "backward", "device", "dtype",
     "results": {method: {"seconds", "seconds_min", "seconds_max", "times", "peak_mb",
                          "process_peak_rss_mb", "value", "pairs_per_s",
                          "speedup_vs_dense", "memory_ratio_vs_dense"}   # or {"error": "..."}}}
"""
import json
import math
import os
import subprocess
import sys

from bench import layer_pair, run_times

METHODS = ("fastmi", "dense", "numpy", "keops")
BASELINE = "dense"
# peak / (4 N^2 bytes), measured at N = 16384 (dense: fwd+bwd); dcor (the package) builds N x N x D float64
DENSE_MATRICES = {"dense": 8, "numpy": 17, "dcor": lambda d: 2 * d}
QUANTITIES = {"kde_mi": "KDE MI", "cka": "RBF CKA", "distance_correlation": "distance correlation"}


def _proc_mb(path, key):
    """A "Key: value kB" line of a /proc file in MB, or None where it has none."""
    with open(path) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return None


def status_mb(key):
    """A memory line of /proc/self/status (VmRSS: now, VmHWM: peak) in MB."""
    value = _proc_mb("/proc/self/status", key)
    if value is None:
        raise RuntimeError(f"no {key} in /proc/self/status")
    return value


def reset_peak_rss():
    """Restart VmHWM from the current RSS (Linux clear_refs 5), so the warm-up's one-time costs (lazy
    imports, compilation) are not counted as the computation's memory; a no-op where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def available_mb():
    value = _proc_mb("/proc/meminfo", "MemAvailable")
    return math.inf if value is None else value


def _method(name, quantity="kde_mi"):
    """The function of `method` that computes `quantity` (QUANTITIES)."""
    import fastmi
    from bench import baselines
    return {"kde_mi": {"fastmi": fastmi.layer_mi, "dense": baselines.dense_kde_mi, "numpy": baselines.numpy_kde_mi,
                       "keops": baselines.keops_kde_mi},
            "cka": {"fastmi": fastmi.cka, "dense": baselines.dense_cka, "keops": baselines.keops_cka},
            "distance_correlation": {"fastmi": fastmi.distance_correlation,
                                     "dense": baselines.dense_distance_correlation,
                                     "dcor": baselines.dcor_distance_correlation}}[quantity][name]


def worker(method, n, d, backward, device, reps, dtype="float32", quantity="kde_mi"):
    """Time `reps` runs of one method in this process; return a dict of seconds and peak memory."""
    import torch
    a, b = layer_pair(n, d, dtype, device)
    a, b = a.requires_grad_(backward), b.requires_grad_(backward)
    fn = _method(method, quantity)
    cuda = device == "cuda"

    def once():
        value = fn(a, b)
        if backward:
            value.backward()
        return value
    if reps > 1:
        once()  # warm-up: compilation, lazy imports, caches, allocator
        a.grad = b.grad = None
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        reset_peak_rss()
        base = status_mb("VmRSS")
    times, value = run_times(once, reps, device)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else status_mb("VmHWM") - base
    median = sorted(times)[len(times) // 2]
    return dict(method=method, quantity=quantity, n=n, d=d, backward=backward, device=device, dtype=dtype,
                seconds=median, seconds_min=min(times), seconds_max=max(times), times=times, peak_mb=peak,
                process_peak_rss_mb=status_mb("VmHWM"), value=float(value.detach()), pairs_per_s=n * n / median)


def _cannot_run(method, n, d, backward, device, memory_limit_mb):
    """Why a method is not even started (a reason string), or None."""
    if method in ("numpy", "dcor") and (backward or device != "cpu"):
        return "forward only" if backward else "CPU only"
    if method == "dcor":
        try:
            import dcor  # noqa: F401
        except ImportError:
            return "not installed (pip install dcor)"
    if method == "keops":
        try:
            import pykeops  # noqa: F401
        except ImportError:
            return "not installed (pip install pykeops)"
    matrices = DENSE_MATRICES.get(method, 0)
    need = (matrices(d) if callable(matrices) else matrices) * 4 * n * n / 2**20
    if need > memory_limit_mb:
        return f"skipped: needs ~{need / 1024:.1f} GB, limit {memory_limit_mb / 1024:.1f} GB"
    return None


def measure(method, n, d, backward=True, device="cpu", reps=2, dtype="float32", timeout=600.0,
            memory_limit_mb=None, quantity="kde_mi"):
    """Run worker() in a fresh interpreter so that peak memory is this measurement's own; a method
    that cannot run returns {"error": reason} instead of raising."""
    head = dict(method=method, n=n, d=d, backward=backward, device=device, dtype=dtype)
    limit = 0.8 * available_mb() if memory_limit_mb is None else memory_limit_mb
    reason = _cannot_run(method, n, d, backward, device, limit)
    if reason:
        return dict(head, error=reason)
    cmd = [sys.executable, "-m", "bench.compare", method, str(n), str(d), str(int(backward)), device, str(reps), dtype,
           quantity]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, TRITON_INTERPRET="0"))
    except subprocess.TimeoutExpired:
        return dict(head, error=f"timed out after {timeout:.0f} s")
    if proc.returncode != 0:
        err = proc.stderr.lower()
        if "out of memory" in err or "can't allocate memory" in err or proc.returncode in (-9, 137):
            return dict(head, error="out of memory")
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return dict(head, error=f"failed: {last[:200]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def side_by_side(sizes, d, backward, device, reps=3, methods=("fastmi", "dense"), dtype="float32", timeout=600.0,
                 memory_limit_mb=None, quantity="kde_mi"):
    """One row per N with every method's measurement and its ratios vs the dense baseline; prints a
    markdown table and a progress line per measurement (stderr)."""
    rows = []
    total, done = len(sizes) * len(methods), 0
    for n in sizes:
        results = {}
        for method in methods:
            done += 1
            print(f"[{done}/{total}] {quantity} {method} N={n} D={d} {dtype} {device} "
                  f"{'forward+backward' if backward else 'forward'} ...", file=sys.stderr, flush=True)
            results[method] = measure(method, n, d, backward, device, reps, dtype, timeout, memory_limit_mb, quantity)
        _add_ratios(results)
        rows.append(dict(quantity=quantity, n=n, d=d, backward=backward, device=device, dtype=dtype, results=results))
    print_table(rows)
    return rows


def _add_ratios(results):
    base = results.get(BASELINE, {})
    for r in results.values():
        if "error" not in r and "error" not in base and base:
            r["speedup_vs_dense"] = base["seconds"] / r["seconds"]
            r["memory_ratio_vs_dense"] = base["peak_mb"] / max(r["peak_mb"], 1e-3)


def print_table(rows):
    if not rows:
        return
    r0 = rows[0]
    print(f"\n{QUANTITIES[r0.get('quantity', 'kde_mi')]}, {'forward+backward' if r0['backward'] else 'forward'}, "
          f"D = {r0['d']}, {r0['dtype']}, "
          f"{r0['device']}; time = median of repeats (min-max); ratios vs {BASELINE}")
    print("| method | N | time s | spread s | speed-up vs dense | peak MB | memory ratio vs dense | |dI| vs dense |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        base = row["results"].get(BASELINE, {})
        for method, r in row["results"].items():
            if "error" in r:
                print(f"| {method} | {row['n']} | {r['error']} | | | | | |")
                continue
            diff = f"{abs(r['value'] - base['value']):.1e}" if "value" in base else ""
            print(f"| {method} | {row['n']} | {r['seconds']:.3f} | {r['seconds_min']:.3f}-{r['seconds_max']:.3f} | "
                  f"{_ratio(r, 'speedup_vs_dense')} | {r['peak_mb']:.0f} | {_ratio(r, 'memory_ratio_vs_dense')} | "
                  f"{diff} |")


def _ratio(r, key):
    return f"{r[key]:.2f}x" if key in r else ""


def plot(rows, title):
    """Figure of time and peak memory vs N per method, log-log; methods that could not run are left out."""
    # imported here: `python -m bench` parses its options without importing fastmi (and so triton), which
    # lets `gpu --quick` choose the interpreter on a CPU first
    from fastmi.monitor import new_figure
    fig = new_figure(figsize=(10, 4))
    t_ax, m_ax = fig.subplots(1, 2)
    for method in dict.fromkeys(m for row in rows for m in row["results"]):
        ok = [row for row in rows if "error" not in row["results"].get(method, {"error": 1})]
        if not ok:
            continue
        ns = [row["n"] for row in ok]
        t_ax.loglog(ns, [row["results"][method]["seconds"] for row in ok], "o-", label=method)
        m_ax.loglog(ns, [max(row["results"][method]["peak_mb"], 1e-1) for row in ok], "o-", label=method)
    t_ax.set(xlabel="N (rows)", ylabel="seconds (median)", title="time")
    m_ax.set(xlabel="N (rows)", ylabel="peak MB above inputs", title="memory")
    for ax in (t_ax, m_ax):
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    m, n, d, bwd, dev, reps, dt, what = sys.argv[1:9]
    print(json.dumps(worker(m, int(n), int(d), bool(int(bwd)), dev, int(reps), dt, what)))
