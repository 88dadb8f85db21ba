"""fastmi.hsic, fastmi.cka, fastmi.distance_correlation: against dense float64 references, gradients,
the properties each measure must have, bad input."""
import math

import numpy as np
import pytest
import torch

import fastmi
from fastmi import bandwidth, reference
from fastmi.measures import pair_sums
from fastmi.significance import row_permutations

pytestmark = pytest.mark.kernels  # they run the Triton kernels: CI reruns them on other tritons

TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


def dependent(n, da, db, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, da, generator=g, dtype=torch.float64)
    b = torch.tanh(a[:, :1] * torch.ones(1, db, dtype=torch.float64)) + 0.5 * torch.randn(n, db, generator=g,
                                                                                          dtype=torch.float64)
    return a.to(dtype), b.to(dtype)


def median_sigma(x):
    """The "median" bandwidth as fastmi takes it: from the centred rows (in float32)."""
    return float(bandwidth.median(x.shape[0], x.shape[1], x - x.mean(dim=0), fraction=1.0))


@pytest.fixture(autouse=True)
def small_tiles(monkeypatch):
    """Tiles of 16 x 48 pairs, so that every test walks several row blocks and column chunks."""
    monkeypatch.setattr(pair_sums, "ROWS", 16)
    monkeypatch.setattr(pair_sums, "CHUNK", 48)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("n", [4, 101])
