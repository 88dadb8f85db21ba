"""One contract for every registry entry, fastmi.ESTIMATORS and fastmi.MEASURES (as scikit-learn's
check_estimator and torchmetrics' MetricTester do): each entry declares what it can do (differentiable,
supports_group, compiles; an estimator also has with_null for mi_test), and this file checks that every
declared capability works and that the undeclared ones are refused with an error that names them; dtypes,
numpy inputs and bad input for all. A new entry is covered the moment it is registered."""
import math

import pytest
import torch
import torch.distributed as dist

import fastmi

ENTRIES = sorted(fastmi.ESTIMATORS) + sorted(fastmi.MEASURES)


def declared(name, capability):
    entry = fastmi.ESTIMATORS.get(name) or fastmi.MEASURES[name]
    return getattr(entry, capability)


def call(name, a, b, **options):
    if name in fastmi.MEASURES:
        return fastmi.MEASURES[name](a, b, **options)
    return fastmi.layer_mi(a, b, estimator=name, **options)


def pair(n=60, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, 3, generator=g, dtype=dtype)
    return a, a[:, :2] + 0.5 * torch.randn(n, 2, generator=g, dtype=dtype)


@pytest.fixture(autouse=True)
def quiet(recwarn):
    """Saturation, tie and small-sample warnings are each tested where they belong, not here."""
    yield


@pytest.mark.parametrize("name", ENTRIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_0d_tensor_in_the_inputs_precision_and_a_float_for_numpy(name, dtype):
    a, b = pair(dtype=dtype)
    value = call(name, a, b, backend="torch")
    assert value.shape == () and value.dtype == dtype and math.isfinite(float(value))
    plain = call(name, a.numpy(), b.numpy(), backend="torch")
    assert isinstance(plain, float) and plain == pytest.approx(float(value), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", ENTRIES)
def test_differentiable_as_declared(name):
    a, b = pair()
    a.requires_grad_()
    value = call(name, a, b, backend="torch")
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    if declared(name, "differentiable"):
        grad, = torch.autograd.grad(value, a)
        assert bool(torch.isfinite(grad).all()) and float(grad.abs().max()) > 0
        with fastmi.Regularizer(model, estimator=name, backend="torch") as reg:  # the Regularizer takes it
            model(a.detach().float())
            h1, h2 = model[0](a.detach().float()), model[2](model[1](model[0](a.detach().float())))
            term = reg()
        assert float(term) == pytest.approx(-float(call(name, h1, h2, backend="torch")), rel=1e-5, abs=1e-6)
    else:
        assert not value.requires_grad
        with pytest.raises(ValueError, match="the Regularizer needs a differentiable"):
            fastmi.Regularizer(model, estimator=name)


@pytest.fixture(scope="module")
def one_rank_group(tmp_path_factory):
    """A torch.distributed group of this process alone (gloo): group= runs its collectives for real."""
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    store = tmp_path_factory.mktemp("dist") / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield dist.group.WORLD
    dist.destroy_process_group()


@pytest.mark.parametrize("name", ENTRIES)
def test_group_as_declared(name, one_rank_group):
    a, b = pair()
    if declared(name, "supports_group"):
        grouped = call(name, a, b, backend="torch", group=one_rank_group)
        assert float(grouped) == pytest.approx(float(call(name, a, b, backend="torch")), rel=1e-6, abs=1e-9)
    else:
        with pytest.raises(ValueError, match="group= is not supported"):
            call(name, a, b, backend="torch", group=one_rank_group)


@pytest.mark.parametrize("name", [n for n in ENTRIES if declared(n, "compiles")])
def test_fullgraph_compile_as_declared(name):
    """Declared: traced in one graph (fullgraph=True raises at a graph break), the eager value. Entries that
    do not declare it (KSG's tree, auto's data-dependent choice, binned's torch.unique, ...) break the
    graph, which torch.compile without fullgraph handles by running them eagerly."""
    a, b = pair(dtype=torch.float32)
    # the measures' "median" rule reads its median on the host (a float the pass takes): a float sigma
    options = dict(sigma=1.3) if name in ("hsic", "cka") else {}
    compiled = torch.compile(lambda x, y: call(name, x, y, backend="torch", check_finite=False, **options),
                             fullgraph=True, backend="aot_eager")
    eager = call(name, a, b, backend="torch", **options)
    assert float(compiled(a, b)) == pytest.approx(float(eager), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", ENTRIES)
def test_mi_test_takes_every_estimator_and_refuses_measures_by_name(name):
    a, b = pair()
    if name in fastmi.ESTIMATORS:
        result = fastmi.mi_test(a, b, estimator=name, permutations=9, backend="torch")
        assert result.estimate == pytest.approx(float(call(name, a, b, backend="torch")), rel=1e-9, abs=1e-12)
        assert 0 < result.p_value <= 1 or math.isnan(result.p_value)
    else:
        with pytest.raises(ValueError, match="estimator must be one of"):
            fastmi.mi_test(a, b, estimator=name)


@pytest.mark.parametrize("name", ENTRIES)
def test_bad_input_is_an_error_that_names_it(name):
    a, b = pair()
    bad = a.clone()
    bad[3, 1] = math.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        call(name, bad, b, backend="torch")
    with pytest.raises(ValueError, match="same number of samples"):
        call(name, a, b[:-1], backend="torch")
    with pytest.raises(ValueError, match="at least 2 samples"):
        call(name, a[:1], b[:1], backend="torch")
    with pytest.raises(TypeError, match="must be a torch.Tensor or an array-like"):
        call(name, object(), b, backend="torch")


@pytest.mark.kernels
@pytest.mark.parametrize("name", ENTRIES)
def test_triton_kernels_as_declared(name, monkeypatch):
    """backend="triton" (the interpreter here) launches the entry's kernels where it declares some, and none
    where it does not (it computes on torch whatever the back-end)."""
    if not fastmi.kernels.AVAILABLE:
        pytest.skip("triton is not installed")
    from fastmi.kernels import launch
    launches = []
    check = launch._check_version
    monkeypatch.setattr(launch, "_check_version", lambda: launches.append(1) or check())
    a, b = pair(dtype=torch.float32)
    call(name, a, b, backend="triton")
    assert bool(launches) == declared(name, "triton_kernels")


def test_every_entry_declares_every_capability():
    for name in ENTRIES:
        for capability in ("differentiable", "supports_group", "compiles", "triton_kernels"):
            assert isinstance(declared(name, capability), bool), (name, capability)
    assert not set(fastmi.ESTIMATORS) & set(fastmi.MEASURES)  # one namespace for the Regularizer
