"""Compiled Triton kernels on a CUDA GPU at GPU sizes, against the float64 reference and the torch paths.

Run by bench/gpu_check.sh: TRITON_INTERPRET=0 python -m pytest -q -m gpu tests. Skipped elsewhere; the
same checks at small sizes run in the interpreter in test_kde.py, test_unit.py, test_binned.py and
test_ksg.py, test_dependence.py. Tolerances: helpers.TOL, and FlashAttention's rule for half precision: within 2x the
error of the dense torch baseline in the same dtype.
"""
import math

import pytest
import torch

import fastmi
from bench.baselines import dense_kde_mi
from fastmi import kernels
from fastmi.estimators import binned, ksg
from helpers import TOL, kde_reference, layer_pair, relative_error

pytestmark = pytest.mark.gpu


def _value_and_grads(fn, a, b):
    a = a.detach().requires_grad_()
    b = b.detach().requires_grad_()
    value = fn(a, b)
    ga, gb = torch.autograd.grad(value, (a, b))
    return float(value.detach()), ga, gb


def _errors(got, ref):
    value, ga, gb = got
    return abs(value - ref[0]), max(relative_error(ga, ref[1]), relative_error(gb, ref[2]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n,d", [(4096, 64), (4096, 512)])
def test_kde_kernels_match_reference(n, d, dtype):
    a, b = layer_pair(n, d, dtype, "cuda")
    ref = kde_reference(a, b)
    fast = _errors(_value_and_grads(lambda x, y: fastmi.layer_mi(x, y, backend="triton"), a, b), ref)
    try:
        dense = _errors(_value_and_grads(dense_kde_mi, a, b), ref)
    except (RuntimeError, NotImplementedError):  # e.g. cdist without this dtype
        dense = (0.0, 0.0)
    for error, tol, baseline in zip(fast, TOL[dtype], dense):
        assert error <= max(tol, 2 * baseline), (fast, dense)


@pytest.mark.parametrize("loo", [False, True])
def test_kde_row_ranges_and_splits_match_torch_path(loo):
    from fastmi.estimators import kde_torch
    a, b = layer_pair(3000, 48, torch.float32, "cuda")
    sums = kernels.kde.log_sums(a, b, loo)
    torch.testing.assert_close(sums, kde_torch.log_sums(a, b, loo), atol=1e-4, rtol=1e-5)
    part = kernels.kde.log_sums(a, b, loo, rows=(1000, 2100))
    torch.testing.assert_close(part, sums[:, 1000:2100], atol=1e-5, rtol=1e-5)
    gx, gy = kernels.kde.pair_grads(a, b, sums, loo)
    tx, ty = kde_torch.pair_grads(a, b, sums, loo)
    assert relative_error(gx, tx.double()) < 1e-4 and relative_error(gy, ty.double()) < 1e-4


@pytest.mark.parametrize("soft,atol", [(False, 1e-5), (True, 5e-4)])
def test_unit_mi_kernel_matches_torch_path(soft, atol):
    a, b = layer_pair(4096, 64, torch.float32, "cuda")
    fused = fastmi.unit_mi(a, b, bins=16, soft=soft, backend="triton")
    plain = fastmi.unit_mi(a, b, bins=16, soft=soft, backend="torch")
    torch.testing.assert_close(fused, plain, atol=atol, rtol=0)


def test_bin_hash_kernel_equals_torch_path():
    a, _ = layer_pair(4096, 64, torch.float32, "cuda")
    assert torch.equal(binned.row_hash(a, 30, None, "triton"), binned.row_hash(a, 30, None, "torch"))


@pytest.mark.parametrize("n,da,db,k", [(4096, 2, 2, 3), (4096, 10, 10, 3), (4096, 1, 64, 5), (3000, 3, 3, 70)])
def test_ksg_kernels_equal_torch_path(n, da, db, k):
    a, b = layer_pair(n, max(da, db), torch.float32, "cuda")
    x, y, boxes = ksg.prepared(ksg.standardized(a[:, :da]), ksg.standardized(b[:, :db]))
    got = kernels.ksg.neighbour_counts(x, y, k, ksg.ORDER_TILE, boxes)
    want = ksg.neighbour_counts_torch(x, y, k, boxes)
    assert all(torch.equal(g.to(w.dtype), w) for g, w in zip(got, want))


def test_launches_follow_the_tensors_device():
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    a, b = layer_pair(512, 16, torch.float32, "cuda:1")
    with torch.cuda.device(0):
        value = float(fastmi.layer_mi(a, b, backend="triton"))
    assert math.isclose(value, kde_reference(a, b)[0], abs_tol=2e-5)


@pytest.mark.parametrize("estimator", ["gcmi", "auto"])
def test_torch_estimators_on_cuda_equal_the_cpu(estimator):
    a, b = layer_pair(4096, 8, torch.float64, "cuda")
    assert math.isclose(float(fastmi.layer_mi(a, b, estimator=estimator)),
                        float(fastmi.layer_mi(a.cpu(), b.cpu(), estimator=estimator)), abs_tol=1e-9)


def test_kde_surrogates_on_cuda_equal_the_cpu():
    a, b = layer_pair(2048, 32, torch.float32, "cuda")
    gpu = fastmi.mi_test(a, b, estimator="kde", permutations=20)
    cpu = fastmi.mi_test(a.cpu(), b.cpu(), estimator="kde", permutations=20)
    assert abs(gpu.null_mean - cpu.null_mean) < 1e-4 and abs(gpu.estimate - cpu.estimate) < 1e-4


@pytest.mark.parametrize("measure", [fastmi.cka, fastmi.distance_correlation])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dependence_kernels_in_half_precision_match_the_reference(measure, dtype):
    """fp16/bf16 operands through the compiled kernels against float64 on the same rounded inputs: the
    operands' rounding (2^-8 relative for bf16) bounds the value to 5e-3 and the gradients to 5%."""
    a, b = layer_pair(4096, 64, dtype, "cuda")
    got = _value_and_grads(measure, a, b)
    ref = _value_and_grads(measure, a.double(), b.double())
    value_error, grad_error = _errors(got, ref)
    assert value_error < 5e-3 and grad_error < 5e-2


@pytest.mark.parametrize("measure", [fastmi.cka, fastmi.distance_correlation])
def test_dependence_measures_on_cuda_equal_the_cpu(measure):
    a, b = layer_pair(3000, 16, torch.float32, "cuda")
    x, y = a.clone().requires_grad_(), b.clone().requires_grad_()
    value = measure(x, y)
    value.backward()
    xc, yc = a.cpu().requires_grad_(), b.cpu().requires_grad_()
    expected = measure(xc, yc)
    expected.backward()
    assert abs(float(value) - float(expected)) < 1e-5
    assert relative_error(x.grad.cpu(), xc.grad) < 1e-4 and relative_error(y.grad.cpu(), yc.grad) < 1e-4


def test_auto_samples_calibrate_with_cuda_events():
    """max_samples="auto" on CUDA layers times steps with CUDA events: it freezes a row count within
    [min_samples, N] after its 17 computing calls, with a finite measured overhead."""
    from fastmi import budget
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(512, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024),
                                torch.nn.ReLU(), torch.nn.Linear(1024, 10)).cuda()
    reg = fastmi.Regularizer(model, max_samples="auto", weight=0.01)
    x = torch.randn(2048, 512, device="cuda")
    for _ in range(budget.CALLS + 1):
        (model(x).square().mean() + reg()).backward()
    assert reg.measured_overhead is not None and math.isfinite(reg.measured_overhead)
    assert 128 <= reg.samples <= 2048