def test_rbf_hsic_and_cka_equal_the_dense_reference(dtype, unbiased, n):
    a, b = dependent(n, 5, 3, dtype, seed=n)
    sa, sb = median_sigma(a), median_sigma(b)
    a64, b64 = a.double(), b.double()
    value = fastmi.hsic(a, b, unbiased=unbiased)
    assert value.dtype == dtype
    scale = float(reference.rbf_hsic_dense(a64, a64, sa, sa, unbiased)) ** 0.5  # HSIC's own size
    assert float(value) == pytest.approx(float(reference.rbf_hsic_dense(a64, b64, sa, sb, unbiased)),
                                         abs=TOL[dtype] * max(scale, 1e-3))
    assert float(fastmi.cka(a, b, sigma=(0.7, 2.0), unbiased=unbiased)) == pytest.approx(
        float(reference.cka_dense(a64, b64, 0.7, 2.0, unbiased)), abs=10 * TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("unbiased", [False, True])
def test_linear_cka_equals_the_dense_reference(dtype, unbiased):
    a, b = dependent(120, 7, 4, dtype)
    assert float(fastmi.cka(a, b, kernel="linear", unbiased=unbiased)) == pytest.approx(
        float(reference.cka_dense(a.double(), b.double(), unbiased=unbiased)), abs=10 * TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_distance_correlation_equals_the_dense_reference(dtype):
    a, b = dependent(150, 4, 2, dtype)
    value = fastmi.distance_correlation(a, b)
    assert value.dtype == dtype
    assert float(value) == pytest.approx(float(reference.distance_correlation_dense(a.double(), b.double())),
                                         abs=10 * TOL[dtype])


@pytest.mark.parametrize("measure", [
    lambda a, b: fastmi.hsic(a, b, sigma=1.1),
    lambda a, b: fastmi.hsic(a, b, sigma=(0.8, 1.5), unbiased=True),
    lambda a, b: fastmi.cka(a, b, sigma=1.0),
    lambda a, b: fastmi.cka(a, b, kernel="linear", unbiased=True),
    fastmi.distance_correlation,
])
def test_gradcheck(measure):
    a, b = dependent(40, 3, 2)
    assert torch.autograd.gradcheck(measure, (a.requires_grad_(), b.requires_grad_()))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gradients_equal_the_dense_references(dtype):
    a, b = dependent(90, 3, 2, dtype)
    cases = [(lambda x, y: fastmi.cka(x, y, sigma=(1.0, 0.6)), lambda x, y: reference.cka_dense(x, y, 1.0, 0.6)),
             (fastmi.distance_correlation, reference.distance_correlation_dense)]
    for fast, dense in cases:
        got = _grads(fast, a, b)
        want = _grads(dense, a.double(), b.double())
        for g, w in zip(got, want):
            assert g.dtype == dtype
            assert float((g.double() - w).abs().max()) <= 10 * TOL[dtype] * max(1.0, float(w.abs().max()))


def _grads(fn, a, b):
    a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
    return torch.autograd.grad(fn(a, b), (a, b))


def test_duplicate_rows_give_finite_distance_gradients():
    a, b = dependent(30, 3, 2)
    a, b = torch.cat([a, a[:10]]).requires_grad_(), torch.cat([b, b[:10]]).requires_grad_()
    value = fastmi.distance_correlation(a, b)
    grads = torch.autograd.grad(value, (a, b))
    assert all(bool(g.isfinite().all()) for g in grads)
    assert float(value.detach()) == pytest.approx(float(reference.distance_correlation_dense(a.detach(), b.detach())),
                                         abs=1e-10)


def test_unbiased_hsic_is_zero_on_average_for_independent_data():
    g = torch.Generator().manual_seed(3)
    values = [float(fastmi.hsic(torch.randn(60, 2, generator=g, dtype=torch.float64),
                                torch.randn(60, 2, generator=g, dtype=torch.float64), unbiased=True))
              for _ in range(40)]
    biased = [float(fastmi.hsic(torch.randn(60, 2, generator=g, dtype=torch.float64),
                                torch.randn(60, 2, generator=g, dtype=torch.float64))) for _ in range(10)]
    assert abs(np.mean(values)) < 3 * np.std(values) / math.sqrt(40) and min(biased) > 0
    assert min(values) < 0  # docs/measures.md: unbiased HSIC and CKA can be negative
    a, b = torch.randn(60, 2, generator=g, dtype=torch.float64), torch.randn(60, 2, generator=g, dtype=torch.float64)
    assert np.sign(float(fastmi.cka(a, b, unbiased=True))) == np.sign(float(fastmi.hsic(a, b, unbiased=True)))


def test_cka_of_a_layer_with_itself_is_one_and_linear_cka_ignores_rotations_and_scale():
    a, b = dependent(200, 6, 6)
    assert float(fastmi.cka(a, a)) == pytest.approx(1.0, abs=1e-12)
    assert float(fastmi.cka(a, a, kernel="linear", unbiased=True)) == pytest.approx(1.0, abs=1e-12)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    for unbiased in (False, True):
        base = float(fastmi.cka(a, b, kernel="linear", unbiased=unbiased))
        assert float(fastmi.cka(3.0 * a @ q, b, kernel="linear", unbiased=unbiased)) == pytest.approx(base, abs=1e-12)


def test_distance_correlation_is_one_for_a_similarity_map_and_ranges_in_0_1():
    a, b = dependent(200, 4, 4)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    assert float(fastmi.distance_correlation(a, 2.5 * a @ q + 7.0)) == pytest.approx(1.0, abs=1e-12)
    assert 0.0 < float(fastmi.distance_correlation(a, b)) < 1.0


@pytest.mark.parametrize("measure", [fastmi.hsic, fastmi.cka, fastmi.distance_correlation])
def test_an_offset_far_from_zero_changes_nothing_in_float32(measure):
    a, b = dependent(300, 4, 2, torch.float32)
    assert float(measure(a + 1e4, b - 3e3)) == pytest.approx(float(measure(a, b)), rel=1e-4)


def test_constant_inputs():
    a, _ = dependent(50, 3, 2)
    constant = torch.ones(50, 2, dtype=torch.float64)
    a.requires_grad_()
    value = fastmi.distance_correlation(a, constant)
    value.backward()
    assert float(value.detach()) == 0.0 and bool((a.grad == 0).all())
    a = a.detach()
    with pytest.warns(RuntimeWarning, match="cka: b is constant"):
        assert math.isnan(float(fastmi.cka(a, constant)))


def test_array_likes_give_floats():
    a, b = dependent(40, 2, 2)
    value = fastmi.cka(a.numpy(), b.numpy().tolist())
    assert isinstance(value, float) and value == pytest.approx(float(fastmi.cka(a, b)), abs=1e-12)


@pytest.mark.parametrize("call,error,match", [
    (lambda a, b: fastmi.hsic(a, b[:20]), ValueError, r"same number of samples .*shape \(30, 3\).*shape \(20, 2\)"),
    (lambda a, b: fastmi.hsic(a[:3], b[:3], unbiased=True), ValueError, "needs N >= 4 rows, got N = 3"),
    (lambda a, b: fastmi.cka(a, b, kernel="poly"), ValueError, "kernel must be one of"),
    (lambda a, b: fastmi.cka(a, b, sigma=0.0), ValueError, "sigma must be positive and finite, got 0.0"),
    (lambda a, b: fastmi.hsic(a, b, sigma=-1.0), ValueError, "sigma must be positive"),
    (lambda a, b: fastmi.hsic(a, b, sigma="scott"), ValueError, "'scott' is a rule of the KDE"),
    (lambda a, b: fastmi.hsic(a, b, sigma=(1.0, 2.0, 3.0)), ValueError, r"one spec per input \(2\)"),
    (lambda a, b: fastmi.hsic(a, b, unbiased=1), TypeError, "unbiased must be a bool"),
    (lambda a, b: fastmi.distance_correlation(a.clone().fill_(math.nan), b), ValueError, "a contains NaN"),
    (lambda a, b: fastmi.cka(a, b, backend="cuda"), ValueError, "backend must be one of"),
    (lambda a, b: fastmi.hsic(a, b, backend="triton"), TypeError, "backend='triton' takes float32"),
])
def test_bad_input(call, error, match):
    a, b = dependent(30, 3, 2)
    with pytest.raises(error, match=match):
        call(a, b)


@pytest.mark.parametrize("kernel,unbiased", [("rbf", False), ("rbf", True), ("linear", False), ("linear", True)])
def test_cka_matrix_is_every_pairs_cka_from_one_pass(kernel, unbiased):
    g = torch.Generator().manual_seed(5)
    layers = [torch.randn(80, 4, generator=g, dtype=torch.float64)]
    for width in (3, 6, 2):
        layers.append(torch.tanh(layers[-1] @ torch.randn(layers[-1].shape[1], width, generator=g,
                                                           dtype=torch.float64)))
    matrix = fastmi.cka_matrix(layers, kernel=kernel, unbiased=unbiased)
    assert matrix.shape == (4, 4) and torch.allclose(matrix, matrix.T, atol=1e-12)
    assert torch.allclose(matrix.diagonal(), torch.ones(4, dtype=torch.float64), atol=1e-12)
    for m in range(4):
        for k in range(m + 1, 4):
            pair = fastmi.cka(layers[m], layers[k], kernel=kernel, unbiased=unbiased)
            assert float(matrix[m, k]) == pytest.approx(float(pair), abs=1e-12)
            if kernel == "rbf":
                sa, sb = median_sigma(layers[m]), median_sigma(layers[k])
                want = reference.cka_dense(layers[m], layers[k], sa, sb, unbiased)
            else:
                want = reference.cka_dense(layers[m], layers[k], unbiased=unbiased)
            assert float(matrix[m, k]) == pytest.approx(float(want), abs=1e-10)


def test_cka_matrix_gradients_and_a_constant_layer():
    a, b = dependent(40, 3, 2)
    c = torch.sin(a[:, :2])
    assert torch.autograd.gradcheck(lambda x, y, z: fastmi.cka_matrix([x, y, z], sigma=[1.0, 0.8, 1.3]).sum(),
                                    (a.requires_grad_(), b.requires_grad_(), c.requires_grad_()))
    with pytest.warns(RuntimeWarning, match=r"cka: activations\[1\] is constant"):
        matrix = fastmi.cka_matrix([a.detach(), torch.ones(40, 2, dtype=torch.float64), b.detach()])
    assert bool(matrix[1].isnan().all()) and bool(matrix[:, 1].isnan().all()) and not bool(matrix[0, 2].isnan())
    with pytest.raises(ValueError, match=r"one spec per input \(3\)"):
        fastmi.cka_matrix([a, b, c], sigma=(1.0, 2.0))


def test_minibatch_cka_averages_unbiased_hsic_over_batches():
    a, b = dependent(400, 5, 3)
    acc = fastmi.MinibatchCKA(kernel="linear")
    for p in row_permutations(400, 1, 0)[0].split(100):
        acc.update([a[p], b[p], a[p, :2]])
    assert acc.batches == 4 and acc.value().shape == (3, 3)
    def linear(x):
        x = x - x.mean(0)
        return x @ x.T
    hsics = [[reference.hsic_dense(linear(x[p]), linear(y[p]), unbiased=True) for p in
              row_permutations(400, 1, 0)[0].split(100)] for x, y in ((a, b), (a, a), (b, b))]
    cross, self_a, self_b = (sum(h) / 4 for h in hsics)
    want = cross / (self_a * self_b).sqrt()
    assert float(acc.value()[0, 1]) == pytest.approx(float(want), abs=1e-12)
    assert abs(float(acc.value()[0, 1]) - float(fastmi.cka(a, b, kernel="linear", unbiased=True))) < 0.1
    with pytest.raises(ValueError, match="same layers: 3 before, 2 now"):
        acc.update([a[:50], b[:50]])
    with pytest.raises(RuntimeError, match="before any update"):
        fastmi.MinibatchCKA().value()


def test_minibatch_cka_says_which_layer_has_no_variance():
    a, b = dependent(64, 3, 2)
    acc = fastmi.MinibatchCKA()
    acc.update([a, torch.zeros(64, 2, dtype=torch.float64), b])
    with pytest.warns(RuntimeWarning, match=r"layers \[1\] have no variance"):
        value = acc.value()
    assert bool(value[1].isnan().all()) and not bool(value[0, 2].isnan())
    with pytest.raises(TypeError, match="activations must be a non-empty list"):
        acc.update(a)


# ----------------------------------------------------------------------- the Triton kernels (kernels/gram.py)

def _pair_matrix(x, distance):
    d = torch.cdist(x.double(), x.double())
    return d if distance else torch.exp2(-d.square())


@pytest.mark.parametrize("distance", [False, True])
@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 2e-6), (torch.float16, 2e-4)])
def test_kernel_row_sums_and_gradients_equal_float64_references(distance, dtype, rtol, gen):
    """kernels.gram on the operands as the kernels see them (rounded to dtype), against float64 on the
    same rounded values: a row range, several column splits and padded tiles (N = 150)."""
    x = (torch.randn(150, 20, generator=gen) * 0.3).to(dtype)
    y = (torch.randn(150, 7, generator=gen) * 0.5).to(dtype)
    p, q = _pair_matrix(x, distance), _pair_matrix(y, distance)
    want = torch.stack([p.sum(1), q.sum(1), (p * p).sum(1), (p * q).sum(1), (q * q).sum(1)])[:, 10:140]
    got = fastmi.kernels.gram.row_sums(x, y, distance, rows=(10, 140), splits=3)
    torch.testing.assert_close(got.double(), want, rtol=rtol, atol=rtol * float(want.abs().max()))
    c, f = (0.3, -0.7, 0.2), torch.randn(2, 150, generator=gen)
    def slope(m):
        return torch.where(m > 0, 1 / m.clamp_min(1e-300), 0.0) if distance else m
    w_x = (c[0] * p + c[1] * q + f[0, :, None].double() + f[0, None, :].double()) * slope(p)
    w_y = (c[1] * p + c[2] * q + f[1, :, None].double() + f[1, None, :].double()) * slope(q)
    for got, w, v in zip(fastmi.kernels.gram.pair_grads(x, y, c, f, distance, rows=(10, 140), splits=3),
                         (w_x, w_y), (x.double(), y.double())):
        want = (v * w.sum(1, keepdim=True) - w @ v)[10:140]
        torch.testing.assert_close(got.double(), want, rtol=0, atol=10 * rtol * float(want.abs().max()))


