"""bench/suite.py: every task's shapes and seeding, and each truth against an independent check (empirical
covariances; Monte Carlo over exact densities written here with scipy.stats)."""
import math
import re

import numpy as np
import pytest
import torch
from scipy import stats

from bench import suite
from fastmi.reference import gaussian_mi

N = 300


def _tasks(seed):
    return list(suite.extended_tasks(N, seed=seed))


def _mean_and_se(values, n_rows):
    return float(np.mean(values)), float(np.std(values) / math.sqrt(n_rows))


def _bivariate_log_ratio(x, y, rho):
    """ln phi_2(x, y; rho) - ln phi(x) - ln phi(y) with scipy's densities."""
    joint = stats.multivariate_normal([0, 0], [[1, rho], [rho, 1]]).logpdf(np.stack([x, y], 1))
    return joint - stats.norm.logpdf(x) - stats.norm.logpdf(y)


def _log_zero_given(y, rho):
    """ln P(X <= 0 | Y = y): X | Y = y is N(rho y, 1 - rho^2)."""
    return stats.norm.logcdf(0, loc=rho * y, scale=math.sqrt(1 - rho ** 2))


def test_tasks_are_finite_float64_with_their_stated_shapes():
    tasks = _tasks(0)
    assert {family for _, family, *_ in tasks} == {"beyond-normal", "non-gaussian copula", "labels & edge cases"}
    assert len({name for name, *_ in tasks}) == len(tasks)
    for name, _, a, b, truth in tasks:
        da, db = map(int, re.search(r"(\d+)x(\d+)$", name).groups())
        assert a.dtype == b.dtype == torch.float64, name
        assert a.shape == (N, da) and b.shape == (N, db), name
        assert torch.isfinite(a).all() and torch.isfinite(b).all(), name
        assert 0.1 < truth < 3 or (truth == 0 and "MI = 0" in name), name


def test_tasks_are_deterministic_per_seed_and_differ_across_seeds():
    for (name, _, a, b, truth), (_, _, a2, b2, truth2), (_, _, a3, b3, truth3) in zip(_tasks(0), _tasks(0), _tasks(1)):
        assert torch.equal(a, a2) and torch.equal(b, b2) and truth == truth2, name
        assert not torch.equal(a, a3) and not torch.equal(b, b3) and truth == truth3, name


def test_gaussian_truths_match_the_empirical_covariance():
    n = 40_000
    checked = 0
    for name, _, a, b, truth in suite.beyond_normal_tasks(n, seed=3):
        if "gaussian " not in name or "," in name:  # transformed copies share the truth
            continue
        d = a.shape[1]
        empirical = gaussian_mi(torch.cov(torch.cat([a, b], 1).T), d)
        bias = d * d / (2 * n)  # the plug-in's chi-square bias, (Da Db / 2) / N
        assert empirical - bias == pytest.approx(truth, abs=0.03), name
        checked += 1
    assert checked == 4


def test_dense_and_sparse_truths_match_their_closed_forms():
    d, c, rho = 25, 0.5, 0.8
    equicorrelated = -0.5 * (math.log(1 + (2 * d - 1) * c) - 2 * math.log(1 + (d - 1) * c) + math.log(1 - c))
    assert gaussian_mi(suite.equicorrelated_cov(d, c), d) == pytest.approx(equicorrelated, rel=1e-10)
    assert gaussian_mi(suite.paired_cov(d, 2, rho), d) == pytest.approx(-math.log(1 - rho ** 2), rel=1e-10)


def test_student_t_truth_by_monte_carlo_over_the_exact_density():
    n, d, nu = 40_000, 25, 5
    cov = suite.paired_cov(d, 2, 0.8)
    a, b, truth = suite.student_t(n, cov, d, nu, torch.Generator().manual_seed(5))
    t = stats.multivariate_t
    ratio = (t(np.zeros(2 * d), cov.numpy(), df=nu).logpdf(torch.cat([a, b], 1).numpy())
             - t(np.zeros(d), cov[:d, :d].numpy(), df=nu).logpdf(a.numpy())
             - t(np.zeros(d), cov[d:, d:].numpy(), df=nu).logpdf(b.numpy()))
    mean, se = _mean_and_se(ratio, n)
    assert abs(mean - truth) < 4 * se + 0.01


