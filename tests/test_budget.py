"""max_samples="auto": the Regularizer's row count from timed training steps (fastmi.budget), tested with an
injected clock whose seconds a simulated training loop sets: the model's forward, the rest of the step,
and the terms' cost c0 + c2 n^2 at the steps that compute them. Deterministic; no real timing."""
import math

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import fastmi
from fastmi import budget

OPS_PER_LAYER = {"kde": 205, "hsic": 220}  # torch ops per watched layer per call: measured 199, 212.5
CALIBRATION_CALLS = budget.CALLS


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class TimedModel(nn.Module):
    """A small MLP whose forward takes `seconds` on the clock (between the model's forward hooks)."""

    def __init__(self, clock, seconds, widths=(6, 16, 12, 8)):
        super().__init__()
        self.clock, self.seconds = clock, seconds
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x):
        self.clock.now += self.seconds
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x


def train(reg, model, clock, steps, rest=0.05, fixed=0.002, per_pair=1e-7, rows=512, shape=(6,)):
    """`steps` simulated training steps; returns the loss terms reg() gave. A step that computed the terms
    costs fixed + per_pair * rows^2 on top of the forward and `rest` (backward, optimizer)."""
    g = torch.Generator().manual_seed(0)
    terms = []
    for _ in range(steps):
        model(torch.randn(rows, *shape, generator=g))
        computed = reg.last_call
        term = reg()
        terms.append(float(term.detach()))
        clock.now += rest
        if reg.last_call != computed:
            clock.now += fixed + per_pair * reg.samples ** 2
    return terms


def expected_rows(forward, budget_=1.0, fixed=0.002, per_pair=1e-7):
    return math.isqrt(int((budget_ * forward - fixed) / per_pair))


def regularizer(model, clock, **options):
    return fastmi.Regularizer(model, max_samples="auto", clock=clock, backend="torch", **options)


def test_calibration_freezes_the_rows_whose_measured_cost_is_the_budget():
    clock = Clock()
    model = TimedModel(clock, seconds=0.03)
    reg = regularizer(model, clock, min_samples=16)
    terms = train(reg, model, clock, CALIBRATION_CALLS + 3)
    expected = expected_rows(0.03)  # 0.03 s = 0.002 + 1e-7 n^2: n = 529 > the batch: all 512 rows
    assert expected > 512 and reg.samples == 512
    clock, reg = Clock(), None
    model = TimedModel(clock, seconds=0.012)
    reg = regularizer(model, clock, min_samples=16)
    terms = train(reg, model, clock, CALIBRATION_CALLS + 3)
    expected = expected_rows(0.012)  # 316
    assert abs(reg.samples - expected) <= 1
    assert reg.measured_overhead == pytest.approx(1.0, rel=0.01)
    # 8 control steps (the loss has no term there), each at an even call of the calibration after the first
    controls = [i for i, t in enumerate(terms) if t == 0.0]
    assert controls == list(range(1, CALIBRATION_CALLS, 2))
    assert reg.last_call == len(terms) - 1


def test_the_first_trial_is_the_cost_model_and_the_rows_stay_frozen():
    clock = Clock()
    model = TimedModel(clock, seconds=0.012)
    reg = regularizer(model, clock, min_samples=16)
    train(reg, model, clock, 1)
    widths, fan_ins = [16, 12, 8], [6, 16, 12]
    assert reg.samples == max(16, fastmi.Regularizer.auto_samples(512, widths, fan_ins))
    assert reg.measured_overhead is None  # still calibrating
    train(reg, model, clock, CALIBRATION_CALLS)
    frozen = reg.samples
    model.seconds *= 3  # the forward slows down: n stays (a moving n moves the loss) until asked
    train(reg, model, clock, 10)
    assert reg.samples == frozen
    reg.calibrate()
    train(reg, model, clock, CALIBRATION_CALLS + 1)
    assert reg.samples == 512  # 3 x 0.012 s of budget buys every row


class TimedConv(nn.Module):
    """Two Conv1d layers: their outputs' widths follow the input's length."""

    def __init__(self, clock, seconds):
        super().__init__()
        self.clock, self.seconds = clock, seconds
        self.a, self.b = nn.Conv1d(2, 3, 3, padding=1), nn.Conv1d(3, 2, 3, padding=1)

    def forward(self, x):
        self.clock.now += self.seconds
        return self.b(torch.tanh(self.a(x)))


def test_a_change_of_widths_calibrates_again():
    clock = Clock()
    model = TimedConv(clock, seconds=0.012)
    reg = regularizer(model, clock, min_samples=16)
    train(reg, model, clock, CALIBRATION_CALLS + 1, shape=(2, 8))
    assert reg.measured_overhead is not None
    train(reg, model, clock, 1, shape=(2, 16))  # wider outputs: a new calibration, from the cost model
    assert reg.measured_overhead is None
    assert reg.samples == max(16, fastmi.Regularizer.auto_samples(512, [48, 32], [6, 9]))
    train(reg, model, clock, CALIBRATION_CALLS + 1, shape=(2, 16))
    assert reg.measured_overhead == pytest.approx(1.0, rel=0.01)


