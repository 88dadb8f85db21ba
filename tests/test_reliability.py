"""Defects found by trying fastmi as a new user would, each kept out by a test: dtypes, extreme magnitudes,
hooks that follow copies, pickling, double backward, bad Regularizer arguments, logging edge cases,
array-like inputs, warnings, first-call latency."""
import copy
import io
import math
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import fastmi
from fastmi.estimators import unit
from helpers import noisy_copy_pair


def pair(n=300, dtype=torch.float64, seed=0):
    return noisy_copy_pair(n, 3, 2, dtype, seed)


def quiet(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(call())


# ------------------------------------------------------------------------------------------ dtypes

@pytest.mark.parametrize("estimator", ["ksg", "kde", "binned", "unit", "gcmi"])
@pytest.mark.parametrize("low", [torch.float32, torch.float16])
def test_mixed_precision_pairs_are_promoted(estimator, low):
    a, b = pair()
    value = fastmi.layer_mi(a.to(low), b, estimator=estimator, backend="torch")
    assert value.dtype == torch.float64
    assert float(value) == pytest.approx(float(fastmi.layer_mi(a.to(low).double(), b, estimator=estimator,
                                                               backend="torch")), abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2, torch.complex64])
def test_unsupported_floating_dtypes_are_named(dtype):
    a, b = pair(20, torch.float32)
    with pytest.raises(TypeError, match=rf"a must have a floating dtype .*got {dtype}"):
        fastmi.layer_mi(a.to(dtype), b)


# ------------------------------------------------------------------------------ extreme magnitudes

@pytest.mark.parametrize("estimator,dtype,scales", [
    ("kde", torch.float64, (1e160, 1e300, 1e-300)),
    ("kde", torch.float32, (1e-30, 1e30, 2e37)),
    ("ksg", torch.float64, (1e160, 1e-300)),
    ("gcmi", torch.float64, (1e160, 1e-300)),
    ("binned", torch.float32, (1e-40, 1e-30, 1e37)),
    ("unit", torch.float32, (1e-40, 1e37)),
    ("unit", torch.float64, (1e-300, 1e300)),
])
def test_scale_free_estimators_give_the_rescaled_problems_value(estimator, dtype, scales):
    a, b = pair(200, dtype)
    expected = quiet(lambda: fastmi.layer_mi(a, b, estimator=estimator, backend="torch"))
    for s in scales:
        got = quiet(lambda: fastmi.layer_mi(a * s, b * s, estimator=estimator, backend="torch"))
        assert math.isfinite(got) and got == pytest.approx(expected, abs=1e-5), s


def test_subnormal_float32_inputs_keep_their_standardisation():
    a, b = pair(200, torch.float32)
    expected = float(fastmi.layer_mi(a, b, backend="torch"))
    assert float(fastmi.layer_mi(a * 1e-40, b * 1e-40, backend="torch")) == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("sigma", [1e-19, 1e-30])
def test_a_float_sigma_too_small_for_float32_is_a_clear_error(sigma):
    a, b = pair(100, torch.float32)
    with pytest.raises(ValueError, match="overflow torch.float32"):
        fastmi.layer_mi(a, b, sigma=sigma, backend="torch")


def test_unit_mi_works_on_blocks_of_units(monkeypatch):
    a, b = noisy_copy_pair(200, 12, 5, torch.float64)
    whole = fastmi.unit_mi(a, b, bins=6)
    monkeypatch.setattr(unit, "BLOCK_BYTES", 1)  # one unit of a at a time
    torch.testing.assert_close(fastmi.unit_mi(a, b, bins=6), whole, rtol=0, atol=0)


# ----------------------------------------------------------------------------------- autograd

def test_double_backward_is_a_clear_error():
    a, b = pair(50)
    a.requires_grad_()
    value = fastmi.layer_mi(a, b, backend="torch")
    with pytest.raises(RuntimeError, match="first derivatives only"):
        torch.autograd.grad(value, a, create_graph=True)


def test_the_first_call_does_not_import_the_compiler():
    code = ("import sys, torch, fastmi\n"
            "a = torch.randn(60, 3, requires_grad=True)\n"
            "fastmi.layer_mi(a, torch.randn(60, 2)).backward()\n"
            "print('torch._dynamo' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"


# ---------------------------------------------------------------------------------- Regularizer

def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))