@pytest.mark.parametrize("measure", [
    lambda a, b, backend: fastmi.hsic(a, b, backend=backend),
    lambda a, b, backend: fastmi.hsic(a, b, unbiased=True, sigma=(0.8, "median"), backend=backend),
    lambda a, b, backend: fastmi.cka(a, b, backend=backend),
    lambda a, b, backend: fastmi.distance_correlation(a, b, backend=backend),
    lambda a, b, backend: fastmi.cka_matrix([a, b, a[:, :2] * b[:, :1]], backend=backend).sum(),
    lambda a, b, backend: fastmi.cka_matrix([a], backend=backend).sum(),
])
def test_the_triton_backend_equals_the_dense_reference(measure):
    """float32 through the kernels (the interpreter here) against float64 on the torch path, values and
    gradients; one layer alone (cka_matrix of one) pairs with itself."""
    a, b = dependent(130, 6, 3, torch.float32, seed=3)
    got = _grads_and_value(measure, a, b, "triton")
    want = _grads_and_value(measure, a.double(), b.double(), "torch")
    for g, w in zip(got, want):
        assert float((g.double() - w).abs().max()) <= 10 * TOL[torch.float32] * max(1.0, float(w.abs().max()))


def _grads_and_value(measure, a, b, backend):
    a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
    value = measure(a, b, backend)
    return (value.detach(), *torch.autograd.grad(value, (a, b), allow_unused=True, materialize_grads=True))


