"""The launchers of kernels/: clear errors for operands they cannot take (never an assert), and the
int64-offset variants (chosen where an offset can pass 2^31 - 1) equal to the int32 ones."""
import pytest
import torch

from fastmi import kernels
from fastmi.estimators import binned, unit

pytestmark = pytest.mark.kernels  # they run the Triton kernels: CI reruns them on other tritons


def test_kde_launchers_refuse_what_they_cannot_index():
    x = torch.randn(100, 4)
    with pytest.raises(ValueError, match="2-d"):
        kernels.kde.log_sums(x[:, 0], x, False)
    with pytest.raises(ValueError, match="same rows"):
        kernels.kde.log_sums(x, x[:50], False)
    with pytest.raises(TypeError, match="dtypes"):
        kernels.kde.log_sums(x.double(), x.double(), False)
    with pytest.raises(TypeError, match="dtypes"):
        kernels.kde.log_sums(x, x.half(), False)
    with pytest.raises(ValueError, match="row-major"):
        kernels.kde.log_sums(torch.randn(4, 100).T, x, False)
    with pytest.raises(ValueError, match="rows must be a range"):
        kernels.kde.log_sums(x, x, False, rows=(50, 200))
    with pytest.raises(ValueError, match=r"\(3, 100\) float32 log-sums"):
        kernels.kde.pair_grads(x, x, torch.zeros(3, 99), False)


def test_gram_launchers_refuse_what_they_cannot_index():
    x = torch.randn(100, 4)
    with pytest.raises(ValueError, match="same rows"):
        kernels.gram.row_sums(x, x[:50], False)
    with pytest.raises(TypeError, match="dtypes"):
        kernels.gram.row_sums(x, x.half(), True)
    with pytest.raises(ValueError, match="rows must be a range"):
        kernels.gram.row_sums(x, x, False, rows=(0, 101))
    with pytest.raises(ValueError, match=r"factors must be \(2, 100\)"):
        kernels.gram.pair_grads(x, x, (1.0, 1.0, 1.0), torch.zeros(3, 100), False)


def test_histogram_and_ksg_launchers_refuse_what_they_cannot_index():
    x = torch.randn(100, 4)
    with pytest.raises(ValueError, match="column_keys"):
        kernels.binned.bin_hash(x, torch.ones(3, dtype=torch.int64), 0.0, 1.0, 4, False)
    with pytest.raises(ValueError, match="bins"):
        kernels.binned.unit_pair_mi(x, x, *[torch.zeros(4)] * 4, 200, False)
    with pytest.raises(ValueError, match="power-of-two tile"):
        kernels.ksg.neighbour_counts(x, x, 100, 64, [x[:2]] * 4)
    with pytest.raises(ValueError, match="boxes"):
        kernels.ksg.neighbour_counts(x, x, 3, 64, [x[:3]] * 4)


@pytest.mark.parametrize("loo", [False, True])
def test_kde_int64_offsets_equal_int32(loo, gen):
    x, y = torch.randn(150, 20, generator=gen), torch.randn(150, 7, generator=gen)
    narrow = kernels.kde.log_sums(x, y, loo, splits=2, wide_offsets=False)
    torch.testing.assert_close(kernels.kde.log_sums(x, y, loo, splits=2, wide_offsets=True), narrow, rtol=0, atol=0)
    for got, want in zip(kernels.kde.pair_grads(x, y, narrow, loo, splits=2, wide_offsets=True),
                         kernels.kde.pair_grads(x, y, narrow, loo, splits=2, wide_offsets=False)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("distance", [False, True])
def test_gram_int64_offsets_equal_int32(distance, gen):
    x, y = torch.randn(150, 20, generator=gen), torch.randn(150, 7, generator=gen)
    sums = [kernels.gram.row_sums(x, y, distance, splits=2, wide_offsets=w) for w in (False, True)]
    torch.testing.assert_close(*sums, rtol=0, atol=0)
    factors = torch.randn(2, 150, generator=gen)
    grads = [kernels.gram.pair_grads(x, y, (0.5, -1.0, 2.0), factors, distance, splits=2, wide_offsets=w)
             for w in (False, True)]
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_histogram_int64_offsets_equal_int32(gen):
    a, b = torch.randn(130, 5, generator=gen), torch.randn(130, 3, generator=gen)
    keys = binned.column_keys(5, a.device)
    hashes = [kernels.binned.bin_hash(a, keys, -2.0, 2.0, 8, False, wide_offsets=w) for w in (False, True)]
    assert torch.equal(*hashes)
    ranges = [r.float() for x in (a, b) for r in unit.column_ranges(x, 8, None)[1:]]
    matrices = [kernels.binned.unit_pair_mi(a, b, *ranges, 8, False, wide_offsets=w) for w in (False, True)]
    torch.testing.assert_close(*matrices, rtol=0, atol=0)


def test_offsets_are_wide_exactly_past_int32():
    from fastmi.kernels.launch import INT32_MAX, wide
    assert not wide(INT32_MAX, torch.empty(3)) and wide(INT32_MAX + 1)
