"""The KDE estimator on every back-end against the float64 reference: values, gradients, exact cases."""
import math
import warnings

import numpy as np
import pytest
import torch

import fastmi
from fastmi import bandwidth, kernels
from fastmi.estimators import kde_torch
from helpers import TOL, kde_reference, relative_error, shifted_pair

pytestmark = pytest.mark.kernels  # they run the Triton kernels: CI reruns them on other tritons

# (backend, dtype). The Triton interpreter gets bf16 arithmetic wrong, so on CPU the triton back-end
# runs bf16 inputs as float32 operands (tests/test_gpu.py checks real bf16 kernels on a GPU).
CASES = [("torch", torch.float64), ("torch", torch.float32), ("torch", torch.bfloat16),
         ("triton", torch.float32), ("triton", torch.float16), ("triton", torch.bfloat16)]
# N = 2; D = 1; N not a multiple of the 64-row block; Da != Db; D = 70 > one 64-wide feature block
SHAPES = [(2, 1, 1), (64, 1, 3), (131, 8, 5), (160, 70, 20)]


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
@pytest.mark.parametrize("sigma", [0.7, (0.5, 2.0), "silverman", "scott", ("standardized_median", 1.3)])
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
    x = torch.randn(200, 24, generator=gen)
    y = torch.randn(200, 9, generator=gen)
    one = kernels.kde.log_sums(x, y, loo, splits=1)
    many = kernels.kde.log_sums(x, y, loo, splits=splits)
    torch.testing.assert_close(many, one, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(many, kde_torch.chain_log_sums(torch.cat([x, y], 1), [0, 24, 33], loo), atol=1e-5,
                               rtol=1e-5)
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


RULES = ["standardized_median", "silverman", "scott", lambda n, d, z: 0.3 * float(z.std())]


@pytest.mark.parametrize("sigma", RULES, ids=["median", "silverman", "scott", "callable"])
def test_rule_estimates_are_scale_free_and_so_are_their_gradients(sigma, gen):
    """With a rule the estimate does not change when a or b is scaled, so its gradient has no component
    along a - mean(a) (or b - mean(b)): the column stds are in the autograd graph."""
    a, b = shifted_pair(200, 4, 3, gen, torch.float64)
    a.requires_grad_()
    b.requires_grad_()
    value = fastmi.layer_mi(a, b, sigma=sigma)
    assert float(fastmi.layer_mi(3.0 * a, 0.5 * b, sigma=sigma)) == pytest.approx(float(value), abs=1e-12)
    for g, x in zip(torch.autograd.grad(value, (a, b)), (a, b)):
        centred = x.detach() - x.detach().mean(0)
        assert abs(float((g * centred).sum())) <= 1e-10 * float(g.norm() * centred.norm())
        assert float(g.norm()) > 0


@pytest.mark.parametrize("sigma", ["silverman", "scott", (0.8, "scott"), lambda n, d, z: 0.4])
def test_gradcheck_with_the_bandwidths_in_the_graph(sigma, gen):
    a, b = shifted_pair(14, 3, 2, gen, torch.float64)

    def mi(x, y):
        return fastmi.layer_mi(x, y, sigma=sigma, backend="torch")
    assert torch.autograd.gradcheck(mi, (a.requires_grad_(), b.requires_grad_()))


def test_median_rule_factor_is_detached_and_the_stds_are_not(gen):
    """The median rule's gradient is that of the same estimate with its factor (median distance of the
    standardised rows) held fixed: the gradient a rule with that constant factor gives."""
    a, b = shifted_pair(80, 3, 3, gen, torch.float64)
    factors = [float(bandwidth.median(80, 6, (x - x.mean(0)) / x.std(0))) for x in (a, b)]
    a.requires_grad_()
    ga, = torch.autograd.grad(fastmi.layer_mi(a, b, sigma="standardized_median"), a)
    a2 = a.detach().requires_grad_()
    fixed = tuple(lambda n, d, z, f=f: f for f in factors)
    ref, = torch.autograd.grad(fastmi.layer_mi(a2, b, sigma=fixed), a2)
    torch.testing.assert_close(ga, ref, atol=1e-12, rtol=1e-10)


def test_float_sigma_is_a_constant(gen):
    """A float sigma is a noise level in the data's units: scaling the data changes the estimate."""
    a, b = shifted_pair(100, 2, 2, gen, torch.float64)
    assert float(fastmi.layer_mi(2 * a, 2 * b, sigma=1.0)) != pytest.approx(float(fastmi.layer_mi(a, b, sigma=1.0)))


def test_rule_values(gen):
    z = torch.randn(500, 3, generator=gen, dtype=torch.float64)
    assert bandwidth.silverman(500, 4, z) == pytest.approx((4 / (6 * 500)) ** (1 / 8))
    assert bandwidth.scott(500, 4, z) == pytest.approx(500 ** (-1 / 8))
    # numpy's median (the mean of the two middle values of an even count), in float64 for float64 input
    assert float(bandwidth.median(500, 4, z)) == pytest.approx(0.25 * float(np.median(torch.pdist(z[::2]).numpy())),
                                                               rel=1e-12)
    assert float(bandwidth.median(200, 4, z[:200])) == pytest.approx(
        0.25 * float(np.median(torch.pdist(z[:200]).numpy())), rel=1e-12)
    assert float(bandwidth.median(200, 4, z[:200].float())) == pytest.approx(
        0.25 * float(np.median(torch.pdist(z[:200]).numpy())), rel=1e-5)
    x = torch.randn(300, 2, generator=gen, dtype=torch.float64) * torch.tensor([1.0, 10.0])
    bw = bandwidth.column_bandwidths(x, "scott", 4)
    torch.testing.assert_close(bw, x.std(0) * 300 ** (-1 / 8))


def test_constant_column_does_not_divide_by_zero(gen):
    a = torch.randn(60, 3, generator=gen)
    a[:, 1] = 5.0
    value = fastmi.layer_mi(a, a[:, :1] + 0.1 * torch.randn(60, 1, generator=gen))
    assert math.isfinite(float(value))


@pytest.mark.parametrize("loo,cache_bytes", [(False, 1 << 20), (False, 0), (True, 1 << 20)])
def test_torch_path_tiles_agree_with_the_reference(monkeypatch, loo, cache_bytes, gen):
    """Several row blocks and column chunks (one of a single column), symmetric shares and whole rows,
    the backward from the forward's kernel tiles or from recomputed ones."""
    from fastmi.estimators import kde_torch
    monkeypatch.setattr(kde_torch, "ROWS", 16)
    monkeypatch.setattr(kde_torch, "CHUNK", 40)
    monkeypatch.setattr(kde_torch, "CACHE_BYTES", cache_bytes)
    cached = kde_torch.cache_elements(81, [0, 3, 5], loo, None, torch.float64)
    tiles = kde_torch.tile_walk(81, 0, 81, symmetric=True)
    assert cached == (0 if loo or not cache_bytes else 2 * sum((hi - lo) * (c1 - c0) for lo, hi, c0, c1 in tiles))
    a, b = shifted_pair(81, 3, 2, gen, torch.float64)
    a.requires_grad_()
    b.requires_grad_()
    value = fastmi.layer_mi(a, b, loo=loo, backend="torch")
    ref, ref_ga, ref_gb = kde_reference(a, b, loo=loo)
    assert abs(float(value) - ref) <= 1e-10
    for g, r in zip(torch.autograd.grad(value, (a, b)), (ref_ga, ref_gb)):
        assert relative_error(g, r) <= 1e-9


def test_the_kdes_median_rule_is_spelled_standardized_median_and_the_old_name_warns():
    """Two conventions under one name before: the KDE's "median" (a quarter of the median distance between
    standardised rows) and hsic's (the median distance in data units). The KDE's is renamed; its old
    spelling gives the same number with a FutureWarning, and never silently means hsic's."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 3, generator=g)
    b = 0.6 * a + torch.randn(200, 3, generator=g)
    new = float(fastmi.layer_mi(a, b, sigma="standardized_median"))
    with pytest.warns(FutureWarning, match="now spelled sigma='standardized_median'"):
        old = float(fastmi.layer_mi(a, b, sigma="median"))
    assert old == new == float(fastmi.layer_mi(a, b))  # the default, without a warning
    with pytest.warns(FutureWarning):
        assert float(fastmi.label_mi(a, torch.arange(200) % 3, sigma="median")) == pytest.approx(
            float(fastmi.label_mi(a, torch.arange(200) % 3)))


@pytest.mark.parametrize("call", [
    lambda sigma: fastmi.layer_mi(torch.randn(20, 2), torch.randn(20, 2), sigma=sigma),
    lambda sigma: fastmi.hsic(torch.randn(20, 2), torch.randn(20, 2), sigma=sigma),
    lambda sigma: fastmi.cka(torch.randn(20, 2), torch.randn(20, 2), sigma=sigma),
    lambda sigma: fastmi.Regularizer(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)), sigma=sigma),
    lambda sigma: fastmi.Regularizer(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)),
                                     estimator="hsic", sigma=sigma),
    lambda sigma: fastmi.MinibatchCKA(kernel="rbf", sigma=sigma),
], ids=["layer_mi", "hsic", "cka", "Regularizer-kde", "Regularizer-hsic", "MinibatchCKA"])
def test_one_sigma_parser_one_set_of_error_types(call):
    """TypeError for a wrong type, ValueError for a bad value, for every estimator and measure, checked
    when the call (or the Regularizer, the accumulator) is built."""
    for wrong in (True, object(), None):
        with pytest.raises(TypeError, match="sigma must be a positive float, a rule name, a callable rule"):
            call(wrong)
    for bad in (0.0, -1.0, math.inf, "nonsense", ()):
        with pytest.raises(ValueError):
            call(bad)


def test_each_convention_refuses_the_others_rule_by_name():
    a, b = torch.randn(30, 2), torch.randn(30, 2)
    with pytest.raises(ValueError, match=r"'standardized_median' is a rule of the KDE"):
        fastmi.hsic(a, b, sigma="standardized_median")
    with pytest.raises(ValueError, match=r"'silverman' is a rule of the KDE"):
        fastmi.cka(a, b, sigma="silverman")
    fastmi.hsic(a, b, sigma="median")  # hsic's median: the field's, in the data's units


@pytest.mark.parametrize("n,da,db", SHAPES[1:])
def test_the_amd_fp32_path_matches_the_reference(n, da, db, gen):
    """On AMD (ROCm torch; kernels/tiles.py fp32_split) float32 products are one IEEE fp32 dot, not the tf32x3
    split (gfx90a has no tf32 matrix instructions): the KDE, its gradients and the gram kernels' measures
    against the float64 references with the float32 tolerances. The interpreter computes both paths' dots in
    fp32 (measured: values within ~1e-7, gradients ~5e-6 on either path); on hardware the IEEE dot rounds each
    product and sum at 2^-24, the tf32x3 split drops lo x lo terms (~2^-22): the tolerances hold for both."""
    from fastmi.kernels import tiles
    a, b = shifted_pair(n, da, db, gen, torch.float32)
    a.requires_grad_()
    b.requires_grad_()
    with tiles.launches_for("hip"):
        assert not tiles.fp32_split(torch.float32) and tiles.mma_operands(a)[1] is a
        value = fastmi.layer_mi(a, b, backend="triton")
        ga, gb = torch.autograd.grad(value, (a, b))
        hsic = fastmi.hsic(a.detach(), b.detach(), sigma=1.0, backend="triton")
        dcor = fastmi.distance_correlation(a.detach(), b.detach(), backend="triton")
    assert tiles.fp32_split(torch.float32) == (tiles.vendor() == "cuda")
    ref, ref_ga, ref_gb = kde_reference(a, b)
    atol, gtol = TOL[torch.float32]
    assert abs(float(value) - ref) <= atol + 1e-5 * abs(ref)
    assert relative_error(ga, ref_ga) <= gtol and relative_error(gb, ref_gb) <= gtol
    a64, b64 = a.detach().double(), b.detach().double()
    assert float(hsic) == pytest.approx(float(fastmi.hsic(a64, b64, sigma=1.0, backend="torch")), rel=1e-5)
    assert float(dcor) == pytest.approx(float(fastmi.distance_correlation(a64, b64, backend="torch")), abs=1e-6)