def test_fp16_gradients_keep_small_weights():
    """The measures' gradient weights scale like 1 / N^2 (and 1 / dVar for dCor): the launcher hands the
    kernel W in units of its largest coefficient, or fp16 MMA operands would round them to 0 (a 100%
    gradient error here before). Against float64 on the same fp16-rounded inputs."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(256, 16, generator=g) * 30
    b = torch.tanh(a[:, :4] / 30) * 30 + 10 * torch.randn(256, 4, generator=g)
    got = _grads_and_value(lambda x, y, backend: fastmi.distance_correlation(x, y, backend=backend), a.half(),
                           b.half(), "triton")
    want = _grads_and_value(lambda x, y, backend: fastmi.distance_correlation(x, y, backend=backend),
                            a.half().double(), b.half().double(), "torch")
    assert float(got[0]) == pytest.approx(float(want[0]), abs=1e-5)
    for g, w in zip(got[1:], want[1:]):
        assert float((g.double() - w).norm() / w.norm()) < 1e-2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_run_the_kernels_in_their_dtype(dtype, monkeypatch):
    """fp16/bf16 inputs: operands in their dtype (bf16 as float32 under the interpreter, whose bf16
    arithmetic is wrong), a float32 result within the operands' rounding of the float64 value."""
    seen = []
    launch = fastmi.kernels.gram.row_sums
    monkeypatch.setattr(fastmi.kernels.gram, "row_sums",
                        lambda x, *args, **kw: seen.append(x.dtype) or launch(x, *args, **kw))
    a, b = dependent(100, 4, 2, dtype, seed=5)
    value = fastmi.cka(a, b)
    assert value.dtype == torch.float32 and seen == [torch.float16 if dtype == torch.float16 else torch.float32]
    assert float(value) == pytest.approx(float(fastmi.cka(a.double(), b.double())), abs=5e-3)


