"""fastmi.Regularizer: hooks, value, gradients, options, errors, memory; pairs="input" / "labels" and HSIC terms."""
import copy
import functools
import gc
import math
import pickle
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
    with pytest.raises(RuntimeError, match="hooks were removed"):
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
    (dict(layers=["0"]), ValueError, "pairs='successive' needs at least two layers"),
    (dict(layers=[], pairs="input"), ValueError, "pairs='input' needs at least one layer"),
    (dict(pairs="inputs"), ValueError, r"pairs must be one of \['successive', 'input', 'labels'\], got 'inputs'"),
    (dict(estimator="hsic", divergence="kl"), TypeError, r"estimator='hsic' takes the options .*got \['divergence'\]"),
    (dict(estimator="hsic", units="bits"), TypeError, "takes the options"),
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
    reg = fastmi.Regularizer(model, max_samples="auto", budget=0.5, min_samples=2)  # its first trial: the cost model
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


# ------------------------------------------------------------- pairs="input" / "labels", estimator="hsic"

def activations(model, x):
    """The three Linear outputs of mlp() on x."""
    h1 = model[0](x)
    h2 = model[2](model[1](h1))
    return [h1, h2, model[4](model[3](h2))]


def class_ids(n=96, classes=3, seed=2):
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))


def one_hot(y):
    return nn.functional.one_hot(y).float()


def direct_terms(pairs, estimator, x, y, h, **options):
    """The terms computed by hand from the captured tensors."""
    term = functools.partial(fastmi.hsic if estimator == "hsic" else fastmi.layer_mi, **options)
    if pairs == "successive":
        return [term(a, b) for a, b in zip(h, h[1:])]
    if pairs == "input":
        return [term(x, hk) for hk in h]
    if y.is_floating_point():
        return [term(hk, y) for hk in h]
    if estimator == "kde":
        return [fastmi.label_mi(hk, y, **options) for hk in h]
    return [term(hk, one_hot(y)) for hk in h]


@pytest.mark.parametrize("pairs,estimator,labels,options", [
    ("input", "kde", None, {}),
    ("labels", "kde", "classes", dict(sigma=0.9)),
    ("labels", "kde", "targets", {}),
    ("successive", "hsic", None, {}),
    ("successive", "hsic", None, dict(sigma=(1.5, "median"))),  # a middle layer needs two: one call per term
    ("input", "hsic", None, dict(sigma=(1.5, "median"))),
    ("labels", "hsic", "classes", {}),
    ("labels", "hsic", "targets", dict(unbiased=True)),
])
def test_terms_equal_the_direct_calls(pairs, estimator, labels, options):
    model, x = mlp(), data()
    targets = torch.randn(96, 2, generator=torch.Generator().manual_seed(3))
    y = {None: None, "classes": class_ids(), "targets": targets}[labels]
    with fastmi.Regularizer(model, weight=0.3, estimator=estimator, pairs=pairs, **options) as reg:
        model(x)
        loss = reg() if y is None else reg(labels=y)
    expected = [float(v) for v in direct_terms(pairs, estimator, x, y, activations(model, x), **options)]
    assert len(expected) == (2 if pairs == "successive" else 3)
    assert reg.last == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert float(loss.detach()) == pytest.approx(-0.3 * sum(expected), rel=1e-5, abs=1e-7)


def test_label_terms_follow_the_run_order_and_a_1d_target_is_one_column():
    model, x = Reversed(), data()
    y = torch.randn(96, generator=torch.Generator().manual_seed(4))
    with fastmi.Regularizer(model, pairs="labels", maximize=False) as reg:
        model(x)
        loss = reg(labels=y)
    h1 = model.first(x)
    h2 = model.middle(torch.tanh(h1))
    h3 = model.last(torch.tanh(h2))
    expected = [float(fastmi.layer_mi(h, y[:, None])) for h in (h1, h2, h3)]
    assert reg.last == pytest.approx(expected, rel=1e-6)
    assert float(loss.detach()) == pytest.approx(sum(expected), rel=1e-6)


