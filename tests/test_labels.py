"""fastmi.label_mi: KDE MI with discrete labels from class-conditional kernel sums."""
import math
import warnings

import pytest
import torch

import fastmi


def clustered(n, classes, spread, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    centres = torch.randn(classes, 4, generator=g, dtype=torch.float64) * spread
    return (centres[labels] + torch.randn(n, 4, generator=g, dtype=torch.float64)).to(dtype), labels


def class_conditional(a, labels, sigma):
    """(1/N) sum_i [ln sum_{j: y_j = y_i} K_ij - ln sum_j K_ij] + H(Y), dense float64 (Saxe et al. 2018)."""
    a = a.double() - a.double().mean(0)
    k = torch.exp(-torch.cdist(a, a, compute_mode="donot_use_mm_for_euclid_dist").square() / (2 * sigma ** 2))
    same = labels[:, None] == labels[None, :]
    p = torch.bincount(labels).double() / len(labels)
    p = p[p > 0]
    return float(((k * same).sum(1).log() - k.sum(1).log()).mean() - (p * p.log()).sum())


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("classes", [1, 2, 7])
def test_equals_the_class_conditional_formula(dtype, atol, classes):
    a, labels = clustered(250, classes, 1.5, dtype)
    value = fastmi.label_mi(a, labels, sigma=0.8, backend="torch")
    assert value.dtype == dtype
    assert float(value) == pytest.approx(class_conditional(a, labels, 0.8), abs=atol)


def test_separated_classes_reach_the_label_entropy_and_shuffled_ones_do_not():
    a, labels = clustered(400, 4, 30.0)
    p = torch.bincount(labels).double() / 400
    entropy = float(-(p * p.log()).sum())
    with pytest.warns(RuntimeWarning, match="within 10% of the labels' entropy"):  # near the ceiling: "check it"
        assert float(fastmi.label_mi(a, labels, sigma=1.0)) == pytest.approx(entropy, abs=1e-6)
    shuffled = labels[torch.randperm(400, generator=torch.Generator().manual_seed(1))]
    assert float(fastmi.label_mi(a, shuffled, sigma=1.0)) < 0.5 * entropy


def test_gradients():
    a, labels = clustered(40, 3, 1.0)
    assert torch.autograd.gradcheck(lambda x: fastmi.label_mi(x, labels, sigma=1.2), (a.requires_grad_(),))
    value = fastmi.label_mi(a.detach().numpy(), labels.numpy().tolist())
    assert isinstance(value, float) and math.isfinite(value)


@pytest.mark.parametrize("labels,error,match", [
    (torch.zeros(30), TypeError, "labels must be a 1-d tensor of integer class ids, got dtype torch.float32"),
    (torch.zeros(30, 2, dtype=torch.int64), TypeError, r"shape \(30, 2\)"),
    (torch.full((30,), -1), ValueError, "labels must be class ids >= 0, got -1"),
    (torch.zeros(20, dtype=torch.int64), ValueError, "same number of samples"),
])
def test_bad_labels(labels, error, match):
    a, _ = clustered(30, 2, 1.0)
    with pytest.raises(error, match=match):
        fastmi.label_mi(a, labels)


def test_label_mi_near_the_label_entropy_warns_that_bias_alone_gets_there():
    """The first-day case: 128 rows, labels unrelated to a 32-d layer, label_mi at ~90% of H(Y) and no
    word. Now a warning; at 4096 rows the same data is well below the ceiling, and silent."""
    g = torch.Generator().manual_seed(0)
    small = torch.randn(128, 32, generator=g), torch.randint(0, 10, (128,), generator=g)
    with pytest.warns(RuntimeWarning, match="within 10% of the labels' entropy"):
        fastmi.label_mi(*small, backend="torch")
    large = torch.randn(4096, 32, generator=g), torch.randint(0, 10, (4096,), generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(fastmi.label_mi(*large, backend="torch")) < 0.6 * math.log(10)


def test_leave_one_out_beyond_ln_n_warns():
    """The first-day case: loo=True at a saturated bandwidth returned -276 nats with no word."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(64, 20, generator=g)
    with pytest.warns(RuntimeWarning, match="leave-one-out MI estimate beyond"):
        value = fastmi.layer_mi(a, a + torch.randn(64, 20, generator=g), loo=True, sigma=0.05, backend="torch")
    assert abs(float(value)) > math.log(64)
