"""torch.compile and torch.export: the KDE estimator and the dependence measures' passes are custom ops, with no
graph break around them."""
import math

import pytest
import torch

import fastmi


def pair(seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(90, 5, generator=g)
    return a, a[:, :3] + 0.5 * torch.randn(90, 3, generator=g)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("sigma,loo", [("standardized_median", False), ("scott", True), (0.8, False),
                                       ((0.5, "silverman"), False)])
def test_fullgraph_compile_matches_eager(backend, sigma, loo):
    def mi(a, b):
        return fastmi.layer_mi(a, b, sigma=sigma, loo=loo, backend=backend, check_finite=False)
    a, b = pair()
    a.requires_grad_()
    compiled = torch.compile(mi, fullgraph=True, backend="aot_eager")  # fullgraph: a graph break raises
    value = compiled(a, b)
    grad, = torch.autograd.grad(value, a)
    expected = mi(a, b)
    expected_grad, = torch.autograd.grad(expected, a)
    assert float(value.detach()) == pytest.approx(float(expected.detach()), abs=1e-6)
    torch.testing.assert_close(grad, expected_grad, atol=1e-6, rtol=1e-5)


def test_compiled_model_with_the_regularizer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    reg = fastmi.Regularizer(model, weight=0.5, check_finite=False)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = pair()[0]
    (compiled(x).square().mean() + reg()).backward()
    compiled_grad, compiled_last = model[0].weight.grad.clone(), reg.last
    model.zero_grad()
    (model(x).square().mean() + reg()).backward()
    assert compiled_last == pytest.approx(reg.last, abs=1e-6)
    torch.testing.assert_close(compiled_grad, model[0].weight.grad, atol=1e-6, rtol=1e-5)


def test_export_sees_the_op():
    class LayerMI(torch.nn.Module):
        def forward(self, a, b):
            return fastmi.layer_mi(a, b, sigma=0.8, check_finite=False)
    a, b = pair()
    program = torch.export.export(LayerMI(), (a, b))
    targets = [str(node.target) for node in program.graph.nodes if node.op == "call_function"]
    assert "fastmi.kde_chain_log_sums.default" in targets
    assert float(program.module()(a, b)) == pytest.approx(float(fastmi.layer_mi(a, b, sigma=0.8)), abs=1e-6)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("measure", [
    lambda a, b, backend: fastmi.cka(a, b, sigma=1.3, backend=backend, check_finite=False),
    lambda a, b, backend: fastmi.hsic(a, b, sigma=(0.7, 1.1), unbiased=True, backend=backend, check_finite=False),
    lambda a, b, backend: fastmi.distance_correlation(a, b, backend=backend, check_finite=False),
])
def test_dependence_measures_compile_in_one_graph(measure, backend):
    a, b = pair()
    a.requires_grad_()
    compiled = torch.compile(lambda x, y: measure(x, y, backend), fullgraph=True, backend="aot_eager")
    value = compiled(a, b)
    grad, = torch.autograd.grad(value, a)
    expected = measure(a, b, backend)
    expected_grad, = torch.autograd.grad(expected, a)
    assert float(value.detach()) == pytest.approx(float(expected.detach()), abs=1e-6)
    torch.testing.assert_close(grad, expected_grad, atol=1e-6, rtol=1e-5)


def test_dependence_custom_ops_pass_opcheck():
    from fastmi.measures import pair_sums
    a, b = pair()
    x = torch.cat([a, b], dim=1)
    g_rows = torch.randn(2, 90, dtype=torch.float64)
    mixing = torch.randn(2, 2, dtype=torch.float64)
    cases = [(pair_sums.torch_sums_op, (x, [0, 5, 8], "rbf", [0.3, 0.5], 0, 90)),
             (pair_sums.torch_sums_op, (x, [0, 5, 8], "distance", [0.0, 0.0], 10, 60)),
             (pair_sums.torch_grads_op, (x, [0, 5, 8], "rbf", [0.3, 0.5], 10, 60, mixing, g_rows)),
             (pair_sums.row_sums_op, (a, b[:, :3], True, 0, 90)),
             (pair_sums.pair_grads_op, (a, b, torch.tensor([0.5, -1.0, 2.0]), torch.randn(2, 90), False, 5, 70))]
    for op, args in cases:
        torch.library.opcheck(op, args)


@pytest.mark.parametrize("options, graphs", [(dict(), 1), (dict(every=3), 2),
                                             (dict(pairs="input", max_samples="auto", budget=50), 1)])
def test_compiled_training_with_the_regularizer_compiles_once(options, graphs):
    """60 training steps of torch.compile(model, fullgraph=True) with a Regularizer: its hooks read a bool
    that changes only with every= (capturing or not), never the step count, so the model compiles once
    (twice with every=3) and never reaches the recompile limit, which fullgraph=True makes an error."""
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    reg = fastmi.Regularizer(model, weight=0.1, backend="torch", check_finite=False, **options)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    values = []
    for _ in range(60):
        loss = compiled(torch.randn(48, 5)).square().mean() + reg()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        values.append(list(reg.last))
    assert counters["stats"]["unique_graphs"] == graphs
    assert all(v and all(math.isfinite(t) for t in v) for v in values)