@pytest.mark.parametrize("estimator", ["kde", "hsic"])
@pytest.mark.parametrize("pairs", ["input", "labels"])
def test_gradients_reach_every_watched_layer(pairs, estimator):
    model = mlp()
    reg = fastmi.Regularizer(model, pairs=pairs, estimator=estimator)
    model(data(64))
    (reg() if pairs == "input" else reg(labels=class_ids(64))).backward()
    for layer in (model[0], model[2], model[4]):
        assert layer.weight.grad is not None and float(layer.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("pairs,estimator", [("input", "kde"), ("labels", "kde"), ("labels", "hsic")])
def test_max_samples_uses_the_layers_rows_for_the_input_and_the_labels(pairs, estimator):
    model, x, y = mlp(), data(), class_ids()
    reg = fastmi.Regularizer(model, pairs=pairs, estimator=estimator, max_samples=40, seed=7)
    model(x)
    reg(labels=y) if pairs == "labels" else reg()
    rows = torch.randperm(96, generator=torch.Generator().manual_seed(7))[:40]
    expected = direct_terms(pairs, estimator, x[rows], y[rows], activations(model, x[rows]))
    assert reg.samples == 40
    assert reg.last == pytest.approx([float(v) for v in expected], rel=1e-5)


def test_the_input_is_the_models_first_positional_argument_flattened_per_sample():
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 4))
    x = torch.randn(64, 2, 3, generator=torch.Generator().manual_seed(5))
    reg = fastmi.Regularizer(model, pairs="input", estimator="hsic")
    model(x)
    reg()
    assert reg.last == pytest.approx([float(fastmi.hsic(x.reshape(64, 6), model(x)))], rel=1e-6)


def test_the_input_hook_is_removed_and_inert_in_copies():
    model, x = mlp(), data()
    reg = fastmi.Regularizer(model, pairs="input")
    assert len(model._forward_pre_hooks) == 1
    ema = copy.deepcopy(model)
    restored = pickle.loads(pickle.dumps(model))
    model(x)
    ema(data(seed=9))  # a copy's forward must not replace the captured input
    restored(data(seed=9))
    reg()
    assert reg.last == pytest.approx([float(fastmi.layer_mi(x, h)) for h in activations(model, x)], rel=1e-6)
    reg.remove()
    assert len(model._forward_pre_hooks) == 0 and all(len(model[i]._forward_hooks) == 0 for i in (0, 2, 4))
    model(x)
    with pytest.raises(RuntimeError, match="hooks were removed"):
        reg()


def test_a_one_row_batch_gives_zero_and_a_warning():
    """A last partial batch of one row (DataLoader(drop_last=False)) does not stop training: 0, a
    warning, reg.last as it was, and the next batch has its term."""
    model = mlp()
    reg = fastmi.Regularizer(model, backend="torch")
    model(data(64))
    reg()
    before = list(reg.last)
    model(data(1))
    with pytest.warns(RuntimeWarning, match="batch of 1 row"):
        value = reg()
    assert float(value) == 0.0 and reg.last == before
    x = data(64, seed=3)
    model(x)
    reg()
    assert reg.last == pytest.approx([float(fastmi.layer_mi(a, b, backend="torch"))
                                      for a, b in zip(activations(model, x)[:-1], activations(model, x)[1:])], rel=1e-6)


def test_a_nan_layer_is_named_and_the_failed_call_changes_nothing():
    """A NaN raises naming the watched module (not an estimator's operand index), and the call changes
    nothing: the activations stay (the same error again, not "call after a forward pass"), and the rows
    the next call draws are those it would have drawn."""
    torch.manual_seed(0)
    model = Reversed()
    reg = fastmi.Regularizer(model, backend="torch", max_samples=20, seed=4)
    x = data(64)
    bad = x.clone()
    bad[:, 0] = float("nan")
    model(bad)
    for _ in range(2):
        with pytest.raises(ValueError, match="output of layer 'first' contains NaN"):
            reg()
    model(x)
    reg()
    fresh = fastmi.Regularizer(model, backend="torch", max_samples=20, seed=4)
    model(x)
    fresh()
    assert reg.last == fresh.last


def test_every_applies_to_the_input_and_the_labels():
    model = mlp()
    reg = fastmi.Regularizer(model, pairs="labels", every=2)
    values = []
    for _ in range(4):
        model(data(64))
        values.append(float(reg(labels=class_ids(64))))
    assert [v != 0 for v in values] == [True, False, True, False]