def test_every_k_counts_computing_calls_and_budgets_per_computed_step():
    clock = Clock()
    model = TimedModel(clock, seconds=0.012)
    reg = regularizer(model, clock, min_samples=16, every=2)
    terms = train(reg, model, clock, 2 * CALIBRATION_CALLS + 2)
    assert abs(reg.samples - expected_rows(0.012)) <= 1
    assert all(t == 0.0 for t in terms[1::2])  # every other call computes nothing, as with every=2


def test_a_fixed_cost_above_the_budget_warns_and_says_what_budget_works():
    clock = Clock()
    model = TimedModel(clock, seconds=0.012)
    reg = regularizer(model, clock, min_samples=64)
    with pytest.warns(RuntimeWarning, match=r"min_samples.*over budget=1 \(their fixed cost per call alone: 2\.50\); "
                                            r"pass budget=2\.6"):
        train(reg, model, clock, CALIBRATION_CALLS + 1, fixed=0.03)
    assert reg.samples == 64
    assert reg.measured_overhead == pytest.approx((0.03 + 1e-7 * 64 ** 2) / 0.012, rel=0.01)


def test_a_small_batch_has_one_choice_and_no_control_steps():
    clock = Clock()
    model = TimedModel(clock, seconds=0.012)
    reg = regularizer(model, clock)  # min_samples 128 > 100 rows
    terms = train(reg, model, clock, 5, rows=100)
    assert reg.samples == 100 and all(t != 0.0 for t in terms)


def test_options_are_checked():
    model = TimedModel(Clock(), seconds=0.01)
    with pytest.raises(ValueError, match="min_samples"):
        fastmi.Regularizer(model, max_samples=64, min_samples=32)
    with pytest.raises(ValueError, match="min_samples"):
        fastmi.Regularizer(model, max_samples="auto", min_samples=1)
    with pytest.raises(ValueError, match="clock"):
        fastmi.Regularizer(model, clock=Clock())
    with pytest.raises(TypeError, match="clock"):
        fastmi.Regularizer(model, max_samples="auto", clock=3.0)
    with pytest.raises(ValueError, match="calibrate"):
        fastmi.Regularizer(model).calibrate()


def test_the_fit_is_least_squares_with_a_positive_slope():
    c0, c2 = budget.fit([(100, 0.003), (200, 0.006), (300, 0.011)])
    xs = [1e4, 4e4, 9e4]
    assert c2 > 0 and sum(c0 + c2 * x - y for x, y in zip(xs, [0.003, 0.006, 0.011])) == pytest.approx(0, abs=1e-12)
    assert budget.fit([(100, 0.004), (200, 0.003)])[1] > 0  # noise that shrinks with n: a tiny slope


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def deep_model(layers, width=16):
    torch.manual_seed(0)
    return nn.Sequential(*[m for _ in range(layers) for m in (nn.Linear(width, width), nn.Tanh())])


def ops_per_call(layers, **options):
    """The torch ops of reg() and its backward (the terms' gradient through the watched layers)."""
    model = deep_model(layers)
    reg = fastmi.Regularizer(model, max_samples=64, **options)
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    model(x)
    reg().backward()  # first call: lazy imports, caches
    model(x)
    with CountOps() as counter:
        reg().backward()
    return counter.count


@pytest.mark.parametrize("estimator", ["kde", "hsic"])
def test_torch_ops_per_watched_layer_per_call(estimator):
    """The fixed cost per call is mostly small ops: pinned per watched layer (the count of 5 layers minus 3,
    over 2), so a change that adds passes shows here and not only on a quiet machine."""
    per_layer = (ops_per_call(5, backend="torch", estimator=estimator)
                 - ops_per_call(3, backend="torch", estimator=estimator)) / 2
    assert per_layer <= OPS_PER_LAYER[estimator]


@pytest.mark.kernels
@pytest.mark.parametrize("estimator", ["kde", "hsic"])
def test_triton_launches_per_watched_layer_per_step(estimator, monkeypatch):
    """backend="triton": at most 4 kernel launches per watched layer per step, forward and backward (the
    KDE's chain is one launch for every layer where their tiles fit the cache)."""
    if not fastmi.kernels.AVAILABLE:
        pytest.skip("triton is not installed")
    from fastmi.kernels import gram, kde
    launches = []
    for module in (kde, gram):
        launch = module.launch
        monkeypatch.setattr(module, "launch", lambda *a, launch=launch, **k: launches.append(1) or launch(*a, **k))

    def launches_of(layers):
        model = deep_model(layers)
        reg = fastmi.Regularizer(model, backend="triton", estimator=estimator)
        model(torch.randn(64, 16, generator=torch.Generator().manual_seed(0)))
        launches.clear()
        reg().backward()
        return len(launches)
    three, five = launches_of(3), launches_of(5)
    assert 0 < three <= 4 * 3 and 0 < five <= 4 * 5 and (five - three) / 2 <= 4
