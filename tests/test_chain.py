"""fastmi.chain_mi: the KDE MI of every successive pair of layers, equal to layer_mi on each pair (values
and gradients) on every back-end, with each layer's work done once where the bandwidths allow it."""
import math

import pytest
import torch

import fastmi
from fastmi.estimators import kde
from helpers import TOL, relative_error

SIGMAS = ["standardized_median", 0.9, "silverman", (1.1, "standardized_median"), lambda n, d, z: 0.35]


def layers(n, widths, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    hs = [torch.randn(n, widths[0], generator=g, dtype=torch.float64)]
    for d in widths[1:]:
        w = torch.randn(hs[-1].shape[1], d, generator=g, dtype=torch.float64) / math.sqrt(hs[-1].shape[1])
        hs.append(torch.tanh(2 * hs[-1] @ w) + 0.3 * torch.randn(n, d, generator=g, dtype=torch.float64))
    return [h.to(dtype).requires_grad_() for h in hs]


def per_pair(hs, **options):
    return torch.stack([fastmi.layer_mi(a, b, **options) for a, b in zip(hs[:-1], hs[1:])])


CASES = [(backend, dtype, sigma, loo) for backend, dtype in [("torch", torch.float64), ("torch", torch.float32)]
         for sigma in SIGMAS for loo in (False, True)]
CASES += [("triton", torch.float32, sigma, loo) for sigma in ("standardized_median", "silverman")
          for loo in (False, True)]


@pytest.mark.parametrize("backend,dtype,sigma,loo", CASES)
def test_chain_equals_layer_mi_on_each_pair(backend, dtype, sigma, loo):
    hs = layers(150 if backend == "torch" else 100, [5, 4, 7, 3], dtype)
    options = dict(sigma=sigma, loo=loo, backend=backend)
    chain = fastmi.chain_mi(hs, **options)
    pairs = per_pair(hs, **options)
    assert chain.shape == (3,) and chain.dtype == pairs.dtype
    atol, gtol = (1e-9, 1e-9) if dtype == torch.float64 else TOL[dtype]
    torch.testing.assert_close(chain, pairs, atol=atol, rtol=0)
    weights = torch.tensor([0.5, -1.0, 2.0], dtype=chain.dtype)  # any upstream gradient
    for g_chain, g_pairs in zip(torch.autograd.grad((chain * weights).sum(), hs),
                                torch.autograd.grad((pairs * weights).sum(), hs)):
        assert relative_error(g_chain, g_pairs.double()) <= gtol


def test_chain_gradcheck_float64():
    hs = layers(12, [3, 2, 4], torch.float64)
    assert torch.autograd.gradcheck(lambda *x: fastmi.chain_mi(list(x), sigma=0.8), tuple(hs))


@pytest.mark.parametrize("sigma,widths,operands", [
    ("standardized_median", [5, 4, 7, 3], 4), (0.9, [5, 4, 7, 3], 4),  # one operand per layer
    ("silverman", [4, 4, 4, 4], 4),                      # the pairs' Da + Db agree: shared
    ("silverman", [5, 4, 7, 3], 6),                      # they do not: pair by pair
])
def test_each_layer_operand_is_computed_once_where_the_bandwidth_allows(monkeypatch, sigma, widths, operands):
    calls = []
    original = kde.KDE._operand
    monkeypatch.setattr(kde.KDE, "_operand", lambda self, *args: calls.append(1) or original(self, *args))
    fastmi.chain_mi(layers(100, widths, torch.float64), sigma=sigma)
    assert len(calls) == operands


def test_chain_kernel_sums_equal_the_pairs_sums():
    """The chain back-ends' (2L - 1) log-sums: each layer's marginal once, each pair's joint."""
    from fastmi.estimators import kde_torch
    hs = [h.detach() for h in layers(90, [3, 5, 2], torch.float64)]
    x, offsets = torch.cat(hs, 1), [0, 3, 8, 10]
    for loo in (False, True):
        for rows in (None, (10, 75)):
            sums = kde_torch.chain_log_sums(x, offsets, loo, rows)
            start, stop = rows or (0, 90)
            for m in range(2):
                pair_offsets = [0, hs[m].shape[1], hs[m].shape[1] + hs[m + 1].shape[1]]
                pair = kde_torch.chain_log_sums(torch.cat(hs[m:m + 2], 1), pair_offsets, loo, rows)
                torch.testing.assert_close(sums[[m, m + 1, 3 + m]], pair, atol=1e-12, rtol=0)
            assert sums.shape == (5, stop - start)


def test_bits_and_flattening():
    hs = layers(80, [6, 4, 5], torch.float64)
    nats = fastmi.chain_mi(hs)
    torch.testing.assert_close(fastmi.chain_mi(hs, units="bits"), nats / math.log(2))
    torch.testing.assert_close(fastmi.chain_mi([hs[0].view(80, 2, 3), *hs[1:]]), nats)


@pytest.mark.parametrize("activations,error,match", [
    (torch.randn(10, 3), TypeError, "list or tuple"),
    ([torch.randn(10, 3)], ValueError, "at least two activations, got 1"),
    ([torch.randn(10, 3), torch.randn(10, 2), torch.randn(11, 2)], ValueError,
     r"activations\[0\] and activations\[2\] must have the same number of samples .*\(11, 2\)"),
    ([torch.randn(10, 3), torch.randn(10, 2, device="meta")], ValueError, r"activations\[1\] must be on the same"),
    ([torch.randn(10, 3), torch.ones(10, 2, dtype=torch.int64)], TypeError, r"activations\[1\] must have a floating"),
    ([torch.randn(10, 3), torch.randn(10, 0)], ValueError, r"activations\[1\] has no features"),
    ([torch.randn(1, 3), torch.randn(1, 2)], ValueError, "at least 2 samples"),
])
def test_bad_activations(activations, error, match):
    with pytest.raises(error, match=match):
        fastmi.chain_mi(activations)


def test_non_finite_layer_is_named():
    hs = [h.detach() for h in layers(20, [2, 2, 2], torch.float32)]
    hs[2][4, 1] = float("nan")
    with pytest.raises(ValueError, match=r"activations\[2\] contains NaN or Inf"):
        fastmi.chain_mi(hs)


@pytest.mark.parametrize("options,error,match", [
    (dict(sigma=-1.0), ValueError, "sigma must be positive"), (dict(divergence="x"), ValueError, "divergence"),
    (dict(bins=3), TypeError, "takes the options"), (dict(units="hartleys"), ValueError, "units"),
])
def test_bad_options_as_in_layer_mi(options, error, match):
    with pytest.raises(error, match=match):
        fastmi.chain_mi(layers(20, [2, 2], torch.float32), **options)
