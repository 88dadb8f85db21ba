"""fastmi.Regularizer: hooks, value, gradients, options, errors, memory."""
import gc
import math
import weakref

import pytest
import torch
from torch import nn

import fastmi


class Reversed(nn.Module):
    """Layers registered in the opposite order to the one they run in."""

    def __init__(self):
        super().__init__()
        self.last = nn.Linear(8, 3)
        self.middle = nn.Linear(12, 8)
        self.first = nn.Linear(5, 12)

    def forward(self, x):
        return self.last(torch.tanh(self.middle(torch.tanh(self.first(x)))))


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 3))


def data(n=96, seed=1):
    return torch.randn(n, 5, generator=torch.Generator().manual_seed(seed))


def test_value_is_minus_weight_times_the_sum_over_successive_layers_in_forward_order():
    model = Reversed()
    x = data()
    with fastmi.Regularizer(model, weight=0.3) as reg:
        model(x)
        loss = reg()
    h1 = model.first(x)
    h2 = model.middle(torch.tanh(h1))
    h3 = model.last(torch.tanh(h2))
    pairs = [fastmi.layer_mi(h1, h2), fastmi.layer_mi(h2, h3)]
    assert float(loss.detach()) == pytest.approx(-0.3 * float(sum(pairs).detach()), rel=1e-6)
    assert reg.last == pytest.approx([float(v) for v in pairs], rel=1e-6)


def test_named_layers_and_minimize():
    model = mlp()
    x = data()
    reg = fastmi.Regularizer(model, layers=["0", "4"], weight=2.0, maximize=False, sigma=1.5)
    model(x)
    value = reg()
    direct = fastmi.layer_mi(model[0](x), model(x), sigma=1.5)
    assert float(value) == pytest.approx(2.0 * float(direct), rel=1e-6)


def test_gradients_reach_every_layer():
    model = mlp()
    reg = fastmi.Regularizer(model)
    model(data())
    reg().backward()
    for layer in (model[0], model[2], model[4]):
        assert layer.weight.grad is not None and float(layer.weight.grad.abs().sum()) > 0


def test_every_n_steps():
    model = mlp()
    reg = fastmi.Regularizer(model, every=3)
    values = []
    for _ in range(6):
        model(data())
        values.append(float(reg()))
    assert [v != 0 for v in values] == [True, False, False, True, False, False]


def test_max_samples_uses_the_same_rows_for_every_layer():
    model = mlp()
    x = data(200)
    reg = fastmi.Regularizer(model, max_samples=50, seed=7)
    model(x)
    value = reg()
    rows = torch.randperm(200, generator=torch.Generator().manual_seed(7))[:50]
    h = [model[0](x[rows])]
    h.append(model[2](model[1](h[0])))
    h.append(model[4](model[3](h[1])))
    direct = fastmi.layer_mi(h[0], h[1]) + fastmi.layer_mi(h[1], h[2])
    assert float(value) == pytest.approx(-float(direct), rel=1e-5)


def test_remove_and_context_manager_detach_hooks():
    model = mlp()
    with fastmi.Regularizer(model) as reg:
        assert all(len(model[i]._forward_hooks) == 1 for i in (0, 2, 4))
    assert all(len(model[i]._forward_hooks) == 0 for i in (0, 2, 4))
    model(data())
    with pytest.raises(RuntimeError, match="after a forward pass"):
        reg()


def test_no_grad_forward_only_measures():
    model = mlp()
    reg = fastmi.Regularizer(model)
    with torch.no_grad():
        model(data())
    value = reg()
    assert not value.requires_grad and torch.isfinite(value)


def test_eval_mode_and_autocast():
    model = nn.Sequential(nn.Linear(5, 16), nn.Dropout(0.5), nn.Linear(16, 4)).eval()
    reg = fastmi.Regularizer(model)
    x = data()
    model(x)
    full = float(reg())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
        mixed = reg()
    assert mixed.dtype == torch.float32
    assert float(mixed) == pytest.approx(full, abs=0.05)