def test_autocast_changes_nothing():
    """The sums need full-precision GEMMs: autocast (bfloat16 on the CPU here) is switched off inside."""
    a, b = dependent(120, 6, 3, torch.float32, seed=4)
    measures = [lambda: fastmi.cka(a, b, backend="torch"), lambda: fastmi.distance_correlation(a, b, backend="torch"),
                lambda: fastmi.cka_matrix([a, b], kernel="linear")[0, 1]]
    plain = [float(m()) for m in measures]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert [float(m()) for m in measures] == plain


def test_the_kernels_add_tile_sums_in_float64():
    """HSIC of independent data is a small difference of the pass's sums: the forward adds its per-tile
    float32 sums across tiles in float64, so the float32 result is the float64 one rounded (a float32
    running sum over 32 tiles was 3e-7 off here)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1024, 8, generator=g), torch.randn(1024, 8, generator=g)
    got = float(fastmi.hsic(a, b, sigma=2.0, backend="triton"))
    want = float(fastmi.hsic(a.double(), b.double(), sigma=2.0))
    assert abs(got - want) <= 1.5e-7 * want


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_hsic_terms_are_the_listed_pairs_hsic_from_one_pass(backend, monkeypatch):
    """The Regularizer's HSIC terms: one pass, the listed pairs only (on the Triton path one launch each)."""
    layers = [dependent(70, 3, 2, torch.float32, seed=s)[s % 2] for s in range(4)]
    pairs = [(0, 1), (1, 2), (2, 3)]
    launched = []
    launch = fastmi.kernels.gram.row_sums
    monkeypatch.setattr(fastmi.kernels.gram, "row_sums", lambda *a, **k: launched.append(1) or launch(*a, **k))
    values = fastmi.measures.hsic_terms(layers, pairs, sigma=[0.8, "median", 1.2, "median"], unbiased=True,
                                          backend=backend)
    want = [float(fastmi.hsic(layers[a], layers[b], sigma=([0.8, "median", 1.2, "median"][a],
                                                           [0.8, "median", 1.2, "median"][b]), unbiased=True,
                              backend=backend)) for a, b in pairs]
    assert values.tolist() == pytest.approx(want, rel=1e-5, abs=1e-7)
    if backend == "triton":
        assert len(launched) == len(pairs) * 2  # the terms' launches, then the per-pair calls'
    with pytest.raises(ValueError, match=r"leave layers \[3\] out"):
        pair_sums._launch_pairs(4, [(0, 1), (1, 2)])


