"""Benchmarks of fastmi against naive estimators: `python -m bench --help`."""
import os


def results_dir():
    """Where benchmarks write JSON and plots: $FASTMI_RESULTS, else bench/results/ (created)."""
    path = os.environ.get("FASTMI_RESULTS") or os.path.join(os.path.dirname(__file__), "results")
    os.makedirs(path, exist_ok=True)
    return path
