"""Benchmarks of fastmi against naive estimators and peers: `python -m bench --help`.

Output goes to --out, else $FASTMI_RESULTS, else bench/output/ (untracked, so a first run leaves the
checkout clean); bench/results/ holds the committed reference results that the docs show
(refresh them with `--out bench/results`).
"""
import json
import math
import os
import platform
import time

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "output")


def output_dir():
    """Where benchmarks write JSON and plots ($FASTMI_RESULTS, else bench/output/), created."""
    path = os.environ.get("FASTMI_RESULTS") or DEFAULT_OUT
    os.makedirs(path, exist_ok=True)
    return path


def save_json(name, payload):
    """Write payload (plus the machine's name) as output_dir()/name; returns the path."""
    path = os.path.join(output_dir(), name)
    with open(path, "w") as f:
        json.dump(dict(machine=platform.node(), **payload), f, indent=1)
    print(f"wrote {path}")
    return path


def save_plot(draw, name, *args):
    """Save the matplotlib Figure that draw(*args) returns as output_dir()/name; one line instead
    where matplotlib is not installed (the `bench` extra)."""
    path = os.path.join(output_dir(), name)
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        print(f"plot {path} skipped: matplotlib is not installed (pip install 'fastmi[bench]')")
        return None
    draw(*args).savefig(path, dpi=100)
    print(f"wrote {path}")
    return path


def layer_pair(n, d, dtype="float32", device="cpu", seed=0, noise=0.1):
    """The benchmarks' one input: a ~ N(0, I) (n, d) and a dependent layer b = tanh(a W / sqrt(d)) + noise,
    W ~ N(0, I) (d, d), from a CPU generator (the same numbers on every device); dtype a torch dtype or
    its name."""
    import torch
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g)
    b = torch.tanh(a @ torch.randn(d, d, generator=g) / math.sqrt(d)) + noise * torch.randn(n, d, generator=g)
    return a.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype)


def run_times(fn, reps=1, device="cpu", warmup=False):
    """([wall seconds of each of `reps` calls of fn], the last call's value): the benchmarks' one timer. A
    warm-up call first where asked (compilation, lazy imports, caches, the allocator); on CUDA the device
    is synchronised before and after each call, so a time is the work's, not its launch's."""
    sync = _synchronizer(device)
    if warmup:
        fn()
    times, value = [], None
    for _ in range(reps):
        sync()
        start = time.perf_counter()
        value = fn()
        sync()
        times.append(time.perf_counter() - start)
    return times, value


def timed(fn, reps=1, device="cpu", warmup=False):
    """(median wall seconds over `reps` calls, the last call's value): run_times' median."""
    times, value = run_times(fn, reps, device, warmup)
    return sorted(times)[len(times) // 2], value


def _synchronizer(device):
    if str(device).startswith("cuda"):
        import torch
        return torch.cuda.synchronize
    return lambda: None