@pytest.mark.parametrize("n", [40, 300])
def test_columns_are_centred_on_the_mean_unless_an_outlier_drags_it(n):
    """bandwidth.column_centres: the mean (one pass) for ordinary columns, the median where a value sits
    beyond min(8, sqrt(N) / 2) stds (one outlier among N rows reaches only ~sqrt(N) stds), per column."""
    from fastmi import bandwidth
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64) + 5.0
    assert torch.equal(bandwidth.column_centres(x), x.mean(0))
    x[4, 1] = 1e7
    centres = bandwidth.column_centres(x)
    assert centres[1] == x[:, 1].median() and torch.equal(centres[[0, 2]], x.mean(0)[[0, 2]])
    z, u = torch.randn(20_000, 1, generator=g), torch.rand(20_000, 1, generator=g)
    heavy = z / (-u.log()).sqrt()  # Student t, 2 degrees of freedom (chi2_2 = -2 ln U): heavy tails take the median
    assert bandwidth.column_centres(heavy) == heavy.median()


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("outlier", [1e5, 1e7])
def test_float32_keeps_its_accuracy_with_one_outlier(backend, outlier):
    """The first-day case: one row at 1e7 in an N = 500 column took float32 HSIC to -91% of float64 (the
    mean centring put every other row far from 0, and the Gram-matrix distances lost them). Centred on
    the column's median there, every measure and the KDE stay within docs/measures.md's float32 tolerance."""
    g = torch.Generator().manual_seed(11)
    a = torch.randn(300, 1, generator=g, dtype=torch.float64)
    b = a + 0.5 * torch.randn(300, 1, generator=g, dtype=torch.float64)
    a[7, 0] = outlier
    for measure in (fastmi.hsic, fastmi.cka, fastmi.distance_correlation, fastmi.layer_mi):
        exact = float(measure(a, b, backend="torch"))
        single = float(measure(a.float(), b.float(), backend=backend))
        assert abs(single - exact) <= 2e-5 * abs(exact), (measure.__name__, single, exact)


def test_median_bandwidth_is_numpys_median_in_the_inputs_precision():
    """The first-day case: hsic's sigma="median" came from float32 Gram distances even for float64 input
    (1.52 instead of 0.79 with an outlier at 1e7) and took the lower middle value. Now float64 for
    float64, and the mean of the two middle values (numpy, hyppo); up to 256 rows every pair counts."""
    import numpy as np
    from scipy.spatial.distance import pdist

    from fastmi.measures.dependence import _bandwidth
    g = torch.Generator().manual_seed(4)
    x = torch.randn(200, 3, generator=g, dtype=torch.float64)
    x[5] = 1e7
    centred = x - x.median(0).values
    assert _bandwidth(centred, "median") == pytest.approx(float(np.median(pdist(x.numpy()))), rel=1e-12)
