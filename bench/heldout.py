"""Held-out tasks: 14 ground-truth tasks of the kinds in Czyz et al. 2023's benchmark ("Beyond Normal", the
bmi package), written once and not used to choose auto's rules or thresholds (measured on bench.suite);
mi_interval's upward-only extrapolation was chosen after seeing them (docs/significance.md).
`heldout_tasks(n, seed)` yields (name, a, b, true MI in nats).

How each truth is known:
- Gaussians (1v1, dense 2x2 / 5x5, sparse 3x3): closed form, fastmi.reference.gaussian_mi.
- Multivariate Student-t: the Gaussian MI of its dispersion plus the closed-form correction
  (bench.transforms.student_t_correction).
- Additive uniform noise, X ~ U(0, 1), Y = X + U(-e, e): h(Y | X) = ln 2e and h(Y) by integrating the
  trapezoid density of Y, so I = e - ln 2e for e <= 1/2 and 1 / (4e) for e >= 1/2.
- Monotone maps of single columns (normal cdf, wiggly x + 0.3 sin 2x, half-cube, asinh) and the swiss-roll
  embedding of a uniform column (t -> (t cos t, t sin t) / 10 with t in [1.5 pi, 4.5 pi], one-to-one) keep MI.
tests/test_suite.py checks the additive formula against quadrature and that the maps are one-to-one.
"""
import math

import torch

from bench.suite import equicorrelated_cov, paired_cov, split_gaussian, student_t
from bench.transforms import half_cube, normal_cdf

F64 = torch.float64


def additive_uniform_mi(e):
    """I(X; X + N), X ~ U(0, 1), N ~ U(-e, e) (module docstring)."""
    return e - math.log(2 * e) if e <= 0.5 else 1 / (4 * e)


def wiggly(x):
    """x + 0.3 sin 2x: increasing (derivative >= 0.4), so it keeps MI."""
    return x + 0.3 * torch.sin(2 * x)


def swiss_roll(u):
    """(n, 1) in [0, 1] -> (n, 2): the swiss roll t (cos t, sin t) / 10, t = pi (1.5 + 3u); one-to-one."""
    t = math.pi * (1.5 + 3 * u[:, 0])
    return torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) / 10


def heldout_tasks(n, seed=0):
    g = torch.Generator().manual_seed(seed * 1000 + 707)
    one = paired_cov(1, 1, 0.75)
    a, b, truth = split_gaussian(n, one, 1, g)
    yield "normal 1x1 rho=0.75", a, b, truth
    yield "wiggly(a), wiggly(b) 1x1 rho=0.75", wiggly(a), wiggly(b), truth
    a, b, truth = split_gaussian(n, one, 1, g)
    yield "swiss roll(normal-cdf(a)), b 2x1 rho=0.75", swiss_roll(normal_cdf(a)), b, truth
    for d in (2, 5):
        a, b, truth = split_gaussian(n, equicorrelated_cov(d, 0.5), d, g)
        yield f"dense normal {d}x{d}", a, b, truth
    a, b, truth = split_gaussian(n, equicorrelated_cov(2, 0.5), 2, g)
    yield "dense normal, normal-cdf(a), normal-cdf(b) 2x2", normal_cdf(a), normal_cdf(b), truth
    a, b, truth = split_gaussian(n, paired_cov(3, 2, 0.8), 3, g)
    yield "sparse normal 3x3 (2 pairs rho=0.8)", a, b, truth
    yield "sparse normal, half-cube(a), asinh(b) 3x3", half_cube(a), torch.asinh(b), truth
    for e in (0.1, 0.75):
        x = torch.rand(n, 1, generator=g, dtype=F64)
        yield f"additive uniform noise e={e} 1x1", x, x + e * (2 * torch.rand(n, 1, generator=g, dtype=F64) - 1), \
            additive_uniform_mi(e)
    for d, nu in ((1, 1), (2, 2), (3, 3)):
        a, b, truth = student_t(n, paired_cov(d, d, 0.75), d, nu, g)
        yield f"student-t nu={nu} {d}x{d} rho=0.75", a, b, truth
    a, b, truth = student_t(n, paired_cov(5, 5, 0.75), 5, 3, g)
    yield "student-t nu=3, asinh(a) 5x5 rho=0.75", torch.asinh(a), b, truth


def run(ns=(500, 2000), seeds=5):
    """Mean abs error (nats) of auto's estimate, mi_interval's `debiased`, KSG and GCMI on the suite (where auto's
    rules were measured) and on the held-out tasks, `seeds` seeds per task and N; the paired difference
    debiased - estimate with its standard error. Prints a markdown table; returns the rows."""
    import statistics
    import warnings

    import fastmi
    from bench.accuracy import suite_tasks
    sources = {"suite": lambda n, s: ((name, a, b, t) for name, _, a, b, t in suite_tasks(n, s)),
               "held-out": heldout_tasks}
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unstable estimates and saturated ones warn: here they are measured
        for n in ns:
            for source, tasks in sources.items():
                for seed in range(seeds):
                    for name, a, b, truth in tasks(n, seed):
                        interval = fastmi.mi_interval(a, b, seed=seed)
                        rows.append(dict(n=n, source=source, seed=seed, task=name, truth=truth,
                                         auto=interval.estimate, debiased=interval.debiased, stable=interval.stable,
                                         ksg=float(fastmi.layer_mi(a, b, estimator="ksg")),
                                         gcmi=float(fastmi.layer_mi(a, b, estimator="gcmi"))))
    print(f"\nmean abs error (nats), {seeds} seeds per task: auto's estimate, mi_interval's debiased, KSG, GCMI")
    print("| tasks | N | auto | auto, debiased | debiased - auto (paired, ± se) | KSG | GCMI |")
    print("|---|---|---|---|---|---|---|")
    for n in ns:
        for source in sources:
            mine = [r for r in rows if r["n"] == n and r["source"] == source]
            err = {key: [abs(r[key] - r["truth"]) for r in mine] for key in ("auto", "debiased", "ksg", "gcmi")}
            diff = [d - e for d, e in zip(err["debiased"], err["auto"])]
            se = statistics.stdev(diff) / len(diff) ** 0.5
            print(f"| {source} ({len(mine) // seeds} tasks) | {n} | {statistics.fmean(err['auto']):.3f} | "
                  f"{statistics.fmean(err['debiased']):.3f} | {statistics.fmean(diff):+.4f} ± {se:.4f} | "
                  f"{statistics.fmean(err['ksg']):.3f} | {statistics.fmean(err['gcmi']):.3f} |")
    return rows
