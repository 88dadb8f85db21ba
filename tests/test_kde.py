"""The KDE estimator on every back-end against the float64 reference: values, gradients, exact cases."""
import math
import warnings

import pytest
import torch

import fastmi
from fastmi import bandwidth, kernels, reference
from fastmi.estimators import kde_torch
from helpers import TOL, kde_reference, relative_error, shifted_pair

# (backend, dtype). The Triton interpreter gets bf16 arithmetic wrong, so on CPU the triton back-end
# runs bf16 inputs as float32 operands (tests/test_gpu.py checks real bf16 kernels on a GPU).
CASES = [("torch", torch.float64), ("torch", torch.float32), ("torch", torch.bfloat16),
         ("triton", torch.float32), ("triton", torch.float16), ("triton", torch.bfloat16)]
# N = 2; D = 1; N not a multiple of the 64-row block; Da != Db; D = 70 > one 64-wide feature block
SHAPES = [(2, 1, 1), (64, 1, 3), (131, 8, 5), (257, 70, 20)]


@pytest.mark.parametrize("backend,dtype", CASES)
@pytest.mark.parametrize("n,da,db", SHAPES)
@pytest.mark.parametrize("loo", [False, True])
def test_value_and_gradient_match_reference(backend, dtype, n, da, db, loo, gen):
    a, b = shifted_pair(n, da, db, gen, dtype)
    a.requires_grad_()
    b.requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # N = 2 saturates by construction
        value = fastmi.layer_mi(a, b, loo=loo, backend=backend)
    ga, gb = torch.autograd.grad(value, (a, b))
    ref, ref_ga, ref_gb = kde_reference(a, b, loo=loo)
    atol, gtol = TOL[dtype]
    assert abs(float(value) - ref) <= atol + 1e-5 * abs(ref)
    assert ga.dtype == dtype and gb.dtype == dtype
    if n > 2:  # at N = 2 with D = 1 the gradients are ~0 and the relative error meaningless
        assert relative_error(ga, ref_ga) <= gtol
        assert relative_error(gb, ref_gb) <= gtol


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("divergence", ["kl", "bhattacharyya"])
@pytest.mark.parametrize("sigma", [0.7, (0.5, 2.0), "silverman", "scott", ("median", 1.3)])
def test_bandwidths_and_divergences_match_reference(backend, divergence, sigma, gen):
    a, b = shifted_pair(150, 3, 4, gen, torch.float32)
    value = fastmi.layer_mi(a, b, sigma=sigma, divergence=divergence, backend=backend)
    ref, _, _ = kde_reference(a, b, sigma, divergence)
    assert abs(float(value) - ref) <= 2e-5


@pytest.mark.parametrize("loo", [False, True])
@pytest.mark.parametrize("divergence", ["kl", "bhattacharyya"])
def test_gradcheck_float64_torch_path(loo, divergence, gen):
    a, b = shifted_pair(12, 3, 2, gen, torch.float64)
    a.requires_grad_()
    b.requires_grad_()

    def mi(x, y):
        return fastmi.layer_mi(x, y, sigma=(0.8, 1.1), divergence=divergence, loo=loo, backend="torch")
    assert torch.autograd.gradcheck(mi, (a, b))


