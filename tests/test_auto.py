"""estimator="auto": the plug-in MI for discrete sides, Ross's kNN estimator (bounded by H(Y)) for one
discrete side, KSG where the joint sample's intrinsic dimension is low and it has no point masses, GCMI
for point masses, the larger of GCMI and KSG elsewhere, never GCMI on a singular joint; the
intrinsic-dimension estimate itself; mi_test with the choice made once."""
import math
import warnings

import pytest
import torch

import fastmi
from fastmi.estimators import auto, ksg


def gaussians(n, d, rho, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    return a, rho * a + math.sqrt(1 - rho ** 2) * torch.randn(n, d, generator=g, dtype=torch.float64)


def embedded(n, width, seed=0):
    """A 2-d latent z and a noisy copy z + 0.5 e, each on a smooth injective map into `width` dims (z and
    sines of random projections of it): I = I(z; z + 0.5 e) = ln 5."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    copy = z + 0.5 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return tuple(torch.cat([x, torch.sin(x @ torch.randn(2, width - 2, generator=g, dtype=torch.float64))], 1)
                 for x in (z, copy))


def chosen(a, b, k=3):
    return auto.Auto(k=k).choose(a, b, "torch")[0]


def value(a, b, estimator, **options):
    return float(fastmi.layer_mi(a, b, estimator=estimator, backend="torch", **options))


@pytest.mark.parametrize("d,low,high", [(1, 0.8, 1.2), (3, 2.5, 3.5), (8, 6.0, 9.0)])
def test_intrinsic_dimension_of_gaussians(d, low, high):
    z = torch.randn(3000, d, generator=torch.Generator().manual_seed(d), dtype=torch.float64)
    assert low < auto.intrinsic_dimension(z) < high


def test_intrinsic_dimension_of_a_curved_surface_and_degenerate_samples():
    a, _ = embedded(3000, 30)
    assert 1.5 < auto.intrinsic_dimension(ksg.standardized(a)) < 2.6
    assert auto.intrinsic_dimension(torch.zeros(100, 3, dtype=torch.float64)) == math.inf  # every row a duplicate
    z = torch.randn(2000, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    z[:100] = z[100:200]  # 5% duplicated rows: left out, not read as a zero-dimensional sample
    assert 9.0 < auto.intrinsic_dimension(z) < 13.0
    assert auto.intrinsic_dimension(torch.randn(10, 2, dtype=torch.float64)) == math.inf  # N <= neighbours


def test_low_dimensional_joints_take_ksg_exactly():
    for a, b in (gaussians(1000, 1, 0.6), embedded(1000, 25)):
        assert chosen(a, b) == "ksg"
        assert value(a, b, "auto") == value(a, b, "ksg") and value(a, b, "auto", k=5) == value(a, b, "ksg", k=5)


def test_high_dimensional_joints_take_the_larger_and_point_masses_gcmi():
    a, b = gaussians(1000, 10, 0.5)
    assert chosen(a, b) == "larger" and value(a, b, "auto") == max(value(a, b, "gcmi"), value(a, b, "ksg"))
    relu = a[:, :1].relu(), b[:, :1].relu()  # a quarter of the rows are (0, 0): eps = 0 for KSG
    assert chosen(*relu) == "gcmi" and value(*relu, "auto") == value(*relu, "gcmi")
    assert chosen(a[:5, :1], b[:5, :1], k=5) == "gcmi"  # k >= N: KSG cannot run


def test_auto_beats_ksg_where_ksg_fails_and_matches_it_where_it_works():
    a, b = gaussians(2000, 20, 0.5)  # truth 2.88 nats
    truth = -10 * math.log(0.75)
    assert abs(value(a, b, "auto") - truth) < 0.1 < truth - value(a, b, "ksg")
    x, y = embedded(2000, 25)  # GCMI counts the sine features as extra channels
    assert abs(value(x, y, "auto") - math.log(5)) < 0.15 and value(x, y, "gcmi") > math.log(5) + 0.3


def test_mi_test_uses_the_choice_of_the_unpermuted_data():
    relu = tuple(x[:, :2].relu() for x in gaussians(300, 2, 0.3))
    for a, b, name in ((*gaussians(300, 1, 0.3), "ksg"), (*relu, "gcmi")):
        result = fastmi.mi_test(a, b, estimator="auto", permutations=10, seed=3, backend="torch")
        same = fastmi.mi_test(a, b, estimator=name, permutations=10, seed=3, backend="torch")
        assert (result.estimate, result.null_mean, result.p_value) == (same.estimate, same.null_mean, same.p_value)
        assert result.estimator == "auto"
    a, b = gaussians(300, 12, 0.2)  # "larger": every surrogate is the larger of its two estimates too
    result = fastmi.mi_test(a, b, estimator="auto", permutations=20, seed=3, backend="torch")
    both = [fastmi.mi_test(a, b, estimator=name, permutations=20, seed=3, backend="torch") for name in ("gcmi", "ksg")]
    assert result.estimate == max(r.estimate for r in both)
    assert result.null_mean >= max(r.null_mean for r in both)


def clusters(n, seed):
    from bench import suite
    a, y, truth = suite.labelled_clusters(n, torch.Generator().manual_seed(seed))
    return a, y, truth


def test_one_hot_labels_take_ross_and_stay_below_the_label_entropy():
    """The first-day case: auto on (layer, one-hot labels) picked GCMI (duplicates) and returned more than
    H(Y). Now Ross's estimator: near the truth, never above the labels' entropy, with either side first."""
    a, y, truth = clusters(1500, seed=41)
    entropy = auto.entropy(y.argmax(1))
    assert chosen(a, y) == "labels" and chosen(y, a) == "labels"
    estimate = value(a, y, "auto")
    assert abs(estimate - truth) < 0.15 and estimate <= float(entropy) + 1e-12
    assert value(y, a, "auto") == pytest.approx(estimate, abs=1e-12)
    # the bound binds where kNN counts would pass it: a layer that is a noisy copy of the labels
    copy = y + 1e-3 * torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert value(copy, y, "auto") == pytest.approx(float(entropy), abs=1e-9)


def test_ross_matches_scikit_learn_and_its_published_case():
    """scikit-learn's own test of its discrete-continuous estimator (test_compute_mi_cd): X ~ Bernoulli,
    Y | X = 0 ~ U(-1, 1), Y | X = 1 ~ U(0, 2), I = H(Y) - ln 2 in closed form, within 10%; and the same
    number as mutual_info_classif (which scales y and jitters it by 1e-10)."""
    import numpy as np
    from sklearn.feature_selection import mutual_info_classif
    rng = np.random.RandomState(0)  # their sampling, as in their test
    for p in (0.3, 0.5, 0.7):
        x = rng.uniform(size=1000) > p
        y = np.empty(1000)
        y[~x] = rng.uniform(-1, 1, size=int((~x).sum()))
        y[x] = rng.uniform(0, 2, size=int(x.sum()))
        theory = -0.5 * ((1 - p) * math.log(0.5 * (1 - p)) + p * math.log(0.5 * p) + math.log(0.5)) - math.log(2)
        for k in (3, 5, 7):
            estimate = value(x.astype(float), y, "auto", k=k)
            assert estimate == pytest.approx(theory, rel=0.1)
            peer = mutual_info_classif(y[:, None], x.astype(int), n_neighbors=k, random_state=0)[0]
            assert estimate == pytest.approx(peer, abs=1e-6)


def test_two_discrete_sides_take_the_plug_in_mi():
    from sklearn.metrics import mutual_info_score
    g = torch.Generator().manual_seed(5)
    u = torch.randint(0, 4, (800,), generator=g)
    v = (u + torch.randint(0, 2, (800,), generator=g)) % 5
    a, b = torch.nn.functional.one_hot(u).double(), v.double()[:, None]
    assert chosen(a, b) == "plug-in"
    assert value(a, b, "auto") == pytest.approx(mutual_info_score(u.numpy(), v.numpy()), abs=1e-12)


def test_even_dependence_is_seen():
    """dcor's own test_function_variable (b = sin(a) + 3 a^2 per coordinate, 10-d, N = 100): a rank
    correlation sees nothing of the even part, so GCMI alone gave p = 0.2; dcor, KSG and now auto 1/300."""
    import numpy as np
    a = np.random.RandomState(0).multivariate_normal(np.zeros(10), np.eye(10), size=100)
    b = np.sin(a) + 3 * a ** 2
    result = fastmi.mi_test(a, b, estimator="auto", permutations=299, seed=0, backend="torch")
    assert result.p_value < 0.01 < fastmi.mi_test(a, b, estimator="gcmi", permutations=299, seed=0).p_value
    assert chosen(torch.from_numpy(a), torch.from_numpy(b)) == "larger"


def test_a_singular_joint_never_takes_gcmi():
    """N <= Da + Db: GCMI's shrunk estimate is meaningless (0 or 50 nats on a trained CNN); KSG instead,
    and no singular-joint warning."""
    a, b = gaussians(30, 20, 0.5)
    assert chosen(a, b) == "ksg"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert value(a, b, "auto") == value(a, b, "ksg")


def test_bad_options():
    a, b = gaussians(50, 1, 0.5)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        value(a, b, "auto", k=0)
    with pytest.raises(TypeError, match=r"estimator='auto' takes the options \['k'\]"):
        value(a, b, "auto", sigma=1.0)
    with pytest.raises(ValueError, match="group= is not supported by estimator='auto'"):
        value(a, b, "auto", group=object())
