"""Unit-pair MI (fastmi.unit_mi, estimator="unit") against numpy/scikit-learn references; the fused kernel."""
import math

import numpy as np
import pytest
import torch

import fastmi
from fastmi import reference
from fastmi.estimators import unit
from helpers import noisy_copy_pair

pytestmark = pytest.mark.kernels  # they run the Triton kernels: CI reruns them on other tritons


def on_bin_centres(n, d, bins, seed=0):
    """float32 data whose per-column min/max are exactly 0 and 1 and whose values sit inside bins."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(0, bins, (n, d), generator=g).float()
    x = (k + 0.5 + 0.3 * (2 * torch.rand(n, d, generator=g) - 1)) / bins
    x[0], x[1] = 0.0, 1.0
    return x


# ---------------------------------------------------------------------------------- unit pairs

@pytest.mark.parametrize("bins,da,db", [(2, 1, 1), (7, 5, 3), (16, 4, 9)])
def test_unit_mi_hard_matches_histogram2d(bins, da, db):
    a, b = noisy_copy_pair(600, da, db, torch.float64)
    expected = torch.from_numpy(reference.unit_mi_histogram2d(a, b, bins))
    torch.testing.assert_close(fastmi.unit_mi(a, b, bins=bins), expected, atol=1e-10, rtol=0)


def test_unit_mi_float32_matches_histogram2d():
    bins = 6
    a, b = on_bin_centres(400, 5, bins, seed=1), on_bin_centres(400, 3, bins, seed=2)
    b[2:, 0] = a[2:, 0]
    result = fastmi.unit_mi(a, b, bins=bins)
    assert result.dtype == torch.float32
    expected = torch.from_numpy(reference.unit_mi_histogram2d(a, b, bins))
    torch.testing.assert_close(result.double(), expected, atol=1e-6, rtol=0)


def test_unit_mi_agrees_with_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    bins = 5
    a, b = noisy_copy_pair(500, 3, 2, torch.float64)
    result = fastmi.unit_mi(a, b, bins=bins)

    def binned_column(x):
        return np.clip(np.floor((x - x.min()) / (x.max() - x.min()) * bins), 0, bins - 1)
    for p in range(3):
        for q in range(2):
            expected = sklearn_metrics.mutual_info_score(binned_column(a[:, p].numpy()), binned_column(b[:, q].numpy()))
            assert float(result[p, q]) == pytest.approx(expected, abs=1e-12)


def test_unit_mi_identity_and_independence():
    n, k = 20000, 4
    g = torch.Generator().manual_seed(5)
    a = torch.rand(n, 2, generator=g, dtype=torch.float64)
    b = torch.cat([a[:, :1], torch.rand(n, 1, generator=g, dtype=torch.float64)], 1)
    m = fastmi.unit_mi(a, b, bins=k)
    h = reference.plug_in_entropy(reference.bin_layer(a[:, :1].numpy(), k, None))
    assert float(m[0, 0]) == pytest.approx(h, abs=1e-12)
    bias, std = (k - 1) ** 2 / (2 * n), math.sqrt(2 * (k - 1) ** 2) / (2 * n)
    assert abs(float(m[1, 1]) - bias) < 5 * std


def test_reductions_and_layer_mi_unit_is_the_mean():
    a, b = noisy_copy_pair(300, 4, 3, torch.float64)
    m = fastmi.unit_mi(a, b, bins=8)
    assert float(fastmi.unit_mi(a, b, bins=8, reduction="mean")) == pytest.approx(float(m.mean()))
    assert float(fastmi.unit_mi(a, b, bins=8, reduction="sum")) == pytest.approx(float(m.sum()))
    assert float(fastmi.layer_mi(a, b, estimator="unit", bins=8)) == pytest.approx(float(m.mean()))
    assert float(fastmi.unit_mi(a, b, bins=8, units="bits").sum()) == pytest.approx(float(m.sum()) / math.log(2))


def test_constant_and_tiny_columns():
    a = torch.randn(100, 3, dtype=torch.float64)
    a[:, 1] = 4.0
    a[:, 2] = 1e-30 * torch.randn(100, dtype=torch.float64)
    m = fastmi.unit_mi(a, a, bins=5)
    assert torch.isfinite(m).all() and float(m[1, 1]) == 0.0 and float(m[2, 2]) > 0


def test_soft_codes_interpolate_between_bin_centres():
    lo, scale = torch.zeros(1, dtype=torch.float64), torch.full((1,), 4.0, dtype=torch.float64)  # 4 bins on [0, 1]
    x = torch.tensor([[0.125], [0.25], [0.3125], [0.0], [1.0]], dtype=torch.float64)
    c = unit.codes(x, lo, scale, 4, soft=True)[:, 0]
    expected = torch.tensor([[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0.25, 0.75, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]],
                            dtype=torch.float64)
    torch.testing.assert_close(c, expected)


def test_soft_unit_mi_gradcheck():
    g = torch.Generator().manual_seed(2)
    a = (0.05 + 0.9 * torch.rand(25, 2, generator=g, dtype=torch.float64)).requires_grad_()
    b = (a.detach()[:, :1] + 0.3 * torch.rand(25, 1, generator=g, dtype=torch.float64)).requires_grad_()

    def mi(x, y):
        return fastmi.unit_mi(x, y, bins=5, soft=True, range=(0.0, 1.4))
    assert torch.autograd.gradcheck(mi, (a, b))


def test_soft_unit_mi_in_the_regularizer():
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    reg = fastmi.Regularizer(model, estimator="unit", soft=True, bins=6)
    model(torch.randn(64, 4))
    reg().backward()
    assert float(model[0].weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="differentiable"):
        fastmi.Regularizer(model, estimator="unit")


# ---------------------------------------------------------------------------------- the fused unit_mi kernel

@pytest.mark.parametrize("soft,atol", [(False, 1e-5), (True, 5e-4)])  # soft codes enter tl.dot as fp16
@pytest.mark.parametrize("bins,n,da,db", [(2, 64, 1, 1), (7, 300, 20, 5), (16, 130, 9, 17), (30, 77, 3, 4)])
def test_triton_unit_mi_matches_torch_path(soft, atol, bins, n, da, db):
    a, b = noisy_copy_pair(n, da, min(da, db), torch.float32)
    b = torch.cat([b, torch.randn(n, db - b.shape[1])], 1) if db > b.shape[1] else b
    a[:, 0] = 3.0  # a constant unit
    fused = fastmi.unit_mi(a, b, bins=bins, soft=soft, backend="triton")
    plain = fastmi.unit_mi(a, b, bins=bins, soft=soft, backend="torch")
    assert fused.shape == (da, db)
    torch.testing.assert_close(fused, plain, atol=atol, rtol=0)


def test_triton_unit_mi_hard_matches_histogram2d():
    bins = 6
    a, b = on_bin_centres(200, 5, bins, seed=3), on_bin_centres(200, 3, bins, seed=4)
    b[2:, 1] = a[2:, 2]
    torch.testing.assert_close(fastmi.unit_mi(a, b, bins=bins, backend="triton").double(),
                               torch.from_numpy(reference.unit_mi_histogram2d(a, b, bins)), atol=1e-6, rtol=0)


def test_soft_unit_mi_with_grad_and_many_bins_fall_back_to_torch():
    a, b = noisy_copy_pair(100, 3, 2, torch.float32)
    a.requires_grad_()
    value = fastmi.unit_mi(a, b, bins=8, soft=True, reduction="sum", backend="auto")
    value.backward()
    assert a.grad is not None and float(a.grad.abs().sum()) > 0
    many = fastmi.unit_mi(a.detach(), b, bins=200, backend="auto")
    torch.testing.assert_close(many, fastmi.unit_mi(a.detach(), b, bins=200, backend="torch"))


def test_triton_backend_refuses_float64_for_histograms():
    a, b = noisy_copy_pair(20, 2, 2, torch.float64)
    with pytest.raises(TypeError, match="float64"):
        fastmi.unit_mi(a, b, backend="triton")
    with pytest.raises(TypeError, match="float64"):
        fastmi.layer_mi(a, b, estimator="binned", backend="triton")
