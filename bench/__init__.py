"""Benchmarks of fastmi against naive estimators and peers: `python -m bench --help`.

Output goes to --out, else $FASTMI_RESULTS, else bench/output/ (untracked, so a first run leaves the
checkout clean); bench/results/ holds the committed reference results that README.md shows
(refresh them with `--out bench/results`).
"""
import json
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


def timed(fn, reps=1):
    """(median wall seconds over `reps` calls, the last call's value): CPU jobs timed in-process."""
    times, value = [], None
    for _ in range(reps):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], value