@pytest.mark.parametrize("k, rho", [(1, 0.5), (1, 0.9), (2, 0.5)])
def test_sign_truth_by_monte_carlo_over_the_exact_density(k, rho):
    n = 100_000
    a, b, truth = (v.numpy() if torch.is_tensor(v) else v
                   for v in suite.sign_blocks(n, k, rho, torch.Generator().manual_seed(7)))
    x, y = a[:, :k], b[:, :k]
    s = np.sign(a[:, k:] * x)
    assert set(np.unique(s)) == {-1.0, 1.0} and np.array_equal(s, np.sign(b[:, k:] * y))
    # density of (x, s) with respect to Lebesgue x counting: P(s) phi(x); of (x, y, s): P(s) phi_2(x, y)
    ratio = sum(_bivariate_log_ratio(x[:, i], y[:, i], rho) + math.log(0.5 / (0.5 * 0.5)) for i in range(k))
    mean, se = _mean_and_se(ratio, n)
    assert abs(mean - truth) < 4 * se + 0.005
    if k == 1:  # a Gaussian copula sees corr(x, y) = corr(s x, s y) = rho only: under at 0.5, over at 0.9
        scores = stats.norm.ppf(stats.rankdata(np.concatenate([a, b], 1), axis=0) / (n + 1))
        copula = gaussian_mi(np.corrcoef(scores.T), 2)
        assert (copula < truth - 0.1) if rho == 0.5 else (copula > truth + 0.05)


@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_relu_truth_by_monte_carlo_over_the_exact_conditionals(rho):
    n = 200_000
    a, b, truth = suite.relu_gaussians(n, 1, rho, torch.Generator().manual_seed(11))
    a, b = a[:, 0].numpy(), b[:, 0].numpy()
    zero = a == 0
    ratio = np.where(zero, _log_zero_given(b, rho) - math.log(0.5), _bivariate_log_ratio(a, b, rho))
    assert 0 < truth < -0.5 * math.log(1 - rho ** 2)  # data processing
    assert abs(ratio.mean() - truth) < 0.01
    assert suite.relu_gaussians(10, 5, rho, torch.Generator())[2] == pytest.approx(5 * truth, rel=1e-12)


def test_relu_both_sides_truth_by_monte_carlo_over_the_exact_masses_and_densities():
    n, rho = 200_000, 0.9
    a, b, truth = suite.relu_gaussians(n, 2, rho, torch.Generator().manual_seed(13), both=True)
    a, b = a.numpy().ravel(), b.numpy().ravel()  # 2 independent pairs: 2n rows of one pair
    p00 = stats.multivariate_normal([0, 0], [[1, rho], [rho, 1]]).cdf([0, 0])  # Genz's numerical CDF
    both_zero = (a == 0) & (b == 0)
    with np.errstate(divide="ignore"):
        ratio = np.select(
            [both_zero, a == 0, b == 0],
            [np.full_like(a, math.log(p00 / 0.25)), _log_zero_given(b, rho) - math.log(0.5),
             _log_zero_given(a, rho) - math.log(0.5)],
            _bivariate_log_ratio(a, b, rho))
    assert abs(both_zero.mean() - p00) < 0.005
    assert abs(2 * ratio.mean() - truth) < 0.02


def test_mixture_truth_is_stable_across_seeds():
    for params in suite.MIXTURES.values():
        mean, se = suite.mixture_mi_monte_carlo(params)
        mean2, se2 = suite.mixture_mi_monte_carlo(params, seed=1)
        assert se < 0.005 and se2 < 0.005
        assert abs(mean - mean2) < 3 * math.hypot(se, se2)


def test_mixture_logpdf_matches_scipy():
    params = suite.MIXTURES["means +-1, rho 0.8 / -0.5 (scale 0.5)"]
    means, covs = suite.mixture_components(params)
    x = suite.sample_mixture(500, params, torch.Generator().manual_seed(17))
    for cols in (slice(0, 4), slice(0, 2), slice(2, 4)):
        expected = np.log(sum(0.5 * stats.multivariate_normal(m[cols].numpy(), c[cols, cols].numpy()).pdf(x[:, cols])
                              for m, c in zip(means, covs)))
        got = suite.mixture_logpdf(x[:, cols], means[:, cols], covs[:, cols, cols]).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_embedded_gaussians_carry_their_latents_and_nothing_else():
    n = 40_000
    for dim, rho in ((25, 0.8), (50, 0.9)):
        a, b, truth = suite.embedded_gaussians(n, dim, rho, torch.Generator().manual_seed(19))
        empirical = gaussian_mi(torch.cov(torch.cat([a[:, :2], b[:, :2]], 1).T), 2)
        assert empirical == pytest.approx(truth, abs=0.03)
        # no noise: a is a function of its 2 latent columns (the maps are drawn from seed dim, a's first)
        again = suite.smooth_embedding(a[:, :2], dim, torch.Generator().manual_seed(dim))
        assert torch.allclose(again, a, rtol=0, atol=1e-12)


