"""fastmi.pointwise_mi: per-row terms whose mean is layer_mi (KDE and KSG), permutation-equivariant; the KDE's
are differentiable (gradcheck in float64, and their mean's gradient is layer_mi's)."""
import math

import pytest
import torch

import fastmi

OPTIONS = [("kde", {}), ("kde", dict(loo=True)), ("kde", dict(sigma=0.7)), ("kde", dict(sigma="silverman")),
           ("kde", dict(divergence="bhattacharyya")), ("ksg", {}), ("ksg", dict(k=5))]
TOL = {torch.float64: 1e-12, torch.float32: 2e-6}


def pair(n=200, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, 4, generator=g, dtype=torch.float64)
    b = a[:, :2] + 0.5 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return a.to(dtype), b.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("estimator,options", OPTIONS)
def test_the_mean_of_the_terms_is_the_estimate(estimator, options, dtype):
    a, b = pair(dtype=dtype)
    terms = fastmi.pointwise_mi(a, b, estimator=estimator, backend="torch", **options)
    assert terms.shape == (200,) and terms.dtype == dtype
    value = fastmi.layer_mi(a, b, estimator=estimator, backend="torch", **options)
    assert float(terms.mean()) == pytest.approx(float(value), rel=TOL[dtype], abs=TOL[dtype])


@pytest.mark.parametrize("estimator,options", OPTIONS)
def test_terms_follow_a_permutation_of_the_rows(estimator, options):
    a, b = pair()
    p = torch.randperm(200, generator=torch.Generator().manual_seed(1))
    terms = fastmi.pointwise_mi(a, b, estimator=estimator, **options)
    permuted = fastmi.pointwise_mi(a[p], b[p], estimator=estimator, **options)
    torch.testing.assert_close(permuted, terms[p], rtol=1e-10, atol=1e-10)


def test_the_kde_terms_are_differentiable():
    a, b = pair(n=24)
    a.requires_grad_()
    b.requires_grad_()
    weights = torch.linspace(-1, 2, 24, dtype=torch.float64)  # not the mean: every row's term on its own
    # a float sigma: a rule's factor is detached by design (layer_mi's too), which gradcheck would see
    assert torch.autograd.gradcheck(lambda x, y: (fastmi.pointwise_mi(x, y, sigma=0.8) * weights).sum(), (a, b))
    mean_grad = torch.autograd.grad(fastmi.pointwise_mi(a, b).mean(), (a, b))
    estimate_grad = torch.autograd.grad(fastmi.layer_mi(a, b, backend="torch"), (a, b))
    for got, want in zip(mean_grad, estimate_grad):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_units_numpy_and_the_rows_that_carry_the_dependence():
    a, b = pair()
    bits = fastmi.pointwise_mi(a, b, units="bits")
    torch.testing.assert_close(bits, fastmi.pointwise_mi(a, b) / math.log(2))
    terms = fastmi.pointwise_mi(a.numpy(), b.numpy(), estimator="ksg")
    assert terms.shape == (200,)
    # rows whose b is its own a plus noise against rows with b shuffled: the dependent half carries the MI
    shuffled = b.clone()
    shuffled[100:] = b[100:][torch.randperm(100, generator=torch.Generator().manual_seed(2))]
    half = fastmi.pointwise_mi(a, shuffled, estimator="ksg")
    assert float(half[:100].mean()) > float(half[100:].mean()) + 0.3


def test_estimators_without_a_decomposition_and_class_ids_are_refused():
    a, b = pair()
    with pytest.raises(ValueError, match="estimator"):
        fastmi.pointwise_mi(a, b, estimator="gcmi")
    with pytest.raises(TypeError, match="continuous sides"):
        fastmi.pointwise_mi(a, (a[:, 0] > 0).long(), estimator="ksg")
    with pytest.raises(TypeError, match="group"):
        fastmi.pointwise_mi(a, b, group=None)


@pytest.mark.parametrize("options", [{}, dict(sigma=0.7, loo=True), dict(divergence="bhattacharyya")])
def test_the_kde_terms_equal_the_dense_reference_row_by_row(options):
    """fastmi.reference.kde_pointwise_dense on the bandwidths layer_mi uses (tests/helpers.py's rule)."""
    from fastmi import bandwidth, reference
    a, b = pair()
    sa, sb = bandwidth.split_sigma(options.get("sigma", "standardized_median"))
    want = reference.kde_pointwise_dense(a, b, bandwidth.column_bandwidths(a, sa, 6),
                                         bandwidth.column_bandwidths(b, sb, 6), options.get("divergence", "kl"),
                                         options.get("loo", False))
    got = fastmi.pointwise_mi(a, b, estimator="kde", backend="torch", **options)
    assert float((got - want).abs().max()) < 1e-12


@pytest.mark.parametrize("k", [1, 3, 6])
def test_the_ksg_terms_equal_the_dense_reference_row_by_row(k):
    from fastmi import reference
    from fastmi.estimators import ksg
    a, b = pair(seed=k)
    want = reference.ksg_pointwise_dense(ksg.standardized(a), ksg.standardized(b), k)
    assert float((fastmi.pointwise_mi(a, b, estimator="ksg", k=k) - want).abs().max()) < 1e-12
