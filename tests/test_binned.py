"""Histogram estimators: layer-binned MI and the unit-pair MI matrix against numpy/scikit-learn references."""
import math

import numpy as np
import pytest
import torch

import fastmi
from fastmi import binned, reference

BACKENDS = ["torch", "triton"]


def dependent(n, da, db, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, da, generator=g, dtype=torch.float64)
    b = a[:, :db] + 0.7 * torch.randn(n, db, generator=g, dtype=torch.float64) if db <= da else \
        torch.randn(n, db, generator=g, dtype=torch.float64)
    return a.to(dtype), b.to(dtype)


def on_bin_centres(n, d, bins, seed=0):
    """float32 data whose per-column min/max are exactly 0 and 1 and whose values sit inside bins."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(0, bins, (n, d), generator=g).float()
    x = (k + 0.5 + 0.3 * (2 * torch.rand(n, d, generator=g) - 1)) / bins
    x[0], x[1] = 0.0, 1.0
    return x


# ---------------------------------------------------------------------------------- layer-binned

@pytest.mark.parametrize("backend,dtype", [("torch", torch.float32), ("torch", torch.float64),
                                           ("torch", torch.float16), ("triton", torch.float32),
                                           ("triton", torch.float16)])
@pytest.mark.parametrize("bins,da,db", [(2, 1, 1), (3, 70, 5), (30, 4, 6), (7, 12, 12)])
def test_binned_matches_reference(backend, dtype, bins, da, db):
    a, b = dependent(400, da, db, dtype)
    value = fastmi.layer_mi(a, b, estimator="binned", bins=bins, backend=backend)
    ref = reference.binned_mi(a.numpy() if dtype != torch.float16 else a.float().numpy(),
                              b.numpy() if dtype != torch.float16 else b.float().numpy(), bins)
    assert value.requires_grad is False
    assert float(value) == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_binned_given_range_clamps_outliers(backend):
    a, b = dependent(300, 3, 3, torch.float32)
    value = fastmi.layer_mi(a, b, estimator="binned", bins=5, range=(-1.0, 1.0), backend=backend)
    assert float(value) == pytest.approx(reference.binned_mi(a.numpy(), b.numpy(), 5, (-1.0, 1.0)), abs=1e-6)


def test_binned_hand_computed_tables():
    def mi(a, b):
        return float(fastmi.layer_mi(torch.tensor(a), torch.tensor(b), estimator="binned"))
    assert mi([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-12)
    assert mi([0, 0, 1, 1], [5, 5, 7, 7]) == pytest.approx(math.log(2))
    h_a = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    h_ab = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert mi([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(h_a + math.log(2) - h_ab)


@pytest.mark.parametrize("backend", BACKENDS)
def test_binned_b_equals_a_gives_entropy_of_a(backend):
    a, _ = dependent(500, 3, 1, torch.float32)
    value = float(fastmi.layer_mi(a, a.clone(), estimator="binned", bins=4, backend=backend))
    assert value == pytest.approx(reference._plug_in_entropy(reference._bin_layer(a.numpy(), 4, None)), abs=1e-6)


def test_binned_independent_units_show_only_the_plug_in_bias():
    n, k = 20000, 4
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(n, 1, generator=g), torch.rand(n, 1, generator=g)
    value = float(fastmi.layer_mi(a, b, estimator="binned", bins=k))
    bias, std = (k - 1) ** 2 / (2 * n), math.sqrt(2 * (k - 1) ** 2) / (2 * n)  # 2N I ~ chi2((K-1)^2)
    assert abs(value - bias) < 5 * std


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_and_bool_inputs_are_symbols(backend):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (300,), generator=g)
    h = torch.randn(300, 4, generator=g) + labels[:, None].float()
    value = fastmi.layer_mi(h, labels, estimator="binned", bins=6, backend=backend)
    assert float(value) == pytest.approx(reference.binned_mi(h.numpy(), labels.numpy()[:, None], 6), abs=1e-6)
    flags = labels[:, None] > 2
    assert float(fastmi.layer_mi(flags, flags, estimator="binned", backend=backend)) == \
        pytest.approx(reference._plug_in_entropy(flags.numpy()), abs=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_constant_layer_gives_zero(backend):
    a = torch.full((50, 3), 2.0)
    b = torch.randn(50, 2)
    assert float(fastmi.layer_mi(a, b, estimator="binned", backend=backend)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_row_hash_separates_every_binary_pattern(backend):
    """All 2^14 distinct rows of 14 binary units get 2^14 distinct 64-bit hashes; equal rows equal ones."""
    codes = ((torch.arange(2 ** 14)[:, None] >> torch.arange(14)) & 1).to(torch.int32)
    rows = torch.cat([codes, codes[:100]])
    h = binned.row_hash(rows, 2, None, backend)
    assert h[: 2 ** 14].unique().numel() == 2 ** 14
    assert torch.equal(h[2 ** 14:], h[:100])


def test_triton_and_torch_hashes_agree():
    a, _ = dependent(300, 70, 1, torch.float32)
    assert torch.equal(binned.row_hash(a, 9, None, "triton"), binned.row_hash(a, 9, None, "torch"))


# ---------------------------------------------------------------------------------- unit pairs

@pytest.mark.parametrize("bins,da,db", [(2, 1, 1), (7, 5, 3), (16, 4, 9)])
def test_unit_mi_hard_matches_histogram2d(bins, da, db):
    a, b = dependent(600, da, db, torch.float64)
    torch.testing.assert_close(fastmi.unit_mi(a, b, bins=bins), torch.from_numpy(reference.unit_mi(a, b, bins)),
                               atol=1e-10, rtol=0)


def test_unit_mi_float32_matches_histogram2d():
    bins = 6
    a, b = on_bin_centres(400, 5, bins, seed=1), on_bin_centres(400, 3, bins, seed=2)
    b[2:, 0] = a[2:, 0]
    result = fastmi.unit_mi(a, b, bins=bins)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result.double(), torch.from_numpy(reference.unit_mi(a, b, bins)), atol=1e-6, rtol=0)


def test_unit_mi_agrees_with_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    bins = 5
    a, b = dependent(500, 3, 2, torch.float64)
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
    h = reference._plug_in_entropy(reference._bin_layer(a[:, :1].numpy(), k, None))
    assert float(m[0, 0]) == pytest.approx(h, abs=1e-12)
    bias, std = (k - 1) ** 2 / (2 * n), math.sqrt(2 * (k - 1) ** 2) / (2 * n)
    assert abs(float(m[1, 1]) - bias) < 5 * std


def test_reductions_and_layer_mi_unit_is_the_mean():
    a, b = dependent(300, 4, 3, torch.float64)
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
    c = binned.codes(x, lo, scale, 4, soft=True)[:, 0]
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


# ---------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("bins", [1, 0, -3, 2.5, True])
def test_bins_must_be_int_at_least_two(bins):
    a, b = dependent(20, 2, 2, torch.float32)
    with pytest.raises(ValueError, match="bins"):
        fastmi.layer_mi(a, b, estimator="binned", bins=bins)
    with pytest.raises(ValueError, match="bins"):
        fastmi.unit_mi(a, b, bins=bins)


@pytest.mark.parametrize("value_range", [(1.0, 1.0), (2.0, -1.0), (0.0, float("inf")), (0.0,), "wide"])
def test_range_must_be_increasing_pair(value_range):
    a, b = dependent(20, 2, 2, torch.float32)
    with pytest.raises(ValueError, match="range"):
        fastmi.layer_mi(a, b, estimator="binned", range=value_range)
    with pytest.raises(ValueError, match="range"):
        fastmi.unit_mi(a, b, range=value_range)


def test_nan_is_refused_by_both():
    a, b = dependent(20, 2, 2, torch.float32)
    a[3, 0] = float("nan")
    for fn in (lambda: fastmi.layer_mi(a, b, estimator="binned"), lambda: fastmi.unit_mi(a, b)):
        with pytest.raises(ValueError, match="NaN or Inf"):
            fn()


def test_unit_mi_needs_floats_and_a_valid_reduction():
    with pytest.raises(TypeError, match="floating dtype"):
        fastmi.unit_mi(torch.ones(10, 2, dtype=torch.int64), torch.randn(10, 2))
    with pytest.raises(ValueError, match="reduction"):
        fastmi.unit_mi(torch.randn(10, 2), torch.randn(10, 2), reduction="max")
    with pytest.raises(TypeError, match="floating or integer"):
        fastmi.layer_mi(torch.ones(10, 2, dtype=torch.complex64), torch.randn(10, 2), estimator="binned")


# ---------------------------------------------------------------------------------- the fused unit_mi kernel

@pytest.mark.parametrize("soft,atol", [(False, 1e-5), (True, 5e-4)])  # soft codes enter tl.dot as fp16
@pytest.mark.parametrize("bins,n,da,db", [(2, 64, 1, 1), (7, 300, 20, 5), (16, 130, 9, 17), (30, 77, 3, 4)])
def test_triton_unit_mi_matches_torch_path(soft, atol, bins, n, da, db):
    a, b = dependent(n, da, min(da, db), torch.float32)
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
                               torch.from_numpy(reference.unit_mi(a, b, bins)), atol=1e-6, rtol=0)


def test_soft_unit_mi_with_grad_and_many_bins_fall_back_to_torch():
    a, b = dependent(100, 3, 2, torch.float32)
    a.requires_grad_()
    value = fastmi.unit_mi(a, b, bins=8, soft=True, reduction="sum", backend="auto")
    value.backward()
    assert a.grad is not None and float(a.grad.abs().sum()) > 0
    many = fastmi.unit_mi(a.detach(), b, bins=200, backend="auto")
    torch.testing.assert_close(many, fastmi.unit_mi(a.detach(), b, bins=200, backend="torch"))


def test_triton_backend_refuses_float64_for_histograms():
    a, b = dependent(20, 2, 2, torch.float64)
    with pytest.raises(TypeError, match="float64"):
        fastmi.unit_mi(a, b, backend="triton")
    with pytest.raises(TypeError, match="float64"):
        fastmi.layer_mi(a, b, estimator="binned", backend="triton")
