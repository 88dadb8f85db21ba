"""fastmi.mi_test: what a test costs against one estimate (side by side, CPU), and whether its
p-values hold their level — the false-positive rate on independent data over many seeds — and its power
on dependent data, per estimator.

A correct test with P = 99 permutations gives p <= 0.05 in exactly 5% of seeds and p < 0.05 in 4% (p is a
multiple of 1/100); over 1000 seeds the binomial sd is 0.7% and 0.6%.
"""
import math

import torch

import fastmi
from bench import save_json, timed

COSTS = (("kde", 4096, 64, {}), ("ksg", 4096, 2, {}), ("ksg", 512, 768, {}), ("gcmi", 4096, 64, {}))
FPR_ESTIMATORS = (("ksg", {}), ("kde", {}), ("gcmi", {}), ("binned", dict(bins=8)), ("unit", dict(bins=8)),
                  ("auto", {}))


def correlated(n, d, rho=0.8, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g)
    return a, rho * a + math.sqrt(1 - rho ** 2) * torch.randn(n, d, generator=g)


def cost(estimator, n, d, permutations=100, reps=3, **options):
    """mi_test(estimator, permutations) against `permutations` one-estimate times, side by side."""
    a, b = correlated(n, d)
    one, _ = timed(lambda: fastmi.layer_mi(a, b, estimator=estimator, **options), reps)
    test_s, result = timed(lambda: fastmi.mi_test(a, b, estimator=estimator, permutations=permutations, **options),
                           reps)
    print(f"mi_test(estimator={estimator!r}, permutations={permutations}), N = {n}, Da = Db = {d}: {test_s:.2f} s = "
          f"{test_s / one:.0f} one-estimate times ({test_s / one / permutations:.2f} x {permutations}; one estimate "
          f"{one * 1e3:.0f} ms); p = {result.p_value:.3g}")
    return dict(estimator=estimator, n=n, d=d, permutations=permutations, one_s=one, test_s=test_s,
                per_permutation=test_s / one / permutations, p_value=result.p_value)


def false_positive_rate(estimator, seeds=1000, n=200, d=1, permutations=99, **options):
    """The fraction of seeds whose independent Gaussian a, b (N x d each) get p < 0.05 and p <= 0.05."""
    p_values = []
    for seed in range(seeds):
        g = torch.Generator().manual_seed(10_000 + seed)
        a, b = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
        p_values.append(fastmi.mi_test(a, b, estimator=estimator, permutations=permutations, seed=seed,
                                       **options).p_value)
    p = torch.tensor(p_values)
    return dict(estimator=estimator, seeds=seeds, n=n, d=d, permutations=permutations,
                below=float((p < 0.05).double().mean()), at_most=float((p <= 0.05).double().mean()))


def power(estimator, n=300, d=2, rho=0.5, permutations=200, **options):
    """mi_test's p-value on one dependent draw (rho per column pair)."""
    a, b = correlated(n, d, rho, seed=1)
    return fastmi.mi_test(a, b, estimator=estimator, permutations=permutations, **options).p_value


def run(costs=COSTS, estimators=FPR_ESTIMATORS, seeds=1000, n=200, d=1, permutations=99):
    """Print the cost lines and one table (false-positive rates at n, d; p on dependent data); save JSON."""
    timings = [cost(name, size, dim, **options) for name, size, dim, options in costs]
    print(f"\nmi_test on independent Gaussians (N = {n}, d = {d} per side, {permutations} permutations, {seeds} "
          "seeds), and on one dependent draw (rho = 0.5, N = 300, d = 2, 200 permutations):")
    print("| estimator | rate p < 0.05 | rate p <= 0.05 | p, dependent |")
    print("|---|---|---|---|")
    rates = []
    for name, options in estimators:
        rate = false_positive_rate(name, seeds, n, d, permutations, **options)
        rate["dependent_p"] = power(name, **options)
        rates.append(rate)
        print(f"| {name} | {rate['below']:.3f} | {rate['at_most']:.3f} | {rate['dependent_p']:.3g} |")
    save_json("significance.json", dict(threads=torch.get_num_threads(), costs=timings, rates=rates))
    return timings, rates
