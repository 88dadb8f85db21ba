"""KSG kNN estimator: against the dense float64 reference, a KD-tree implementation, and ground truth."""
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmi
from fastmi import kernels, reference
from fastmi.estimators import ksg
from fastmi.reference import gaussian_mi
from helpers import shared_column_pair

pytestmark = pytest.mark.kernels  # they run the Triton kernels: CI reruns them on other tritons


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
        assert abs(float(value) - reference.ksg_mi_tree(x, y, k)) < 1e-12


@pytest.mark.parametrize("n,da,db,k,dtype", [(50, 1, 1, 3, torch.float32), (200, 3, 2, 4, torch.float32),
                                             (150, 2, 1, 65, torch.float32), (130, 1, 2, 1, torch.float16)])
def test_triton_kernels_equal_torch_path(n, da, db, k, dtype):
    a, b = shared_column_pair(n, da, db, dtype, seed=k)
    x, y, boxes = ksg.prepared(ksg.standardized(a), ksg.standardized(b))
    for got, want in zip(kernels.ksg.neighbour_counts(x, y, k, ksg.ORDER_TILE, boxes),
                         ksg.neighbour_counts_torch(x, y, k, boxes)):
        assert torch.equal(got.to(want.dtype), want)
    triton_value = fastmi.layer_mi(a, b, estimator="ksg", k=k, backend="triton")
    assert triton_value.dtype == torch.float32
    assert float(triton_value) == float(fastmi.layer_mi(a, b, estimator="ksg", k=k, backend="torch"))


def hard_data(name, seed=0):
    """Inputs where paths could disagree: ties, duplicates, quantised values, constant columns."""
    g = torch.Generator().manual_seed(seed)
    if name == "quantised":
        return torch.randint(0, 4, (400, 2), generator=g).double(), torch.randint(0, 3, (400, 2), generator=g).double()
    if name == "duplicates":
        a = torch.randn(90, 2, generator=g, dtype=torch.float64)
        b = torch.randn(90, 1, generator=g, dtype=torch.float64)
        return a.repeat(3, 1), b.repeat(3, 1)
    if name == "constant column":
        a = torch.randn(300, 3, generator=g, dtype=torch.float64)
        a[:, 1] = 0.7
        return a, torch.randn(300, 2, generator=g, dtype=torch.float64) + a[:, :1]
    if name == "float32 far from 0":  # float32 values, large offset: distances exact only in float64
        a = (1e3 + torch.randn(500, 2, generator=g)).float()
        return a, (a[:, :1] - 1e3 + 1e-3 * torch.randn(500, 1, generator=g)).float()
    raise ValueError(name)


