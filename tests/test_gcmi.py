"""Gaussian-copula MI: against the scipy float64 reference, invariances, ties, rank and singular joints."""
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmi
from fastmi import reference
from fastmi.estimators import gcmi
from fastmi.significance import row_permutations


def gaussians(n, d, rho, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    b = rho * a + math.sqrt(1 - rho ** 2) * torch.randn(n, d, generator=g, dtype=torch.float64)
    return a.to(dtype), b.to(dtype)


def estimate(a, b, **options):
    return float(fastmi.layer_mi(a, b, estimator="gcmi", **options))


@pytest.mark.parametrize("n,da,db", [(3, 1, 1), (40, 1, 1), (300, 3, 2), (500, 20, 15), (200, 1, 60)])
@pytest.mark.parametrize("bias_correction", [True, False])
def test_equals_the_scipy_reference(n, da, db, bias_correction):
    a, b = gaussians(n, max(da, db), 0.6, seed=n)
    a, b = a[:, :da], b[:, :db].exp()
    value = fastmi.layer_mi(a, b, estimator="gcmi", bias_correction=bias_correction)
    assert value.dtype == torch.float64 and not value.requires_grad
    assert float(value) == pytest.approx(reference.gcmi_dense(a, b, bias_correction), abs=1e-10)


def test_float32_inputs_give_the_reference_of_their_values():
    a, b = gaussians(400, 4, 0.5, dtype=torch.float32)
    value = fastmi.layer_mi(a, b, estimator="gcmi")
    assert value.dtype == torch.float32
    assert float(value) == pytest.approx(reference.gcmi_dense(a.double(), b.double()), abs=2e-6)


@pytest.mark.parametrize("d,rho", [(1, 0.5), (5, 0.9), (25, 0.3)])
def test_gaussian_copulas_are_measured_without_bias(d, rho):
    truth = -d / 2 * math.log(1 - rho ** 2)
    values = [estimate(a, torch.tanh(b)) for a, b in (gaussians(1000, d, rho, seed=s) for s in range(8))]
    assert abs(np.mean(values) - truth) < 0.02 + 0.02 * truth
    raw = [estimate(a, b, bias_correction=False) for a, b in (gaussians(1000, d, rho, seed=s) for s in range(8))]
    assert np.mean(raw) > np.mean(values)  # the plug-in Gaussian MI is biased up; the correction removes it


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), power=st.sampled_from([1, 3, 5]), shift=st.floats(-1e3, 1e3))
def test_increasing_maps_and_row_order_leave_it_unchanged(seed, power, shift):
    a, b = gaussians(60, 3, 0.7, seed=seed % 1000)
    perm = torch.randperm(60, generator=torch.Generator().manual_seed(seed))
    # shift only the identity map: a shifted odd power rounds distinct values near 0 together (1e-15 + 512 == 512)
    mapped = (a ** power + (shift if power == 1 else 0.0), torch.sigmoid(b) * 1e-20)
    assert estimate(*mapped) == pytest.approx(estimate(a, b), abs=1e-12)
    assert estimate(a[perm], b[perm]) == pytest.approx(estimate(a, b), abs=1e-12)


def test_tied_values_share_their_mean_rank():
    x = torch.tensor([[3.0, 0.0], [1.0, 0.0], [3.0, 0.0], [2.0, 5.0], [3.0, 0.0]], dtype=torch.float64)
    assert gcmi.mid_ranks(x).T.tolist() == [[4.0, 1.0, 4.0, 2.0, 4.0], [2.5, 2.5, 2.5, 5.0, 2.5]]
    a, b = gaussians(500, 3, 0.6, seed=1)
    relu = a.relu()  # half the entries exactly 0: one point mass per column
    assert estimate(relu, b) == pytest.approx(reference.gcmi_dense(relu, b), abs=1e-10)
    assert estimate(relu, b) < estimate(a, b)


