"""fastmi.mi_test: the permutation null, its p-value, reuse across permutations, bad input."""
import math
import warnings

import numpy as np
import pytest
import torch

import fastmi
from fastmi import bandwidth
from fastmi.estimators import kde, ksg
from fastmi.significance import row_permutations
from helpers import shared_column_pair


def correlated(n, d, rho, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    return a, rho * a + math.sqrt(1 - rho ** 2) * torch.randn(n, d, generator=g, dtype=torch.float64)


def test_null_is_the_estimate_on_permuted_rows_and_p_value_counts_it():
    a, b = shared_column_pair(200, 2, 2, seed=4)
    result = fastmi.mi_test(a, b, estimator="ksg", permutations=30, seed=5, backend="torch")
    null = np.array([float(fastmi.layer_mi(a, b[p], estimator="ksg", backend="torch"))
                     for p in row_permutations(200, 30, 5)])
    assert result.estimate == float(fastmi.layer_mi(a, b, estimator="ksg", backend="torch"))
    assert result.null_mean == pytest.approx(null.mean(), abs=1e-12)
    assert result.null_std == pytest.approx(null.std(), abs=1e-12)
    assert result.p_value == (1 + int((null >= result.estimate).sum())) / 31
    assert result.corrected == pytest.approx(result.estimate - null.mean(), abs=1e-12)
    assert (result.permutations, result.estimator, result.units) == (30, "ksg", "nats")


def test_dependent_data_is_significant_and_seeds_reproduce():
    a, b = correlated(300, 2, 0.5)
    result = fastmi.mi_test(a, b, permutations=200, backend="torch")
    assert result.p_value <= 0.01 and result.p_value == 1 / 201 and result.corrected > 0.1
    assert fastmi.mi_test(a, b, permutations=200, backend="torch") == result
    assert fastmi.mi_test(a, b, permutations=200, seed=1, backend="torch").null_mean != result.null_mean


def test_independent_data_p_values_are_not_small():
    g = torch.Generator().manual_seed(2)
    p_values = [fastmi.mi_test(torch.randn(150, 1, generator=g), torch.randn(150, 1, generator=g), permutations=19,
                               seed=s, backend="torch").p_value for s in range(20)]
    assert 0.3 < float(np.mean(p_values)) < 0.7  # uniform on {1/20, ..., 1} under independence


@pytest.mark.parametrize("da,db,matrices", [(1, 1, True), (2, 3, True), (9, 9, True), (9, 9, False)])
def test_ksg_shared_work_gives_exactly_the_separate_estimates(da, db, matrices, monkeypatch):
    """Sorted columns, the tree (listed distances), the tiles' null from N x N distance matrices, and
    (over NULL_BYTES) the tiles once per permutation: each the separate estimates, bit for bit."""
    if not matrices:
        monkeypatch.setattr(ksg, "NULL_BYTES", 0)
    a, b = shared_column_pair(700, da, db, seed=da)
    order = row_permutations(700, 4, 0)
    estimate, null = ksg.KSG(k=3).with_null(a, b, order, "torch")
    separate = [ksg.KSG(k=3)(a, b[p], "torch", None) for p in order]
    assert torch.equal(null, torch.stack(separate)) and torch.equal(estimate, ksg.KSG(k=3)(a, b, "torch", None))


@pytest.mark.parametrize("da", [2, 40])  # the tree's null and the tiles' (distance matrices)
def test_ksg_null_of_relu_layers_warns_once_and_agrees_with_the_tiles(da):
    """The first-day case: ReLU layers (exact duplicates) warned once per permutation."""
    g = torch.Generator().manual_seed(4)
    a = torch.relu(torch.randn(300, da, generator=g)).double()
    a[:40] = 0.0  # rows of exact duplicates: eps = 0 for k = 3
    b = torch.relu(a[:, :2] + torch.randn(300, 2, generator=g, dtype=torch.float64))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fastmi.mi_test(a, b, estimator="ksg", permutations=25, backend="torch")
    assert len([w for w in caught if "exact duplicates" in str(w.message)]) == 1
    assert len([w for w in caught if "columns repeat values" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = [float(fastmi.layer_mi(a, b[p], estimator="ksg", backend="torch"))
                 for p in row_permutations(300, 25, 0)]
        assert result.estimate == float(fastmi.layer_mi(a, b, estimator="ksg", backend="torch"))
    assert result.null_mean == pytest.approx(np.mean(alone), rel=1e-12)


def test_listed_distances_fall_back_to_the_tree_beyond_the_list(monkeypatch):
    a, b = correlated(500, 2, 0.9)
    x = ksg.standardized(a)
    side = ksg.Marginal(x)
    side.list_nearest(torch.full((500,), 20))  # lists of 32: most balls of the null reach past them
    eps = ksg.tree_counts(x, ksg.standardized(b)[row_permutations(500, 1, 1)[0]], 3)[0]
    assert bool((eps > side.nearest[:, -1]).any()) and bool((eps <= side.nearest[:, -1]).any())
    assert torch.equal(side.counts(eps), ksg.Marginal(x).counts(eps))
    monkeypatch.setattr(ksg.Marginal, "LIST_BYTES", 0)  # too large to list: the tree answers every count
    side = ksg.Marginal(x)
    side.list_nearest(torch.full((500,), 20))
    assert side.nearest is None


@pytest.mark.parametrize("sigma", [0.8, "silverman", (0.5, "scott")])
@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_kde_surrogates_from_the_kernel_matrices_are_the_separate_estimates(sigma, dtype, atol):
    a, b = (x.to(dtype) for x in shared_column_pair(300, 3, 2, seed=7))
    order = row_permutations(300, 6, 2)
    estimate, null = kde.KDE(sigma=sigma).with_null(a, b, order, "torch")
    separate = torch.stack([fastmi.layer_mi(a, b[p], sigma=sigma, backend="torch").double() for p in order])
    assert float(estimate) == pytest.approx(float(fastmi.layer_mi(a, b, sigma=sigma, backend="torch")), abs=atol)
    assert float((null.double() - separate).abs().max()) <= atol and float(null.std()) > 0


def test_kde_surrogates_keep_the_median_bandwidth_of_the_data():
    a, b = shared_column_pair(600, 2, 2, seed=8)  # the median rule sees an evenly strided 256-row subsample
    order = row_permutations(600, 3, 0)
    seen = []

    def recording(n, d, z):
        seen.append(float(bandwidth.median(n, d, z)))
        return seen[-1]
    _, null = kde.KDE().with_null(a, b, order, "torch")
    _, recorded = kde.KDE(sigma=recording).with_null(a, b, order, "torch")
    fixed = (lambda n, d, z: seen[0], lambda n, d, z: seen[1])  # the data's factors, not each surrogate's
    separate = torch.stack([fastmi.layer_mi(a, b[p], sigma=fixed, backend="torch") for p in order])
    assert len(seen) == 2 and torch.equal(null, recorded) and float((null - separate).abs().max()) < 1e-10


def test_kde_surrogates_over_budget_keep_the_data_bandwidth_too(monkeypatch):
    a, b = shared_column_pair(600, 2, 2, seed=8)  # 600 > 256 rows: the median rule subsamples
    order = row_permutations(600, 3, 0)
    _, shared = kde.KDE().with_null(a, b, order, "torch")
    monkeypatch.setattr(kde, "NULL_BYTES", 0)
    _, separate = kde.KDE().with_null(a, b, order, "torch")
    assert float((shared - separate).abs().max()) < 1e-10


@pytest.mark.parametrize("case", ["loo", "over budget"])
def test_kde_falls_back_to_separate_estimates(case, monkeypatch):
    a, b = shared_column_pair(200, 2, 2, seed=9)
    options = dict(loo=True) if case == "loo" else {}
    if case == "over budget":
        monkeypatch.setattr(kde, "NULL_BYTES", 200 * 200 * 8)
    order = row_permutations(200, 3, 1)
    _, null = kde.KDE(**options).with_null(a, b, order, "torch")
    separate = torch.stack([fastmi.layer_mi(a, b[p], **options, backend="torch") for p in order])
    assert torch.equal(null, separate)


@pytest.mark.parametrize("estimator,options", [("kde", {}), ("binned", dict(bins=8)), ("unit", dict(bins=8))])
def test_every_estimator_and_units(estimator, options):
    a, b = correlated(120, 2, 0.8)
    nats = fastmi.mi_test(a, b, estimator=estimator, permutations=9, backend="torch", **options)
    bits = fastmi.mi_test(a, b, estimator=estimator, permutations=9, backend="torch", units="bits", **options)
    assert nats.estimate == pytest.approx(float(fastmi.layer_mi(a, b, estimator=estimator, backend="torch", **options)))
    assert bits.estimate == pytest.approx(nats.estimate / math.log(2)) and bits.p_value == nats.p_value
    assert nats.p_value == 0.1 and nats.estimator == estimator


def test_numpy_inputs():
    a, b = correlated(100, 1, 0.9)
    result = fastmi.mi_test(a.numpy(), b.numpy().tolist(), permutations=5, backend="torch")
    assert isinstance(result.estimate, float) and result.p_value == 1 / 6


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(permutations=0), ValueError, "permutations must be an int >= 1, got 0"),
    (dict(permutations=2.0), ValueError, "permutations must be an int"),
    (dict(permutations=True), ValueError, "permutations must be an int"),
    (dict(seed=-1), ValueError, "seed must be an int >= 0"),
    (dict(estimator="mine"), ValueError, "estimator must be one of"),
    (dict(sigma=1.0), TypeError, r"estimator='auto' takes the options \['k'\]"),
    (dict(k=0), ValueError, "k must be an int >= 1"),
    (dict(units="dits"), ValueError, "units must be one of"),
])
def test_bad_arguments(kwargs, error, match):
    a, b = correlated(20, 1, 0.5)
    with pytest.raises(error, match=match):
        fastmi.mi_test(a, b, **kwargs)


