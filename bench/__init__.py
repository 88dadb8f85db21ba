"""Benchmarks of fastmi against naive estimators: `python -m bench --help`."""
import os
import time


def results_dir():
    """Where benchmarks write JSON and plots: $FASTMI_RESULTS, else bench/results/ (created)."""
    path = os.environ.get("FASTMI_RESULTS") or os.path.join(os.path.dirname(__file__), "results")
    os.makedirs(path, exist_ok=True)
    return path


def timed(fn, reps=1):
    """(median wall seconds over `reps` calls, the last call's value): CPU jobs timed in-process."""
    times, value = [], None
    for _ in range(reps):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], value