def test_cluster_truth_is_below_the_label_entropy_and_stable_across_seeds():
    mean, se = suite.cluster_mi_monte_carlo()
    mean2, se2 = suite.cluster_mi_monte_carlo(seed=1)
    assert se < 0.005 and abs(mean - mean2) < 3 * math.hypot(se, se2)
    assert 0.5 < mean < math.log(suite.CLASSES)
    a, y, truth = suite.labelled_clusters(5000, torch.Generator().manual_seed(3))
    assert torch.equal(y.sum(1), torch.ones(5000, dtype=y.dtype)) and truth == mean
    # the class means are what the rows scatter around (unit noise)
    means = torch.stack([a[y[:, c] == 1].mean(0) for c in range(suite.CLASSES)])
    assert torch.allclose(means, suite.cluster_means(), atol=0.25)


def test_even_truth_by_monte_carlo_over_an_independent_marginal():
    """I(a; a^2 + s z): the mean of ln p(b | a) - ln p(b), p(b) a Monte Carlo average over 10,000 fresh a
    (not the quadrature), against the quadrature's value."""
    noise, n = suite.EVEN_NOISE, 4000
    g = np.random.default_rng(23)
    a, z, fresh = g.standard_normal(n), g.standard_normal(n), g.standard_normal(10_000)
    b = a * a + noise * z
    conditional = stats.norm.logpdf(b, loc=a * a, scale=noise)
    marginal = np.log(np.mean(stats.norm.pdf(b[:, None], loc=fresh[None, :] ** 2, scale=noise), axis=1))
    mean, se = _mean_and_se(conditional - marginal, n)
    assert abs(mean - suite.even_pair_mi(noise)) < 4 * se + 0.01
    grid = np.linspace(-5, 40, 2001)
    assert np.sum(suite.even_density(grid, noise)) * (grid[1] - grid[0]) == pytest.approx(1, abs=1e-4)


def test_quantised_task_has_ties_and_the_continuous_truth():
    name, _, a, b, truth = [t for t in suite.edge_case_tasks(2000) if "rounded" in t[0]][0]
    assert torch.equal(a, torch.round(a, decimals=2)) and len(torch.unique(a)) < 1000
    assert truth == pytest.approx(-0.5 * math.log(1 - 0.8 ** 2), rel=1e-12)


# ------------------------------------------------------------------------------ bench/heldout.py's truths

@pytest.mark.parametrize("e", [0.1, 0.3, 0.5, 0.75, 2.0])
def test_additive_uniform_truth_by_quadrature_of_the_trapezoid_density(e):
    from scipy import integrate

    from bench.heldout import additive_uniform_mi

    def density(y):  # of X + N: the length of [y - e, y + e] inside [0, 1], over 2e
        return max(0.0, min(1.0, y + e) - max(0.0, y - e)) / (2 * e)

    h_y, _ = integrate.quad(lambda y: -density(y) * math.log(density(y)) if density(y) > 0 else 0.0,
                            -e, 1 + e, points=sorted({e, 1 - e, -e, 1 + e}), limit=200)
    assert additive_uniform_mi(e) == pytest.approx(h_y - math.log(2 * e), abs=1e-9)


def test_heldout_maps_are_one_to_one_and_tasks_have_their_shapes():
    from bench.heldout import heldout_tasks, swiss_roll, wiggly
    u = torch.linspace(0, 1, 10_001, dtype=torch.float64)[:, None]
    radius = swiss_roll(u).norm(dim=1)  # t / 10 with t increasing in u: the point determines u
    assert bool((radius.diff() > 0).all())
    x = torch.linspace(-20, 20, 100_001, dtype=torch.float64)
    assert bool((wiggly(x).diff() > 0).all())
    tasks = list(heldout_tasks(N, seed=0))
    assert len(tasks) == 14 and len({name for name, *_ in tasks}) == 14
    for name, a, b, truth in tasks:
        da, db = map(int, re.search(r"(\d+)x(\d+)", name).groups())
        assert a.shape == (N, da) and b.shape == (N, db) and a.dtype == b.dtype == torch.float64
        assert truth > 0 and bool(torch.isfinite(a).all() and torch.isfinite(b).all())