def test_bad_inputs():
    a, b = correlated(20, 1, 0.5)
    with pytest.raises(ValueError, match="mi_test needs N >= 3 rows"):
        fastmi.mi_test(a[:2], b[:2])
    with pytest.raises(ValueError, match="same number of samples"):
        fastmi.mi_test(a, b[:10])
    a[3, 0] = math.nan
    with pytest.raises(ValueError, match="a contains NaN or Inf"):
        fastmi.mi_test(a, b)
    with pytest.raises(ValueError, match="KSG needs k < N"):
        fastmi.mi_test(a[:3], b[:3], estimator="ksg", k=3)


def test_the_default_estimator_is_the_recommended_one():
    a, b = correlated(200, 3, 0.4)
    assert fastmi.mi_test(a, b, permutations=10, backend="torch") == fastmi.mi_test(
        a, b, estimator="auto", permutations=10, backend="torch")


@pytest.mark.parametrize("estimator, options, shape", [
    ("binned", dict(bins=30), (200, 10)),  # every row its own joint bin pattern: ln N whatever the pairing
    ("gcmi", dict(), (12, 12)),  # each side spans the N - 1 centred dims: correlations 1 whatever the pairing
])
def test_a_statistic_blind_to_the_pairing_gets_no_p_value(estimator, options, shape):
    """The first-day cases: rounding noise read as p = 0.03, and a saturated binned estimate read as p = 1
    on dependent layers. Both are a null of one value up to rounding: NaN and a warning instead."""
    a, b = correlated(shape[0], shape[1], 0.9)
    with pytest.warns(RuntimeWarning) as caught:
        result = fastmi.mi_test(a, b, estimator=estimator, permutations=50, backend="torch", **options)
    assert any("agree to rounding" in str(w.message) for w in caught)
    assert math.isnan(result.p_value) and result.null_std <= 1e-9 * max(abs(result.estimate), 1.0)
