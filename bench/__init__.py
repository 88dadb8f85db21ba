"""Benchmarks of fastmi against naive estimators: `python -m bench --help`."""
