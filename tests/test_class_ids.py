"""Integer class ids (N,) on one side, read as such by every estimator that measures with them: KSG takes
Ross's estimator (as scikit-learn's mutual_info_classif), GCMI the class-conditional Gaussian form (Ince et
al. 2017), the KDE label_mi; information_plane_point uses them all (docs/design.md, "Labels")."""
import numpy as np
import pytest
import torch

import fastmi
from fastmi import reference
from fastmi.estimators import ksg
from fastmi.significance import row_permutations


def clusters(n=600, d=2, classes=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = y[:, None].to(dtype) * 1.5 + torch.randn(n, d, generator=g, dtype=dtype)
    return x, y


@pytest.mark.parametrize("d", [1, 3])
def test_ksg_with_class_ids_is_ross_as_scikit_learn_computes_it(d):
    from sklearn.feature_selection import mutual_info_classif
    x, y = clusters(d=d)
    ours = float(fastmi.layer_mi(x, y, estimator="ksg", k=3, jitter=1e-10))
    assert float(fastmi.layer_mi(y, x, estimator="ksg", k=3, jitter=1e-10)) == ours  # either side
    if d == 1:  # scikit-learn estimates per feature: one feature is the joint
        peer = mutual_info_classif(x.numpy(), y.numpy(), n_neighbors=3, random_state=0)[0]
        assert ours == pytest.approx(peer, abs=1e-6)
    assert 0 < ours <= float(ksg.entropy(y)) + 1e-12


@pytest.mark.parametrize("d,bias_correction", [(1, True), (3, True), (3, False)])
def test_gcmi_with_class_ids_equals_the_dense_reference(d, bias_correction):
    x, y = clusters(d=d, seed=d)
    ours = float(fastmi.layer_mi(x, y, estimator="gcmi", bias_correction=bias_correction))
    expected = reference.gcmi_class_conditional_dense(x.numpy(), y.numpy(), bias_correction)
    assert ours == pytest.approx(expected, abs=1e-10)
    assert float(fastmi.layer_mi(y, x, estimator="gcmi", bias_correction=bias_correction)) == ours


def test_class_id_estimates_are_near_zero_for_unrelated_labels_and_near_the_truth_for_clusters():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(4000, 1, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (4000,), generator=g)
    for estimator in ("ksg", "gcmi"):
        assert abs(float(fastmi.layer_mi(x, y, estimator=estimator))) < 0.01
    # two classes, N(-1, 1) and N(1, 1): I = h(mixture) - h(N(0, 1)), by quadrature
    y = torch.randint(0, 2, (4000,), generator=g)
    x = (2.0 * y - 1.0)[:, None] + torch.randn(4000, 1, generator=g, dtype=torch.float64)
    grid = np.linspace(-9, 9, 20001)
    mixture = 0.5 * (np.exp(-(grid - 1) ** 2 / 2) + np.exp(-(grid + 1) ** 2 / 2)) / np.sqrt(2 * np.pi)
    truth = -np.trapezoid(mixture * np.log(mixture), grid) - 0.5 * np.log(2 * np.pi * np.e)
    assert float(fastmi.layer_mi(x, y, estimator="ksg")) == pytest.approx(truth, abs=0.03)
    # one dimension: the Gaussian copula bounds the MI from below
    assert float(fastmi.layer_mi(x, y, estimator="gcmi")) < truth + 0.02


@pytest.mark.parametrize("estimator", ["ksg", "gcmi"])
def test_mi_test_with_class_ids_permutes_as_separate_calls_would(estimator):
    x, y = clusters(n=300, seed=4)
    order = row_permutations(300, 5, 0)
    from fastmi.estimators import ESTIMATORS
    for a, b in ((x, y[:, None]), (y[:, None], x)):
        estimate, null = ESTIMATORS[estimator]().with_null(a, b, order, "torch")
        separate = torch.stack([fastmi.layer_mi(a, b[p], estimator=estimator) for p in order])
        assert torch.allclose(null, separate, rtol=0, atol=1e-12)
    assert fastmi.mi_test(x, y, estimator=estimator, permutations=19).p_value == 1 / 20


def test_gcmi_refuses_classes_too_small_for_their_covariance():
    x, y = clusters(n=40, d=6, classes=8, seed=1)
    with pytest.raises(ValueError, match=r"more than d \+ 1 = 7 rows in every class .* use estimator='ksg'"):
        fastmi.layer_mi(x, y, estimator="gcmi")


@pytest.mark.parametrize("estimator", ["ksg", "gcmi"])
def test_integer_inputs_that_are_not_class_ids_are_refused_by_name(estimator):
    x, y = clusters()
    with pytest.raises(TypeError, match=r"class ids, one column \(N,\), got \(600, 2\)"):
        fastmi.layer_mi(x, torch.stack([y, y], 1), estimator=estimator)
    with pytest.raises(TypeError, match="both a and b are integer"):
        fastmi.layer_mi(y, y, estimator=estimator)


@pytest.mark.filterwarnings("ignore:binned MI")
@pytest.mark.parametrize("estimator", ["kde", "ksg", "gcmi", "auto", "binned"])
def test_information_plane_reads_class_ids_with_every_estimator(estimator):
    """The house's case: with integer labels only "binned" worked (TypeError: b must have a floating dtype)."""
    x, y = clusters(n=400, d=4, seed=2, dtype=torch.float32)
    h = torch.tanh(x @ torch.randn(4, 3, generator=torch.Generator().manual_seed(0)))
    i_xt, i_ty = fastmi.information_plane_point(x, [h], y, estimator=estimator)
    direct = fastmi.label_mi(h, y) if estimator == "kde" else fastmi.layer_mi(h, y, estimator=estimator)
    assert i_ty == [pytest.approx(float(direct))] and len(i_xt) == 1
    assert 0.05 < i_ty[0] <= float(ksg.entropy(y)) + 1e-6


def test_information_plane_refuses_class_ids_for_unit_by_name():
    x, y = clusters(n=100, d=2, dtype=torch.float32)
    with pytest.raises(ValueError, match="estimator='unit' .* has no form for class ids"):
        fastmi.information_plane_point(x, [x], y, estimator="unit")
