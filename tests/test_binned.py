"""Layer-binned MI (estimator="binned") against the numpy reference, and the histogram options' errors."""
import math

import pytest
import torch

import fastmi
from fastmi import reference
from fastmi.estimators import binned
from helpers import noisy_copy_pair

pytestmark = pytest.mark.kernels  # they run the Triton kernels: CI reruns them on other tritons

BACKENDS = ["torch", "triton"]


# ---------------------------------------------------------------------------------- layer-binned

@pytest.mark.parametrize("backend,dtype", [("torch", torch.float32), ("torch", torch.float64),
                                           ("torch", torch.float16), ("triton", torch.float32),
                                           ("triton", torch.float16)])
@pytest.mark.parametrize("bins,da,db", [(2, 1, 1), (3, 70, 5), (30, 4, 6), (7, 12, 12)])
def test_binned_matches_reference(backend, dtype, bins, da, db):
    a, b = noisy_copy_pair(400, da, db, dtype)
    value = fastmi.layer_mi(a, b, estimator="binned", bins=bins, backend=backend)
    ref = reference.binned_mi_unique(a.numpy() if dtype != torch.float16 else a.float().numpy(),
                              b.numpy() if dtype != torch.float16 else b.float().numpy(), bins)
    assert value.requires_grad is False
    assert float(value) == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_binned_given_range_clamps_outliers(backend):
    a, b = noisy_copy_pair(300, 3, 3, torch.float32)
    value = fastmi.layer_mi(a, b, estimator="binned", bins=5, range=(-1.0, 1.0), backend=backend)
    assert float(value) == pytest.approx(reference.binned_mi_unique(a.numpy(), b.numpy(), 5, (-1.0, 1.0)), abs=1e-6)


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
    a, _ = noisy_copy_pair(500, 3, 1, torch.float32)
    value = float(fastmi.layer_mi(a, a.clone(), estimator="binned", bins=4, backend=backend))
    assert value == pytest.approx(reference.plug_in_entropy(reference.bin_layer(a.numpy(), 4, None)), abs=1e-6)


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
    assert float(value) == pytest.approx(reference.binned_mi_unique(h.numpy(), labels.numpy()[:, None], 6), abs=1e-6)
    flags = labels[:, None] > 2
    assert float(fastmi.layer_mi(flags, flags, estimator="binned", backend=backend)) == \
        pytest.approx(reference.plug_in_entropy(flags.numpy()), abs=1e-6)


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
    a, _ = noisy_copy_pair(300, 70, 1, torch.float32)
    assert torch.equal(binned.row_hash(a, 9, None, "triton"), binned.row_hash(a, 9, None, "torch"))


# ---------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("bins", [1, 0, -3, 2.5, True])
def test_bins_must_be_int_at_least_two(bins):
    a, b = noisy_copy_pair(20, 2, 2, torch.float32)
    with pytest.raises(ValueError, match="bins"):
        fastmi.layer_mi(a, b, estimator="binned", bins=bins)
    with pytest.raises(ValueError, match="bins"):
        fastmi.unit_mi(a, b, bins=bins)


@pytest.mark.parametrize("value_range", [(1.0, 1.0), (2.0, -1.0), (0.0, float("inf")), (0.0,), "wide"])
def test_range_must_be_increasing_pair(value_range):
    a, b = noisy_copy_pair(20, 2, 2, torch.float32)
    with pytest.raises(ValueError, match="range"):
        fastmi.layer_mi(a, b, estimator="binned", range=value_range)
    with pytest.raises(ValueError, match="range"):
        fastmi.unit_mi(a, b, range=value_range)


def test_nan_is_refused_by_both():
    a, b = noisy_copy_pair(20, 2, 2, torch.float32)
    a[3, 0] = float("nan")
    for fn in (lambda: fastmi.layer_mi(a, b, estimator="binned"), lambda: fastmi.unit_mi(a, b)):
        with pytest.raises(ValueError, match="NaN or Inf"):
            fn()


def test_unit_mi_needs_floats_and_a_valid_reduction():
    with pytest.raises(TypeError, match="floating dtype"):
        fastmi.unit_mi(torch.ones(10, 2, dtype=torch.int64), torch.randn(10, 2))
    with pytest.raises(ValueError, match="reduction"):
        fastmi.unit_mi(torch.randn(10, 2), torch.randn(10, 2), reduction="max")
    with pytest.raises(TypeError, match="or integer symbols"):
        fastmi.layer_mi(torch.ones(10, 2, dtype=torch.complex64), torch.randn(10, 2), estimator="binned")