def test_hooks_do_not_follow_a_deepcopy():
    model = mlp()
    reg = fastmi.Regularizer(model)
    ema = copy.deepcopy(model)
    x = torch.randn(64, 4)
    model(x)
    with torch.no_grad():
        ema(torch.randn(64, 4))  # an EMA / teacher forward must not replace the training activations
    value = reg()
    assert value.requires_grad
    assert reg.last == pytest.approx(fastmi.chain_mi([model[0](x), model[2](model[1](model[0](x))),
                                                      model(x)]).tolist(), rel=1e-6)
    reg.remove()
    ema(torch.randn(8, 4))  # the copy's hooks are inert


def test_a_model_with_a_regularizer_pickles_and_saves():
    model = mlp()
    reg = fastmi.Regularizer(model)
    model(torch.randn(16, 4))
    restored = pickle.loads(pickle.dumps(model))
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    for m in (restored, loaded):
        torch.testing.assert_close(m(torch.ones(2, 4)), model(torch.ones(2, 4)))
    assert reg() is not None


def test_a_no_grad_forward_before_reg_warns_during_training():
    model = mlp()
    reg = fastmi.Regularizer(model)
    model(torch.randn(32, 4))
    with torch.no_grad():
        model(torch.randn(32, 4))  # a validation pass
    with pytest.warns(RuntimeWarning, match="carry no gradient"):
        reg()
    model.eval()
    with torch.no_grad():
        model(torch.randn(32, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg()  # measuring in eval mode is what no_grad forwards are for


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(layers="02"), TypeError, "list of layer names"),
    (dict(layers=["0", "0"]), ValueError, "same module more than once"),
    (dict(weight=float("nan")), ValueError, "weight must be a finite number"),
    (dict(weight="0.1"), ValueError, "weight must be a finite number"),
    (dict(sigmaa=1.0), TypeError, "takes the options"),
    (dict(backend="gpu"), ValueError, "backend"),
    (dict(units="hartleys"), ValueError, "units"),
    (dict(maximize="yes"), TypeError, "maximize"),
])
def test_regularizer_arguments_are_checked_when_it_is_built(kwargs, error, match):
    with pytest.raises(error, match=match):
        fastmi.Regularizer(mlp(), **kwargs)


# -------------------------------------------------------------------------------------- logging

def test_milog_before_any_value_and_with_a_changing_number_of_pairs(tmp_path):
    model = mlp()
    reg = fastmi.Regularizer(model)
    log = fastmi.MILog(reg)
    with pytest.raises(RuntimeError, match="no MI values yet"):
        log()
    with pytest.raises(ValueError, match="nothing logged"):
        log.plot(tmp_path / "empty.png")
    model(torch.randn(40, 4))
    reg()
    log(0)
    model[0](torch.randn(40, 4))
    model[2](torch.randn(40, 8))  # only two layers ran: one pair
    reg()
    log(1)
    assert [len(v) for v in log.values] == [2, 1]
    log.plot(tmp_path / "mi.png")
    assert (tmp_path / "mi.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="at least one"):
        fastmi.plot_information_plane([], tmp_path / "plane.png")


# ------------------------------------------------------------------------------ inputs, warnings

def test_numpy_arrays_and_lists_are_accepted_and_give_plain_numbers():
    a, b = pair(120)
    value = fastmi.layer_mi(a.numpy(), b.numpy())
    assert isinstance(value, float) and value == pytest.approx(float(fastmi.layer_mi(a, b)), abs=1e-12)
    ksg = fastmi.layer_mi(a.numpy().tolist(), b.numpy().tolist(), estimator="ksg")
    assert isinstance(ksg, float) and ksg == pytest.approx(float(fastmi.layer_mi(a, b, estimator="ksg")), abs=1e-12)
    matrix = fastmi.unit_mi(a.numpy(), b.numpy(), bins=5)
    assert isinstance(matrix, np.ndarray) and matrix.shape == (3, 2)
    mixed = fastmi.layer_mi(a, b.numpy())  # one tensor: a tensor comes back
    assert isinstance(mixed, torch.Tensor)
    with pytest.raises(TypeError, match="array-like of numbers"):
        fastmi.layer_mi({"a": 1}, b.numpy())


def test_a_saturation_warning_says_why_and_comes_once_per_call_site():
    def far_apart(n):
        return 100.0 * torch.arange(n, dtype=torch.float64)[:, None]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for n in (70, 50, 30):  # different N (a last partial batch, say), the same line: one warning
            fastmi.layer_mi(far_apart(n), -far_apart(n), sigma=1.0)
    messages = [str(w.message) for w in caught if "ceiling" in str(w.message)]
    assert len(messages) == 1 and "a small batch" in messages[0] and "a larger sigma" in messages[0]