@pytest.mark.parametrize("splits", [2, 3, 5])
@pytest.mark.parametrize("loo", [False, True])
def test_triton_column_splits_agree_with_one_split(splits, loo, gen):
    x = torch.randn(300, 24, generator=gen)
    y = torch.randn(300, 9, generator=gen)
    one = kernels.kde.log_sums(x, y, loo, splits=1)
    many = kernels.kde.log_sums(x, y, loo, splits=splits)
    torch.testing.assert_close(many, one, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(many, kde_torch.log_sums(x, y, loo), atol=1e-5, rtol=1e-5)
    gx1, gy1 = kernels.kde.pair_grads(x, y, one, loo, splits=1)
    gxs, gys = kernels.kde.pair_grads(x, y, one, loo, splits=splits)
    torch.testing.assert_close(gxs, gx1, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gys, gy1, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_identical_rows_give_zero(backend):
    a = torch.ones(50, 4)
    b = torch.full((50, 3), 2.0)
    assert float(fastmi.layer_mi(a, b, backend=backend)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("k", [2, 5])
def test_separated_equal_clusters_give_ln_k(backend, k, gen):
    per = 20
    centres = 100.0 * torch.randn(k, 6, generator=gen)
    a = centres.repeat_interleave(per, 0) + 1e-3 * torch.randn(k * per, 6, generator=gen)
    value = fastmi.layer_mi(a, a.clone(), sigma=1.0, backend=backend)
    assert float(value) == pytest.approx(math.log(k), abs=1e-4)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_far_apart_points_give_ln_n_and_warn(backend):
    n = 70
    a = 100.0 * torch.arange(n, dtype=torch.float32)[:, None]
    with pytest.warns(RuntimeWarning, match="saturated"):
        value = fastmi.layer_mi(a, -a, sigma=1.0, backend=backend)
    assert float(value) == pytest.approx(math.log(n), abs=1e-5)


def test_no_saturation_warning_for_a_sensible_bandwidth(gen):
    a, b = shifted_pair(200, 4, 4, gen, torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastmi.layer_mi(a, b)


def test_feature_maps_are_flattened_per_sample(gen):
    a = torch.randn(40, 2, 3, 3, generator=gen)
    b = torch.randn(40, 5, generator=gen) + a.reshape(40, -1)[:, :5]
    assert float(fastmi.layer_mi(a, b)) == float(fastmi.layer_mi(a.reshape(40, -1), b))


def test_non_contiguous_inputs(gen):
    a = torch.randn(8, 60, generator=gen).T  # (60, 8), column-major
    b = torch.randn(60, 3, generator=gen)
    assert not a.is_contiguous()
    assert float(fastmi.layer_mi(a, b)) == pytest.approx(float(fastmi.layer_mi(a.contiguous(), b)), abs=1e-6)


def test_bits_are_nats_over_ln2(gen):
    a, b = shifted_pair(100, 2, 2, gen, torch.float32)
    nats = float(fastmi.layer_mi(a, b))
    assert float(fastmi.layer_mi(a, b, units="bits")) == pytest.approx(nats / math.log(2), rel=1e-6)


def test_mixed_dtypes_promote(gen):
    a, b = shifted_pair(100, 2, 2, gen, torch.float64)
    value = fastmi.layer_mi(a, b.float())
    assert value.dtype == torch.float64
    assert float(value) == pytest.approx(kde_reference(a, b.float())[0], abs=1e-6)


def test_bandwidth_is_detached(gen):
    """The rule's bandwidth gets no gradient: layer_mi's gradient is that of a fixed-bandwidth KDE."""
    a, b = shifted_pair(80, 3, 3, gen, torch.float64)
    a.requires_grad_()
    ga, = torch.autograd.grad(fastmi.layer_mi(a, b, sigma="median"), a)
    joint = 6
    fixed = (bandwidth.column_bandwidths(a, "median", joint), bandwidth.column_bandwidths(b, "median", joint))
    a2 = a.detach().requires_grad_()
    ref, = torch.autograd.grad(reference.kde_mi_dense(a2, b, *fixed), a2)
    torch.testing.assert_close(ga, ref, atol=1e-10, rtol=1e-8)


def test_rule_values(gen):
    z = torch.randn(500, 3, generator=gen, dtype=torch.float64)
    assert bandwidth.silverman(500, 4, z) == pytest.approx((4 / (6 * 500)) ** (1 / 8))
    assert bandwidth.scott(500, 4, z) == pytest.approx(500 ** (-1 / 8))
    assert float(bandwidth.median(500, 4, z)) == pytest.approx(0.25 * float(torch.pdist(z).median()))
    x = torch.randn(300, 2, generator=gen, dtype=torch.float64) * torch.tensor([1.0, 10.0])
    bw = bandwidth.column_bandwidths(x, "scott", 4)
    torch.testing.assert_close(bw, x.std(0) * 300 ** (-1 / 8))


def test_constant_column_does_not_divide_by_zero(gen):
    a = torch.randn(60, 3, generator=gen)
    a[:, 1] = 5.0
    value = fastmi.layer_mi(a, a[:, :1] + 0.1 * torch.randn(60, 1, generator=gen))
    assert math.isfinite(float(value))
