"""estimator="auto": KSG where the joint sample's intrinsic dimension is low and it has no point masses,
GCMI elsewhere; the intrinsic-dimension estimate itself; mi_test with the choice made once."""
import math

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


def test_high_dimensional_joints_and_point_masses_take_gcmi():
    a, b = gaussians(1000, 10, 0.5)
    assert chosen(a, b) == "gcmi" and value(a, b, "auto") == value(a, b, "gcmi")
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
    for a, b, name in ((*gaussians(300, 1, 0.3), "ksg"), (*gaussians(300, 12, 0.2), "gcmi")):
        result = fastmi.mi_test(a, b, estimator="auto", permutations=10, seed=3, backend="torch")
        same = fastmi.mi_test(a, b, estimator=name, permutations=10, seed=3, backend="torch")
        assert (result.estimate, result.null_mean, result.p_value) == (same.estimate, same.null_mean, same.p_value)
        assert result.estimator == "auto"


def test_bad_options():
    a, b = gaussians(50, 1, 0.5)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        value(a, b, "auto", k=0)
    with pytest.raises(TypeError, match=r"estimator='auto' takes the options \['k'\]"):
        value(a, b, "auto", sigma=1.0)
    with pytest.raises(ValueError, match="group= is not supported by estimator='auto'"):
        value(a, b, "auto", group=object())