@pytest.mark.parametrize("name", ["quantised", "duplicates", "constant column", "float32 far from 0"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_every_path_gives_the_dense_reference_counts(name, k):
    a, b = hard_data(name)
    x, y = scaled(a, b)
    xs, ys, boxes = ksg.prepared(x, y)
    paths = {"tree": ksg.tree_counts(x, y, k), "tiles": ksg.neighbour_counts_torch(xs, ys, k, boxes)}
    if name == "quantised":  # the Triton kernels (interpreted here), float64 as fastmi gives them
        paths["triton"] = kernels.ksg.neighbour_counts(xs, ys, k, ksg.ORDER_TILE, boxes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eps = 0 rows warn; the values are what is checked
        values = {path: float(ksg.from_counts(*counts, k)) for path, counts in paths.items()}
    want = reference.ksg_mi_dense(x, y, k)
    assert all(abs(v - want) < 1e-12 for v in values.values()), (values, want)
    assert len(set(values.values())) == 1  # bit for bit: the digamma sums do not depend on row order


@pytest.mark.parametrize("da,db", [(1, 1), (3, 3), (8, 8)])  # tree path, and tiles at high dimension
def test_float32_inputs_equal_their_float64_values(da, db):
    a, b = shared_column_pair(600, da, db, torch.float32, seed=1)
    value32 = fastmi.layer_mi(a, b, estimator="ksg", backend="torch")
    value64 = fastmi.layer_mi(a.double(), b.double(), estimator="ksg", backend="torch")
    assert value32.dtype == torch.float32 and float(value32) == float(value64.float())


def test_tree_is_chosen_up_to_the_measured_crossover():
    assert [round(ksg.tree_max_dim(n)) for n, _ in ksg.TREE_CROSSOVER] == [d for _, d in ksg.TREE_CROSSOVER]
    at = ksg.tree_max_dim
    assert at(100) < 4 < at(500) < 7 < at(5000) < 13 < at(50_000) < 20 < at(10 ** 6)
    x = torch.zeros(20_000, 6, dtype=torch.float64)
    assert ksg.uses_tree(x, x, "torch") and not ksg.uses_tree(x, torch.zeros(20_000, 8), "torch")
    assert not ksg.uses_tree(x, x, "triton")


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
    with pytest.warns(RuntimeWarning) as caught:  # columns repeat values; no row has eps = 0
        value = float(fastmi.layer_mi(twice_a, twice_b, estimator="ksg", k=3))
    assert [str(w.message)[:29] for w in caught] == ["KSG: columns repeat values (q"]
    x, y = scaled(twice_a, twice_b)
    assert abs(value - reference.ksg_mi_dense(x, y, 3)) < 1e-12 and abs(value - reference.ksg_mi_tree(x, y, 3)) < 1e-12
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


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(-1e300, 1e300), st.sampled_from([0.0, 1.0, 1.0 + 2 ** -52, -3e-310, 7.0])),
                min_size=2, max_size=60), st.data())
def test_one_column_counts_are_the_computed_distances(values, data):
    """sorted_counts against brute force on the same float64 differences: extreme magnitudes, subnormals,
    duplicates, and radii equal to distances that occur (the strict boundary)."""
    v = np.array(values)
    distances = np.abs(v[:, None] - v[None, :])
    pick = data.draw(st.lists(st.integers(0, len(v) - 1), min_size=len(v), max_size=len(v)))
    eps = distances[np.arange(len(v)), pick]
    eps = np.where(eps > 0, eps, data.draw(st.floats(1e-300, 1e300)))
    want = (distances < eps[:, None]).sum(1) - 1
    assert np.array_equal(ksg.sorted_counts(np.sort(v), v, eps), want)


def test_jitter_breaks_the_ties_of_quantised_data():
    """The first-day case: a pair with rho = 0.8 rounded to 0.01, N = 2000: KSG 0.56-0.62 nats for 0.51, no
    word (ties at exactly eps are left out of the strict counts). Now a warning, and jitter= (fixed seed,
    only the tied columns) brings it back within KSG's own spread; continuous data is left bit for bit."""
    from bench import suite
    errors = {}
    for seed in range(3):
        _, _, a, b, truth = [t for t in suite.edge_case_tasks(2000, seed) if "rounded" in t[0]][0]
        with pytest.warns(RuntimeWarning, match="columns repeat values"):
            plain = float(fastmi.layer_mi(a, b, estimator="ksg", backend="torch"))
        jittered = float(fastmi.layer_mi(a, b, estimator="ksg", jitter=1e-10, backend="torch"))
        assert jittered == float(fastmi.layer_mi(a, b, estimator="ksg", jitter=1e-10, backend="torch"))
        errors.setdefault("plain", []).append(plain - truth)
        errors.setdefault("jitter", []).append(jittered - truth)
    assert sum(errors["plain"]) / 3 > 0.05 and abs(sum(errors["jitter"]) / 3) < 0.03
    a, b = shared_column_pair(300, 2, 2)
    assert float(fastmi.layer_mi(a, b, estimator="ksg", jitter=1e-3)) == float(fastmi.layer_mi(a, b, estimator="ksg"))
    with pytest.raises(ValueError, match="jitter must be a finite number >= 0"):
        fastmi.layer_mi(a, b, estimator="ksg", jitter=-1.0)