def test_activations_are_released_by_call():
    model = mlp()
    reg = fastmi.Regularizer(model)
    refs = []
    model[2].register_forward_hook(lambda m, i, o: refs.append(weakref.ref(o)))
    model(data())
    loss = reg()
    loss.backward()
    del loss
    gc.collect()
    assert refs[0]() is None


def test_no_growth_in_live_tensors_over_100_steps():
    model = mlp()
    reg = fastmi.Regularizer(model, weight=0.1, backend="torch")
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        out = model(data(64))
        (out.square().mean() + reg()).backward()
        opt.step()

    def live_tensors():
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) in (torch.Tensor, nn.Parameter))
    step()
    before = live_tensors()
    for _ in range(100):
        step()
    assert live_tensors() <= before


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(layers=["0", "nope"]), ValueError, "no layer named 'nope'"),
    (dict(layers=["0"]), ValueError, "at least two layers"),
    (dict(layers=["0", nn.Linear(2, 2)]), ValueError, "submodule"),
    (dict(estimator="binned"), ValueError, "differentiable"),
    (dict(every=0), ValueError, "every"),
    (dict(max_samples=1), ValueError, "max_samples"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        fastmi.Regularizer(mlp(), **kwargs)


def test_call_before_forward():
    with pytest.raises(RuntimeError, match="after a forward pass"):
        fastmi.Regularizer(mlp())()


def test_different_batch_sizes():
    a, b = nn.Linear(5, 4), nn.Linear(5, 4)
    model = nn.ModuleDict(dict(a=a, b=b))
    reg = fastmi.Regularizer(model, layers=["a", "b"])
    a(data(10))
    b(data(12))
    with pytest.raises(ValueError, match=r"different batch sizes \[10, 12\]"):
        reg()


def test_auto_samples_follow_the_cost_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    reg = fastmi.Regularizer(model, max_samples="auto", budget=0.5)
    model(torch.randn(512, 20))
    reg()
    widths, fan_ins = [64, 64, 10], [20, 64, 64]
    forward = 2 * 512 * sum(d * f for d, f in zip(widths, fan_ins))
    expected = math.isqrt(int(0.5 * forward / sum(4 * d + fastmi.regularizer.PAIR_WORK for d in widths)))
    assert reg.samples == expected and 2 < expected < 512
    assert fastmi.Regularizer.auto_samples(512, widths, fan_ins, budget=1e6) == 512  # never more than N


def test_auto_samples_count_conv_fan_in():
    conv = nn.Conv2d(3, 8, 5, padding=2, groups=1)
    assert fastmi.regularizer._fan_in(conv, (torch.randn(2, 3, 9, 9),)) == 3 * 25
    grouped = nn.Conv1d(8, 8, 3, groups=4)
    assert fastmi.regularizer._fan_in(grouped, (torch.randn(2, 8, 9),)) == 2 * 3
    assert fastmi.regularizer._fan_in(nn.Tanh(), (torch.randn(2, 4, 5),)) == 20


@pytest.mark.parametrize("kwargs,match", [
    (dict(max_samples="all"), "max_samples"), (dict(budget=2.0), "budget"),
    (dict(max_samples="auto", budget=0), "budget"), (dict(max_samples=64, budget=1.0), "budget"),
])
def test_bad_sample_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fastmi.Regularizer(mlp(), **kwargs)


def test_kde_term_is_the_chain_and_equals_per_pair_layer_mi():
    model = mlp()
    x = data(120).double()
    model.double()
    with fastmi.Regularizer(model, weight=1.0, sigma="silverman") as reg:  # widths 12, 8, 3: pair by pair
        model(x)
        value = reg()
    h1 = model[0](x)
    h2 = model[2](model[1](h1))
    h3 = model[4](model[3](h2))
    expected = fastmi.layer_mi(h1, h2, sigma="silverman") + fastmi.layer_mi(h2, h3, sigma="silverman")
    assert float(value) == pytest.approx(-float(expected), abs=1e-12)
