"""fastmi.mi_matrix: every pair of layers, each entry equal to layer_mi; the KDE's pairs off Walecki chains."""
import itertools
import math

import pytest
import torch

import fastmi
from fastmi import matrix


@pytest.mark.parametrize("count", range(2, 10))
def test_walecki_paths_cover_every_pair_once(count):
    paths = matrix.walecki_paths(count)
    edges = [frozenset(p[m:m + 2]) for p in paths for m in range(len(p) - 1)]
    assert sorted(map(sorted, edges)) == sorted(map(sorted, map(frozenset, itertools.combinations(range(count), 2))))
    assert all(len(set(p)) == len(p) for p in paths)
    # each layer is worked at most ceil(L / 2) times (once per path it is in), against L - 1 pair calls
    assert all(sum(i in p for p in paths) <= math.ceil(count / 2) for i in range(count))


def layers(n=150, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    h1 = torch.tanh(x @ torch.randn(3, 5, generator=g, dtype=torch.float64))
    h2 = h1[:, :2] ** 2 + 0.3 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    h3 = torch.randn(n, 4, generator=g, dtype=torch.float64)
    h4 = torch.cat([x[:, :1], h3[:, :1]], dim=1)
    return [x, h1, h2, h3, h4]


@pytest.mark.parametrize("estimator,options", [("kde", {}), ("kde", dict(sigma="silverman")), ("kde", dict(sigma=0.8)),
                                               ("ksg", {}), ("gcmi", {})])
def test_entries_equal_layer_mi_and_the_diagonal_is_nan(estimator, options):
    hs = layers()
    m = fastmi.mi_matrix(hs, estimator=estimator, backend="torch", **options)
    assert m.shape == (5, 5) and m.dtype == torch.float64
    assert bool(torch.isnan(m.diagonal()).all())
    for i, j in itertools.permutations(range(5), 2):
        expected = float(fastmi.layer_mi(hs[i], hs[j], estimator=estimator, backend="torch", **options))
        assert float(m[i, j]) == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_the_kde_matrix_is_differentiable():
    hs = [h.clone().requires_grad_() for h in layers(n=60)]
    m = fastmi.mi_matrix(hs, backend="torch")
    grads = torch.autograd.grad(m[1, 3], hs)
    want = torch.autograd.grad(fastmi.layer_mi(hs[1], hs[3], backend="torch"), (hs[1], hs[3]))
    torch.testing.assert_close(grads[1], want[0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grads[3], want[1], rtol=1e-9, atol=1e-12)
    assert all(float(g.abs().sum()) == 0 for k, g in enumerate(grads) if k not in (1, 3))


def test_bad_layers_are_named():
    hs = layers()
    with pytest.raises(ValueError, match="at least 2 layers"):
        fastmi.mi_matrix([hs[0]])
    with pytest.raises(ValueError, match="at least 2 layers"):
        fastmi.mi_matrix(hs[0])
    with pytest.raises(ValueError, match="estimator"):
        fastmi.mi_matrix(hs, estimator="nope")
    with pytest.raises(ValueError, match="same number of samples"):
        fastmi.mi_matrix([hs[0], hs[1][:100]])


def test_entries_equal_the_dense_references_pair_by_pair():
    """The float64 references of fastmi/reference.py per pair: the KDE at a float sigma (per-column bandwidth
    sigma * std, as layer_mi's operands) and KSG on standardised columns."""
    from fastmi import bandwidth, reference
    from fastmi.estimators import ksg
    hs = layers(n=120)
    kde = fastmi.mi_matrix(hs, estimator="kde", sigma=0.8, backend="torch")
    knn = fastmi.mi_matrix(hs, estimator="ksg")
    for i, j in itertools.combinations(range(5), 2):
        joint = hs[i].shape[1] + hs[j].shape[1]
        want = reference.kde_mi_dense(hs[i], hs[j], bandwidth.column_bandwidths(hs[i], 0.8, joint),
                                      bandwidth.column_bandwidths(hs[j], 0.8, joint))
        assert float(kde[i, j]) == pytest.approx(float(want), abs=1e-10)
        assert float(knn[i, j]) == pytest.approx(reference.ksg_mi_dense(ksg.standardized(hs[i]),
                                                                        ksg.standardized(hs[j])), abs=1e-12)