def test_information_bottleneck_from_two_regularizers():
    """Ma et al. 2019's HSIC bottleneck: sum_k HSIC(X, T_k) - beta HSIC(Y, T_k); with the same max_samples
    and seed the two Regularizers draw the same rows."""
    model, x, y = mlp(), data(), class_ids()
    compress = fastmi.Regularizer(model, pairs="input", maximize=False, estimator="hsic", max_samples=40)
    predict = fastmi.Regularizer(model, pairs="labels", maximize=True, weight=0.7, estimator="hsic", max_samples=40)
    model(x)
    total = compress() + predict(labels=y)
    rows = torch.randperm(96, generator=torch.Generator().manual_seed(0))[:40]
    x, y = x[rows], y[rows]
    h = activations(model, x)
    expected = sum(float(fastmi.hsic(x, hk)) - 0.7 * float(fastmi.hsic(hk, one_hot(y))) for hk in h)
    assert float(total.detach()) == pytest.approx(expected, rel=1e-5)
    total.backward()
    assert float(model[0].weight.grad.abs().sum()) > 0


def test_auto_samples_count_the_input_and_the_labels_once_per_term():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 10))
    x, y = torch.randn(256, 20), class_ids(256, classes=4)
    for pairs, extra in (("input", 20), ("labels", 4)):
        reg = fastmi.Regularizer(model, pairs=pairs, max_samples="auto", budget=0.5, estimator="hsic", min_samples=2)
        model(x)
        reg(labels=y) if pairs == "labels" else reg()
        widths, fan_ins = [32, 10, extra, extra], [20, 32, 0, 0]
        forward = 2 * 256 * sum(d * f for d, f in zip(widths, fan_ins))
        expected = math.isqrt(int(0.5 * forward / sum(4 * d + fastmi.regularizer.PAIR_WORK for d in widths)))
        assert reg.samples == expected and 2 < expected < 256
        assert reg.modelled_overhead == pytest.approx(
            fastmi.Regularizer.overhead_model(256, expected, widths, fan_ins))


class DictInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(5, 3)

    def forward(self, batch):
        return self.linear(batch["x"])


def test_input_errors():
    model = DictInput()
    reg = fastmi.Regularizer(model, pairs="input")
    model({"x": data()})
    with pytest.raises(TypeError, match="first positional argument.*got dict"):
        reg()
    model(batch={"x": data()})
    with pytest.raises(TypeError, match="got no positional argument"):
        reg()
    embed = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    reg = fastmi.Regularizer(embed, pairs="input")
    embed(torch.arange(10))
    with pytest.raises(TypeError, match=r"got a torch.int64 tensor of shape \(10,\)"):
        reg()
    model = mlp()
    reg = fastmi.Regularizer(model, pairs="input")
    model[0](data())  # the layers alone: the model's input is not seen
    with pytest.raises(RuntimeError, match="input was not captured"):
        reg()


@pytest.mark.parametrize("pairs,labels,error,match", [
    ("labels", None, TypeError, r"pass the batch's labels, reg\(labels=y\)"),
    ("successive", class_ids(), TypeError, "labels= is for pairs='labels'; this Regularizer has pairs='successive'"),
    ("input", class_ids(), TypeError, "labels= is for pairs='labels'"),
    ("labels", class_ids(80), ValueError, "labels has 80 rows but the watched layers' batch has 96"),
    ("labels", torch.randn(80, 2), ValueError, "labels has 80 rows but the watched layers' batch has 96"),
    ("labels", class_ids().tolist(), TypeError, "labels must be a torch.Tensor"),
    ("labels", class_ids()[:, None], TypeError, "1-d tensor of integer class ids"),
    ("labels", -class_ids() - 1, ValueError, "class ids >= 0"),
    ("labels", torch.tensor(1.0), ValueError, "row per sample"),
])
def test_label_errors(pairs, labels, error, match):
    model = mlp()
    reg = fastmi.Regularizer(model, pairs=pairs)
    model(data())
    with pytest.raises(error, match=match):
        reg(labels=labels)


def test_a_failed_call_changes_nothing():
    """Bad labels raise before anything is consumed: the activations stay captured and the call does not
    count towards every=, so a corrected call right after computes this step's term."""
    model, x = mlp(), data()
    reg = fastmi.Regularizer(model, pairs="labels", every=2)
    model(x)
    with pytest.raises(ValueError, match="class ids >= 0"):
        reg(labels=-class_ids() - 1)
    value = reg(labels=class_ids())
    assert float(value) != 0.0 and len(reg.last) == 3
    assert float(reg(labels=class_ids())) == 0.0  # the second call of every=2


def test_a_measure_checks_its_backend_when_built():
    with pytest.raises(ValueError, match="backend must be one of"):
        fastmi.Regularizer(mlp(), estimator="hsic", backend="cuda")
