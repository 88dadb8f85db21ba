"""The public API: the estimator registry and its options, and bad input with a clear error that names
the problem."""
import math
import os
import subprocess
import sys

import pytest
import torch

import fastmi
from fastmi import reference


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


def test_not_an_array():
    with pytest.raises(TypeError, match="a must be a torch.Tensor or an array-like of numbers, got object"):
        fastmi.layer_mi(object(), torch.randn(3, 2))


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
    (dict(estimator="nope"), "estimator"), (dict(divergence="tight"), "divergence"), (dict(units="hartleys"), "units"),
    (dict(backend="cuda"), "backend"), (dict(loo=1), "loo"),
    (dict(bins=4), r"estimator='kde' takes the options \['sigma', 'divergence', 'loo', 'bound'\], got \['bins'\]"),
    (dict(estimator="ksg", sigma=1.0), r"estimator='ksg' takes the options \['k', 'jitter'\], got \['sigma'\]"),
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


# ---------------------------------------------------------------------------------- the registry

def test_every_registered_estimator_implements_the_interface():
    for name, cls in fastmi.ESTIMATORS.items():
        assert cls.name == name and cls.option_names() and callable(cls)
        estimator = cls()  # every option has a default
        assert isinstance(estimator.differentiable, bool) and isinstance(estimator.nan_blind, bool)


def test_a_new_estimator_is_one_class_and_one_registry_line(monkeypatch):
    """What a new estimator needs: the interface of fastmi.estimators.base, and one registry entry."""
    from fastmi.estimators.base import Estimator

    class GaussianMI(Estimator):
        name = "gaussian"

        def __init__(self, *, ridge=0.0):
            self.ridge = ridge

        def __call__(self, a, b, backend, shard):
            c = torch.cov(torch.cat([a, b], 1).double().T)
            da = a.shape[1]
            return 0.5 * (torch.logdet(c[:da, :da]) + torch.logdet(c[da:, da:]) - torch.logdet(c))
    monkeypatch.setitem(fastmi.ESTIMATORS, "gaussian", GaussianMI)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 1, generator=g, dtype=torch.float64)
    b = 0.6 * a + 0.8 * torch.randn(20000, 1, generator=g, dtype=torch.float64)
    value = fastmi.layer_mi(a, b, estimator="gaussian", ridge=1e-9, units="bits")
    sample = reference.gaussian_mi(torch.cov(torch.cat([a, b], 1).T), 1) / math.log(2)
    assert value.dtype == torch.float64 and float(value) == pytest.approx(sample, abs=1e-12)
    with pytest.raises(TypeError, match=r"takes the options \['ridge'\]"):
        fastmi.layer_mi(a, b, estimator="gaussian", k=3)


def test_bound_is_the_old_name_of_divergence():
    a, b = pair(50)
    with pytest.warns(FutureWarning, match="divergence"):
        old = fastmi.layer_mi(a, b, bound="bhattacharyya")
    assert float(old) == float(fastmi.layer_mi(a, b, divergence="bhattacharyya"))


def test_warnings_point_at_the_callers_line():
    def warned_files(call):
        with pytest.warns(RuntimeWarning, match="saturated") as record:
            call()
        return {w.filename for w in record if "saturated" in str(w.message)}
    a = 100.0 * torch.arange(70, dtype=torch.float32)[:, None]
    assert warned_files(lambda: fastmi.layer_mi(a, -a, sigma=1.0, backend="torch")) == {__file__}
    model = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.Linear(1, 1))
    reg = fastmi.Regularizer(model, sigma=1e-3, backend="torch")
    model(a)
    assert warned_files(reg) == {__file__}


def test_kernels_are_imported_with_fastmi():
    code = "import sys, fastmi; print('fastmi.kernels.kde' in sys.modules, fastmi.kernels.AVAILABLE)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"]


def test_without_triton_fastmi_runs_its_torch_paths_and_says_what_triton_needs(tmp_path):
    (tmp_path / "triton").mkdir()
    (tmp_path / "triton" / "__init__.py").write_text("raise ImportError('no triton here')\n")
    code = ("import torch, fastmi\n"
            "a = torch.randn(50, 3)\n"
            "print(round(float(fastmi.layer_mi(a, a + torch.randn(50, 3))), 3) >= 0)\n"
            "try:\n    fastmi.layer_mi(a, a, backend='triton')\n"
            "except ImportError as e:\n    print(e)\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), TRITON_INTERPRET="1")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines() == ["True", "backend='triton' needs the triton package (pip install triton; "
                                                "Linux only): no triton here"]
