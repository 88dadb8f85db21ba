"""pytest-benchmark suites of the same kernels, so that regressions show in a standard tool:

    pytest bench/ --benchmark-only                      (add --benchmark-autosave to keep a history)
    pytest bench/ --benchmark-compare                   (against the last saved run)

Runs on CUDA when available (the Triton kernels), else on the CPU torch paths. Sizes are small
enough for a laptop; `python -m bench speed --sizes ...` is the tool for big sizes and baselines.
"""
import math

import pytest
import torch

import fastmi
from bench import layer_pair
from bench.baselines import dense_kde_mi
from fastmi import reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
N = 4096 if DEVICE == "cuda" else 2048


def layers(n, d, seed=0):
    return layer_pair(n, d, device=DEVICE, seed=seed)


def _sync(value):
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    return value


@pytest.mark.parametrize("method", ["fastmi", "dense"])
def test_kde_forward_backward(benchmark, method):
    a, b = layers(N, 64)
    a.requires_grad_()
    fn = fastmi.layer_mi if method == "fastmi" else dense_kde_mi

    def step():
        a.grad = None
        value = fn(a, b)
        value.backward()
        return _sync(value)
    value = benchmark(step)
    assert math.isfinite(float(value))


def test_kde_forward(benchmark):
    a, b = layers(N, 64)
    with torch.no_grad():
        value = benchmark(lambda: _sync(fastmi.layer_mi(a, b)))
    assert 0 < float(value) < math.log(N)


def test_binned(benchmark):
    a, b = layers(4 * N, 64)
    value = benchmark(lambda: _sync(fastmi.layer_mi(a, b, estimator="binned")))
    assert float(value) == pytest.approx(reference.binned_mi_unique(a.cpu().numpy(), b.cpu().numpy(), 30), abs=1e-5)


def test_unit_mi(benchmark):
    a, b = layers(N, 128)
    matrix = benchmark(lambda: _sync(fastmi.unit_mi(a, b, bins=16)))
    expected = reference.unit_mi_histogram2d(a[:, :4].cpu().numpy(), b[:, :4].cpu().numpy(), 16)
    torch.testing.assert_close(matrix[:4, :4].double().cpu(), torch.from_numpy(expected), atol=1e-5, rtol=0)


def test_ksg(benchmark):
    a, b = layers(N, 5)
    value = benchmark(lambda: _sync(fastmi.layer_mi(a, b, estimator="ksg")))
    assert math.isfinite(float(value))