def test_integer_inputs_that_are_not_class_ids_are_refused_by_name():
    """Integer class ids (N,) are read as classes (tests/test_class_ids.py); other integer inputs are refused
    with what to pass instead, and estimators without symbols say how to convert, for tensors and numpy."""
    a = torch.randint(0, 5, (50, 2))
    with pytest.raises(TypeError, match=r"class ids, one column \(N,\), got \(50, 2\): convert .*x\.float\(\)"):
        fastmi.layer_mi(a, torch.randn(50, 2), estimator="gcmi")
    with pytest.raises(TypeError, match=r"a must have a floating dtype .*got torch.int64; convert it: x.float\(\) for"):
        fastmi.layer_mi(a, torch.randn(50, 2), estimator="kde")
    with pytest.raises(TypeError, match=r"np.asarray\(x, dtype=np.float32\) for a numpy array"):  # numpy's advice too
        fastmi.layer_mi(a.numpy(), torch.randn(50, 2).numpy(), estimator="kde")
    value = estimate(a.float(), a.float() + torch.randn(50, 2))  # as floats, ties take mid-ranks
    assert math.isfinite(value) and value > 0


def test_constant_and_copied_columns_carry_nothing():
    a, b = gaussians(400, 2, 0.6, seed=2)
    padded = torch.cat([a, a[:, :1], torch.full((400, 1), 7.0, dtype=torch.float64)], dim=1)
    assert estimate(padded, b) == pytest.approx(estimate(a, b), abs=1e-10)
    assert estimate(torch.ones(400, 3, dtype=torch.float64), b) == 0.0


def test_a_singular_joint_is_shrunk_with_a_warning():
    a, b = gaussians(30, 20, 0.5, seed=3)
    with pytest.warns(RuntimeWarning, match=r"N = 30 rows for 20 \+ 20 dimensions.*Ledoit-Wolf"):
        value = estimate(a, b)
    assert math.isfinite(value) and value > 0
    with pytest.warns(RuntimeWarning, match="one side determines the other"):
        same = estimate(a, a.exp())
    assert math.isfinite(same) and same > value


def test_a_singular_joint_is_said_once_per_test_at_the_callers_line():
    a, b = gaussians(30, 20, 0.5, seed=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fastmi.mi_test(a, b, estimator="gcmi", permutations=20)
    assert len(caught) == 1 and caught[0].filename == __file__


def test_the_one_column_estimate_stays_below_the_mi_where_the_copula_is_not_gaussian():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4000, 1, generator=g, dtype=torch.float64)
    y = x.square() + 0.1 * torch.randn(4000, 1, generator=g, dtype=torch.float64)  # no correlation, much MI
    assert estimate(x, y) < 0.05 < float(fastmi.layer_mi(x, y, estimator="ksg"))


def test_mi_test_shares_the_whitened_scores_exactly():
    a, b = gaussians(200, 3, 0.3, seed=5)
    result = fastmi.mi_test(a, b, estimator="gcmi", permutations=20, seed=1)
    null = [estimate(a, b[p]) for p in row_permutations(200, 20, 1)]
    assert result.estimate == pytest.approx(estimate(a, b), abs=1e-12)
    assert result.null_mean == pytest.approx(np.mean(null), abs=1e-12) and result.p_value == 1 / 21


def test_bad_options_and_inputs_are_named():
    a, b = gaussians(50, 2, 0.5)
    with pytest.raises(TypeError, match="bias_correction must be a bool"):
        estimate(a, b, bias_correction=1)
    with pytest.raises(TypeError, match=r"estimator='gcmi' takes the options \['bias_correction'\]"):
        estimate(a, b, k=3)
    with pytest.raises(ValueError, match="a contains NaN"):
        estimate(a.clone().fill_(math.nan), b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert math.isnan(estimate(a.clone().fill_(math.nan), b, check_finite=False))
    with pytest.raises(ValueError, match="group= is not supported by estimator='gcmi'"):
        estimate(a, b, group=object())
