"""fastmi.mi_interval's coverage: on tasks with a known MI, the fraction of independent draws whose 95%
interval holds the truth, the median width, and how many misses `stable=False` flagged.

Each draw is a fresh sample of the task (bench.accuracy.suite_tasks with its own seed). A task where the
estimator is not consistent at that N (its bias beyond its spread) cannot be covered by any interval of
its spread: a task is called consistent at N where |mean error| <= the median standard error (a bias of
one standard error leaves a 95% t-interval ~92% coverage; more, and no interval of the spread can
cover). Coverage below 90% is tested with a one-sided binomial test against 0.9 (Holm over the task
rows, alpha 0.05).
"""
import statistics
import warnings

import fastmi
from bench.accuracy import suite_tasks
from fastmi.significance import holm

SMOKE_TASKS = ("gauss d=1 rho=0.5", "gauss d=5 rho=0.5", "independent gaussians (MI = 0) 5x5")  # the CI smoke run


def intervals(tasks, n, count, estimator="auto", level=0.95, first_seed=1000):
    """{task: [(true MI, mi_interval) of each of `count` independent draws at N = n]}; each draw's suite is
    generated once for every task. A draw's own truth: some tasks' truth depends on the draw (b = aW + noise
    with a random W)."""
    results = {task: [] for task in tasks}
    for seed in range(first_seed, first_seed + count):
        for name, _, a, b, truth in suite_tasks(n, seed):
            if name in results:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    interval = fastmi.mi_interval(a.double(), b.double(), estimator=estimator, level=level)
                results[name].append((truth, interval))
    missing = [task for task, found in results.items() if not found]
    if missing:
        raise ValueError(f"no suite task named {missing}")
    return results


def coverage(task, n, draws, estimator):
    """A dict: the task's coverage of each draw's truth by its interval, the mean truth, median width, mean
    error, how many misses were flagged unstable."""
    inside = [r.lower <= truth <= r.upper for truth, r in draws]
    hits, misses = sum(inside), len(inside) - sum(inside)
    results = [r for _, r in draws]
    return dict(task=task, n=n, draws=len(draws), estimator=estimator,
                truth=statistics.fmean(truth for truth, _ in draws), coverage=hits / len(draws),
                median_width=statistics.median(r.upper - r.lower for r in results),
                median_std_error=statistics.median(r.std_error for r in results),
                mean_error=statistics.fmean(r.estimate - truth for truth, r in draws), misses=misses,
                flagged_misses=sum(not ok and not r.stable for ok, r in zip(inside, results)),
                p_below_90=binomial_below(hits, len(results), 0.9))


def binomial_below(hits, count, p):
    """One-sided p-value of `hits` or fewer in `count` draws at success rate p."""
    from scipy.stats import binom
    return float(binom.cdf(hits, count, p))


def run(tasks=None, ns=(500, 2000), count=200, estimator="auto"):
    """The coverage table over `tasks` (default: every suite task) at each N; returns its rows."""
    tasks = tasks or [name for name, *_ in suite_tasks(64, 0)]
    rows = []
    for n in ns:
        found = intervals(tasks, n, count, estimator)
        rows += [coverage(task, n, found[task], estimator) for task in tasks]
    for row, adjusted in zip(rows, holm([row["p_below_90"] for row in rows])):
        row["p_below_90_holm"] = adjusted
        row["consistent"] = abs(row["mean_error"]) <= row["median_std_error"]
    print(f"\nmi_interval(estimator={estimator!r}), 95% intervals, {count} draws per task and N")
    print("| task | N | true MI | coverage | median width | mean error | misses flagged unstable | "
          "below 90% (Holm p) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        note = "" if r["consistent"] else " (biased at this N)"
        print(f"| {r['task']}{note} | {r['n']} | {r['truth']:.3f} | {r['coverage']:.2f} | {r['median_width']:.3f} | "
              f"{r['mean_error']:+.3f} | {r['flagged_misses']}/{r['misses']} | {r['p_below_90_holm']:.2g} |")
    print(summary(rows))
    return rows


def summary(rows):
    """One line: the consistent tasks' coverage and any significantly below 90%; the share of misses flagged."""
    consistent = [r for r in rows if r["consistent"]]
    below = [f"{r['task']} (N={r['n']})" for r in consistent if r["p_below_90_holm"] < 0.05]
    misses = sum(r["misses"] for r in rows)
    flagged = sum(r["flagged_misses"] for r in rows)
    worst = min((r["coverage"] for r in consistent), default=float("nan"))
    return (f"{len(consistent)} of {len(rows)} task rows consistent (|mean error| <= median standard error); their "
            f"lowest coverage {worst:.2f}; significantly below 90% (Holm): {below or 'none'}; misses flagged "
            f"stable=False: {flagged}/{misses} ({flagged / max(misses, 1):.0%})")
