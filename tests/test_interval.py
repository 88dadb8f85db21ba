"""fastmi.mi_interval: subsampling intervals (Holmes & Nemenman 2019) — the pooled variance formula, the t
quantile, the stability flag, inputs and errors. Coverage is a benchmark (python -m bench intervals)."""
import math

import numpy as np
import pytest
import torch

import fastmi
from fastmi import interval


def gaussian_pair(n, rho=0.6, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    b = rho * a + math.sqrt(1 - rho ** 2) * torch.randn(n, d, generator=g, dtype=torch.float64)
    return a, b, -d / 2 * math.log(1 - rho ** 2)


def test_the_interval_is_the_pooled_subsample_variance_with_a_t_quantile():
    a, b, _ = gaussian_pair(400)
    r = fastmi.mi_interval(a, b, estimator="gcmi", parts=4, seed=3)
    # recompute by hand: the same random splits (one permutation per k from the seeded generator)
    g, pooled = torch.Generator().manual_seed(3), 0.0
    for k in range(2, 5):
        order, size = torch.randperm(400, generator=g), 400 // k
        parts = [order[i * size:(i + 1) * size] for i in range(k)]
        values = [float(fastmi.layer_mi(a[p], b[p], estimator="gcmi")) for p in parts]
        values = torch.tensor(values, dtype=torch.float64)
        pooled += (k - 1) / k * float(values.var())
    variance = pooled / 6
    assert r.dof == 6 and r.std_error == pytest.approx(math.sqrt(variance), rel=1e-12)
    half = 2.4469118511449692 * math.sqrt(variance)  # t_{6, 0.975}
    assert r.upper - r.estimate == pytest.approx(half, rel=1e-9)
    assert r.estimate - r.lower == pytest.approx(half, rel=1e-9)
    assert r.estimate == pytest.approx(float(fastmi.layer_mi(a, b, estimator="gcmi")), rel=1e-12)
    assert r.debiased == r.estimate and r.n == 400 and r.level == 0.95 and r.estimator == "gcmi"


def test_a_consistent_estimator_is_stable_and_covers_a_gaussian_truth():
    a, b, truth = gaussian_pair(2000)
    r = fastmi.mi_interval(a, b, estimator="gcmi")
    assert r.stable and r.lower < truth < r.upper and r.upper - r.lower < 0.15


def test_a_drifting_estimate_is_flagged_unstable():
    """The binned estimate of a 2-d Gaussian pair at 30 bins rises as the rows fall (plug-in bias ~ cells / N):
    the parts' means drift above the estimate on all rows."""
    a, b, _ = gaussian_pair(1000)
    with pytest.warns(RuntimeWarning, match="has not converged"):
        r = fastmi.mi_interval(a, b, estimator="binned", bins=30)
    assert not r.stable


def test_an_unstable_ksg_estimate_with_large_parts_is_extrapolated_up_to_infinite_n():
    """KSG at 5 + 5 dims, N = 2000 (parts of 500 rows): its downward bias drifts with n; debiased is the
    intercept of the fit of I + c n^(-1/2) to the means at n = N, N / 2, N / 3, N / 4 (numpy's polyfit on
    the same splits), above the estimate and closer to the truth."""
    a, b, truth = gaussian_pair(2000, rho=0.5, d=5)
    with pytest.warns(RuntimeWarning, match="has not converged"):
        r = fastmi.mi_interval(a, b, estimator="ksg", seed=5)
    g, sizes, means = torch.Generator().manual_seed(5), [2000], [r.estimate]
    for k in range(2, 5):
        order, size = torch.randperm(2000, generator=g), 2000 // k
        values = [float(fastmi.layer_mi(a[order[i * size:(i + 1) * size]], b[order[i * size:(i + 1) * size]],
                                        estimator="ksg")) for i in range(k)]
        sizes.append(size)
        means.append(np.mean(values))
    slope, intercept = np.polyfit(np.array(sizes, dtype=float) ** -0.5, means, 1)
    assert slope < 0 and r.debiased == pytest.approx(intercept, rel=1e-10)
    assert r.estimate + 0.03 < r.debiased < truth  # a third of the bias removed here (0.55 -> 0.60 of 0.72)


def test_extrapolation_only_up_only_for_ksg_and_auto_and_only_from_large_parts():
    """The binned plug-in's bias is upward (it falls with n): no extrapolation for it, nor for a drift
    downward; parts of 250 rows, or a stable estimate, are not extrapolated either."""
    a, b, _ = gaussian_pair(2000, d=1)
    with pytest.warns(RuntimeWarning, match="has not converged"):
        binned = fastmi.mi_interval(a, b, estimator="binned", bins=20)
    assert not binned.stable and binned.debiased == binned.estimate
    spreads = [(k, mean, 0.0) for k, mean in ((2, 1.1), (3, 1.2), (4, 1.3))]  # means rising as n falls
    assert interval.extrapolated(1.0, spreads, 2000) < 1.0  # the fit goes down; mi_interval keeps the estimate
    a, b, _ = gaussian_pair(1000, rho=0.5, d=5)
    with pytest.warns(RuntimeWarning, match="has not converged"):
        small = fastmi.mi_interval(a, b, estimator="ksg")
    assert not small.stable and small.debiased == small.estimate
    stable = fastmi.mi_interval(*gaussian_pair(2000)[:2], estimator="gcmi")
    assert stable.stable and stable.debiased == stable.estimate


def test_debiased_keeps_to_the_entropy_of_the_class_side(monkeypatch):
    """Two well-separated classes in 5 dims, N = 2000: auto (its discrete side) and ksg (integer class ids)
    take Ross's estimator, at H(Y) = ln 2 but drifting with n; the extrapolation lands above H(Y) (0.6938),
    which no MI can reach: debiased stops at the classes' entropy (plug-in + (K - 1) / 2N, Miller-Madow), in
    the units asked for."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (2000,), generator=g)
    a = (torch.randn(2, 5, generator=g) * 1.5)[labels] + 0.4 * torch.randn(2000, 5, generator=g)
    p = torch.bincount(labels).double() / 2000
    entropy = float(-(p * p.log()).sum()) + 1 / 4000
    for estimator, units, scale in (("auto", "nats", 1.0), ("auto", "bits", 1 / math.log(2)), ("ksg", "nats", 1.0)):
        with pytest.warns(RuntimeWarning, match="has not converged"):
            r = fastmi.mi_interval(a, labels, estimator=estimator, units=units, backend="torch")
        assert r.estimate <= r.debiased == pytest.approx(entropy * scale, rel=1e-12)
    monkeypatch.setattr(interval, "ceiling", lambda *args: math.inf)
    with pytest.warns(RuntimeWarning, match="has not converged"):
        unbounded = fastmi.mi_interval(a, labels, estimator="auto", backend="torch").debiased
    assert unbounded > entropy + 1e-4  # what the bound stops


def test_auto_debiased_is_the_estimate_where_both_sides_are_discrete(monkeypatch):
    """Two sides of 40 symbols at N = 2000: auto takes the plug-in, whose bias is upward (the estimates fall
    with n); even an extrapolation that went up (forced here) leaves debiased at the estimate."""
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 40, (2000, 1), generator=g)
    b = (a + torch.randint(0, 3, (2000, 1), generator=g)) % 40
    monkeypatch.setattr(interval, "extrapolated", lambda estimate, spreads, n: estimate + 1.0)
    with pytest.warns(RuntimeWarning, match="has not converged"):
        r = fastmi.mi_interval(a, b, estimator="auto", backend="torch")
    assert r.debiased == r.estimate > 0


def test_level_units_seed_and_numpy_inputs():
    a, b, _ = gaussian_pair(600)
    narrow = fastmi.mi_interval(a.numpy(), b.numpy(), estimator="ksg", level=0.5)
    wide = fastmi.mi_interval(a, b, estimator="ksg", level=0.99)
    assert wide.upper - wide.lower > narrow.upper - narrow.lower > 0 and wide.estimate == narrow.estimate
    bits = fastmi.mi_interval(a, b, estimator="ksg", units="bits")
    assert bits.estimate == pytest.approx(wide.estimate / math.log(2)) and bits.units == "bits"
    assert fastmi.mi_interval(a, b, estimator="ksg", seed=1).std_error != wide.std_error
    assert fastmi.mi_interval(a, b, estimator="ksg", seed=0) == fastmi.mi_interval(a, b, estimator="ksg", seed=0)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(level=1.0), ValueError, "level"), (dict(level=True), ValueError, "level"),
    (dict(parts=1), ValueError, "parts"), (dict(seed=-1), ValueError, "seed"),
    (dict(estimator="nope"), ValueError, "estimator"), (dict(sigma=0.5, estimator="ksg"), TypeError, "sigma"),
    (dict(parts=40), ValueError, "N >= 640"),
])
def test_bad_options_are_named(kwargs, error, match):
    a, b, _ = gaussian_pair(300)
    with pytest.raises(error, match=match):
        fastmi.mi_interval(a, b, **kwargs)


def test_nan_inputs_are_refused():
    a, b, _ = gaussian_pair(300)
    a[5, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fastmi.mi_interval(a, b)


def test_t_quantile_matches_tables():
    assert interval.t_quantile(0.975, 6) == pytest.approx(2.446912, rel=1e-6)
    assert interval.t_quantile(0.975, 10 ** 6) == pytest.approx(1.959966, rel=1e-5)
    assert np.isfinite(interval.t_quantile(0.995, 1))
