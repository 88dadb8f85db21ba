"""fastmi against the dense baseline: time and peak memory, each measurement in a fresh process.

Peak memory is the process's peak RSS above what it held once the inputs existed (CPU), or
torch.cuda.max_memory_allocated above the inputs (CUDA).
"""
import json
import math
import os
import subprocess
import sys
import time

METHODS = ("fastmi", "dense")


def _status_mb(key):
    """A memory line of /proc/self/status (VmRSS: now, VmHWM: peak) in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {key} in /proc/self/status")


def worker(method, n, d, backward, device, reps):
    """Time `reps` runs of one method in this process; return a dict of seconds and peak memory."""
    import torch

    import fastmi
    from bench.baselines import dense_kde_mi
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, d, generator=g)
    b = torch.tanh(a @ torch.randn(d, d, generator=g) / math.sqrt(d)) + 0.1 * torch.randn(n, d, generator=g)
    a, b = a.to(device).requires_grad_(backward), b.to(device).requires_grad_(backward)
    fn = (lambda: fastmi.layer_mi(a, b)) if method == "fastmi" else (lambda: dense_kde_mi(a, b))
    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _status_mb("VmRSS")
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        value = fn()
        if backward:
            value.backward()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else _status_mb("VmHWM") - base
    return dict(method=method, n=n, d=d, backward=backward, device=device, seconds=min(times),
                peak_mb=peak, process_peak_rss_mb=_status_mb("VmHWM"), value=float(value.detach()),
                pairs_per_s=n * n / min(times))


def measure(method, n, d, backward=True, device="cpu", reps=2):
    """Run worker() in a fresh interpreter so that peak memory is this measurement's own."""
    cmd = [sys.executable, "-m", "bench.compare", method, str(n), str(d), str(int(backward)), device, str(reps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TRITON_INTERPRET="0"))
    if proc.returncode != 0:
        out_of_memory = "out of memory" in proc.stderr.lower() or proc.returncode in (-9, 137)
        if out_of_memory:
            return dict(method=method, n=n, d=d, backward=backward, device=device, error="out of memory")
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def side_by_side(sizes, d, backward, device, reps=2):
    """Rows of (fastmi, dense) measurements at each N, with ratios; prints a markdown table."""
    rows = []
    print(f"\n{'forward+backward' if backward else 'forward'}, D = {d}, device = {device}")
    print("| N | fastmi s | dense s | speed-up | fastmi peak MB | dense peak MB | memory ratio | |dI| |")
    print("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        fast, dense = (measure(m, n, d, backward, device, reps) for m in METHODS)
        row = dict(n=n, fastmi=fast, dense=dense)
        if "error" in dense:
            print(f"| {n} | {fast['seconds']:.3f} | {dense['error']} | | {fast['peak_mb']:.0f} | | | |")
        else:
            row["speedup"] = dense["seconds"] / fast["seconds"]
            row["memory_ratio"] = dense["peak_mb"] / max(fast["peak_mb"], 1e-3)
            print(f"| {n} | {fast['seconds']:.3f} | {dense['seconds']:.3f} | {row['speedup']:.2f}x | "
                  f"{fast['peak_mb']:.0f} | {dense['peak_mb']:.0f} | {row['memory_ratio']:.1f}x | "
                  f"{abs(fast['value'] - dense['value']):.1e} |")
        rows.append(row)
    return rows


def plot(rows, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (t_ax, m_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for method in METHODS:
        ok = [r for r in rows if "error" not in r[method]]
        ns = [r["n"] for r in ok]
        t_ax.loglog(ns, [r[method]["seconds"] for r in ok], "o-", label=method)
        m_ax.loglog(ns, [max(r[method]["peak_mb"], 1e-1) for r in ok], "o-", label=method)
    t_ax.set(xlabel="N (rows)", ylabel="seconds", title="time")
    m_ax.set(xlabel="N (rows)", ylabel="peak MB above inputs", title="memory")
    for ax in (t_ax, m_ax):
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    m, n, d, bwd, dev, reps = sys.argv[1:7]
    print(json.dumps(worker(m, int(n), int(d), bool(int(bwd)), dev, int(reps))))
