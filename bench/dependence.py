"""HSIC-type dependence measures on the CPU: fastmi (fused row sums, O(N) memory) against the dense torch
way (N x N kernels, autograd through them), pykeops (symbolic N x N, for RBF CKA) and the dcor package
(distance correlation, forward only), each measurement in a fresh process (bench/compare.py), side by side
at each N; then fastmi alone at a large N (peak memory)."""
from bench import save_json, save_plot
from bench.compare import measure, plot, side_by_side

TABLES = (("cka", True, ("fastmi", "dense", "keops")),
          ("distance_correlation", True, ("fastmi", "dense")),
          ("distance_correlation", False, ("fastmi", "dense", "dcor")))


def run(sizes=(1024, 4096, 16384), d=64, reps=2, large=100_000, tables=TABLES, timeout=300.0):
    """Print one table per (quantity, backward) and the large-N line; save JSON and a plot per table."""
    out = {}
    for quantity, backward, methods in tables:
        rows = side_by_side(sizes, d, backward, "cpu", reps, methods, timeout=timeout, quantity=quantity)
        tag = f"dependence_{quantity}_{'fwd_bwd' if backward else 'fwd'}"
        out[tag] = rows
        passes = "forward+backward" if backward else "forward"
        save_plot(plot, f"{tag}.png", rows, f"{quantity}, D = {d}, {passes}, CPU")
    if large:
        big = measure("fastmi", large, d, backward=True, device="cpu", reps=1, quantity="cka")
        print(f"\nfastmi.cka alone, N = {large:,}, D = {d}, forward+backward: {big['seconds']:.1f} s, peak RSS above "
              f"inputs {big['peak_mb']:.0f} MB, whole process {big['process_peak_rss_mb']:.0f} MB")
        out["large"] = big
    save_json("dependence_cpu.json", out)
    return out
