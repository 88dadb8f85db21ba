"""KSG kNN estimator: against the dense float64 reference, a KD-tree implementation, and ground truth."""
import math
import warnings

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from scipy.special import digamma

import fastmi
from fastmi import kernels, reference
from fastmi.estimators import ksg
from fastmi.reference import gaussian_mi
from helpers import shared_column_pair


def tree_ksg(x, y, k):
    """KSG algorithm 1 with scipy's cKDTree (max-norm): the tree-based implementation to agree with."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = len(x)
    eps = cKDTree(np.hstack([x, y])).query(np.hstack([x, y]), k=k + 1, p=np.inf)[0][:, -1]
    radius = np.nextafter(eps, 0)  # strictly inside
    na = cKDTree(x).query_ball_point(x, radius, p=np.inf, return_length=True) - 1  # minus the row itself
    nb = cKDTree(y).query_ball_point(y, radius, p=np.inf, return_length=True) - 1
    return digamma(k) + digamma(n) - np.mean(digamma(na + 1) + digamma(nb + 1))


def scaled(a, b):
    return ksg.standardized(a), ksg.standardized(b)


@pytest.mark.parametrize("n,da,db,k", [(2, 1, 1, 1), (50, 1, 1, 3), (129, 3, 2, 3), (500, 1, 7, 5),
                                       (700, 4, 4, 1), (300, 2, 2, 200)])
def test_torch_path_equals_reference_and_kd_tree(n, da, db, k):
    a, b = shared_column_pair(n, da, db, seed=n + k)
    value = fastmi.layer_mi(a, b, estimator="ksg", k=k, backend="torch")
    x, y = scaled(a, b)
    assert value.dtype == torch.float64 and not value.requires_grad
    assert abs(float(value) - reference.ksg_mi_dense(x, y, k)) < 1e-12
    if n > k + 1:
        assert abs(float(value) - tree_ksg(x, y, k)) < 1e-12


@pytest.mark.parametrize("n,da,db,k,dtype", [(50, 1, 1, 3, torch.float32), (200, 3, 2, 4, torch.float32),
                                             (150, 2, 1, 65, torch.float32), (130, 1, 2, 1, torch.float16)])
def test_triton_kernels_equal_torch_path(n, da, db, k, dtype):
    a, b = shared_column_pair(n, da, db, dtype, seed=k)
    x, y, boxes = ksg.prepared(a, b)
    for got, want in zip(kernels.ksg.neighbour_counts(x, y, k, ksg.ORDER_TILE, boxes),
                         ksg.neighbour_counts_torch(x, y, k, boxes)):
        assert torch.equal(got.to(want.dtype), want)
    triton_value = fastmi.layer_mi(a, b, estimator="ksg", k=k, backend="triton")
    assert triton_value.dtype == torch.float32
    assert float(triton_value) == float(fastmi.layer_mi(a, b, estimator="ksg", k=k, backend="torch"))


def test_float32_agrees_with_float64_reference():
    a, b = shared_column_pair(600, 3, 3, torch.float32, seed=1)
    value = float(fastmi.layer_mi(a, b, estimator="ksg", backend="torch"))
    assert abs(value - reference.ksg_mi_dense(*scaled(a.double(), b.double()), 3)) < 1e-3


def test_row_order_does_not_matter():
    a, b = shared_column_pair(400, 2, 3)
    perm = torch.randperm(400, generator=torch.Generator().manual_seed(3))
    first = float(fastmi.layer_mi(a, b, estimator="ksg"))
    assert abs(first - float(fastmi.layer_mi(a[perm], b[perm], estimator="ksg"))) < 1e-12


@pytest.mark.parametrize("d,rho", [(1, 0.9), (2, 0.5)])
def test_close_to_closed_form_gaussian_mi(d, rho):
    g = torch.Generator().manual_seed(d)
    a = torch.randn(2000, d, generator=g, dtype=torch.float64)
    b = rho * a + math.sqrt(1 - rho ** 2) * torch.randn(2000, d, generator=g, dtype=torch.float64)
    truth = -0.5 * d * math.log(1 - rho ** 2)
    eye = torch.eye(d, dtype=torch.float64)
    assert abs(truth - gaussian_mi(torch.cat([torch.cat([eye, rho * eye], 1), torch.cat([rho * eye, eye], 1)]), d)) \
        < 1e-12
    assert abs(float(fastmi.layer_mi(a, b, estimator="ksg")) - truth) < 0.05  # KSG's known low-d accuracy


def test_independent_near_zero():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3000, 2, generator=g), torch.randn(3000, 2, generator=g)
    assert abs(float(fastmi.layer_mi(a, b, estimator="ksg", backend="torch"))) < 0.03


def test_duplicates_follow_the_definition_and_warn_when_eps_is_zero():
    a, b = shared_column_pair(100, 2, 2)
    twice_a, twice_b = a.repeat(2, 1), b.repeat(2, 1)  # every row has one duplicate: eps > 0 for k = 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = float(fastmi.layer_mi(twice_a, twice_b, estimator="ksg", k=3))
    x, y = scaled(twice_a, twice_b)
    assert abs(value - reference.ksg_mi_dense(x, y, 3)) < 1e-12 and abs(value - tree_ksg(x, y, 3)) < 1e-12
    four_a, four_b = a.repeat(4, 1), b.repeat(4, 1)  # three duplicates: eps = 0 for k = 3
    with pytest.warns(RuntimeWarning, match="duplicates"):
        value = float(fastmi.layer_mi(four_a, four_b, estimator="ksg", k=3))
    assert abs(value - reference.ksg_mi_dense(*scaled(four_a, four_b), 3)) < 1e-12


def test_bits_and_flattening():
    a, b = shared_column_pair(300, 4, 2)
    nats = float(fastmi.layer_mi(a, b, estimator="ksg"))
    assert abs(float(fastmi.layer_mi(a, b, estimator="ksg", units="bits")) - nats / math.log(2)) < 1e-12
    assert abs(float(fastmi.layer_mi(a.view(300, 2, 2), b, estimator="ksg")) - nats) < 1e-12


def test_kd_order_is_a_permutation_into_leaves():
    z = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0))
    order = ksg.kd_order(z, 64)
    assert torch.equal(order.sort().values, torch.arange(1000))
    lo, hi = ksg.tile_boxes(z[order], 64)
    assert lo.shape == (16, 3) and bool((lo <= hi).all())
    assert float((hi - lo).max(1).values.mean()) < float((z.max(0).values - z.min(0).values).max())


@pytest.mark.parametrize("k,match", [(0, "k must be an int >= 1"), (True, "k must be an int"),
                                     (2.5, "k must be an int"), (10, "k < N"), (11, "k = 11 with N = 10")])
def test_bad_k(k, match):
    a, b = shared_column_pair(10, 1, 1)
    with pytest.raises(ValueError, match=match):
        fastmi.layer_mi(a, b, estimator="ksg", k=k)


def test_not_supported_combinations():
    a, b = shared_column_pair(10, 1, 1)
    with pytest.raises(ValueError, match="group= is not supported"):
        fastmi.layer_mi(a, b, estimator="ksg", group=object())
    with pytest.raises(ValueError, match="differentiable estimator"):
        fastmi.Regularizer(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)), estimator="ksg")
    a.requires_grad_(True)
    assert not fastmi.layer_mi(a, b, estimator="ksg").requires_grad
