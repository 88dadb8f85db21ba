"""Bad input gets a clear error that names the problem."""
import math

import pytest
import torch

import fastmi


def pair(n=10, da=3, db=2):
    return torch.randn(n, da), torch.randn(n, db)


def test_mismatched_n_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(10, 3\).*\(11, 2\)"):
        fastmi.layer_mi(torch.randn(10, 3), torch.randn(11, 2))


@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_samples(n):
    with pytest.raises(ValueError, match="at least 2 samples"):
        fastmi.layer_mi(*pair(n))


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_non_floating_dtype(dtype):
    a, b = pair()
    with pytest.raises(TypeError, match="floating dtype"):
        fastmi.layer_mi(a.to(dtype), b)


def test_not_a_tensor():
    with pytest.raises(TypeError, match="torch.Tensor"):
        fastmi.layer_mi([[1.0, 2.0]], torch.randn(1, 2))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("which", ["a", "b"])
def test_nan_inf_refused_unless_opted_out(bad, which):
    a, b = pair()
    (a if which == "a" else b)[3, 1] = bad
    with pytest.raises(ValueError, match=f"{which} contains NaN or Inf"):
        fastmi.layer_mi(a, b)
    # opted out: no check, and the non-finite input shows in the result rather than vanishing
    assert not math.isfinite(float(fastmi.layer_mi(a, b, sigma=1.0, check_finite=False)))


@pytest.mark.parametrize("sigma", [0.0, -1.0, float("nan"), float("inf"), (1.0, 0.0)])
def test_sigma_must_be_positive(sigma):
    with pytest.raises(ValueError, match="sigma must be positive"):
        fastmi.layer_mi(*pair(), sigma=sigma)


@pytest.mark.parametrize("sigma,error", [("bogus", ValueError), ((1.0, 2.0, 3.0), ValueError),
                                         (None, TypeError), (True, TypeError)])
def test_sigma_spec_errors(sigma, error):
    with pytest.raises(error, match="sigma|bandwidth rule"):
        fastmi.layer_mi(*pair(), sigma=sigma)


def test_rule_returning_nonsense():
    with pytest.raises(ValueError, match="positive float"):
        fastmi.layer_mi(*pair(), sigma=lambda n, d, z: 0.0)


def test_different_devices():
    a, _ = pair()
    with pytest.raises(ValueError, match="same device"):
        fastmi.layer_mi(a, torch.randn(10, 2, device="meta"))


@pytest.mark.parametrize("kwargs,match", [
    (dict(estimator="nope"), "estimator"), (dict(bound="tight"), "bound"), (dict(units="hartleys"), "units"),
    (dict(backend="cuda"), "backend"), (dict(loo=1), "loo"),
])
def test_bad_options(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fastmi.layer_mi(*pair(), **kwargs)


def test_zero_features():
    with pytest.raises(ValueError, match="no features"):
        fastmi.layer_mi(torch.randn(10, 0), torch.randn(10, 2))


def test_triton_backend_refuses_float64():
    with pytest.raises(TypeError, match="float64"):
        fastmi.layer_mi(*(x.double() for x in pair()), backend="triton")


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("call", [
    lambda a, b: fastmi.layer_mi(a, b, estimator="binned", check_finite=False),
    lambda a, b: fastmi.layer_mi(a, b, estimator="ksg", check_finite=False, backend="torch"),
    lambda a, b: fastmi.layer_mi(a, b, estimator="unit", soft=True, check_finite=False, backend="torch"),
    lambda a, b: fastmi.unit_mi(a, b, check_finite=False, backend="torch"),
], ids=["binned", "ksg", "unit-soft", "unit_mi"])
def test_unchecked_non_finite_input_gives_nan_not_a_number_that_looks_right(call, bad):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 3, generator=g), torch.randn(200, 2, generator=g)
    a[7, 1] = bad
    assert bool(torch.isnan(call(a, b)).all())
    a[7, 1] = 0.0
    assert bool(torch.isfinite(call(a, b)).all())
