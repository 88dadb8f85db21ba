"""Logging helpers: MILog forwards Regularizer.last; information-plane points and plots."""
import math

import pytest
import torch

import fastmi


class FakeWriter:
    def __init__(self):
        self.calls = []

    def add_scalar(self, tag, value, step):
        self.calls.append((tag, value, step))


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 5), torch.nn.Tanh(),
                               torch.nn.Linear(5, 3))


def test_milog_writes_every_pair_each_step(tmp_path):
    model, writer = mlp(), FakeWriter()
    reg = fastmi.Regularizer(model)
    log = fastmi.MILog(reg, writer, tag="mi")
    for step in (10, 20):
        model(torch.randn(40, 4))
        reg()
        log(step)
    assert [c[0] for c in writer.calls] == ["mi/pair0", "mi/pair1", "mi/samples"] * 2
    assert [c[2] for c in writer.calls] == [10, 10, 10, 20, 20, 20]
    assert log.values[-1] == reg.last and log.steps == [10, 20] and log.samples == [40, 40]
    log.plot(tmp_path / "mi.png")
    assert (tmp_path / "mi.png").stat().st_size > 1000


def test_milog_callable_writer_and_bad_writer():
    model = mlp()
    reg = fastmi.Regularizer(model)
    seen = []
    log = fastmi.MILog(reg, lambda scalars, step: seen.append((scalars, step)))
    model(torch.randn(40, 4))
    reg()
    log()
    assert seen == [({"fastmi/mi/pair0": reg.last[0], "fastmi/mi/pair1": reg.last[1], "fastmi/mi/samples": 40}, 0)]
    with pytest.raises(TypeError, match="add_scalar"):
        fastmi.MILog(reg, writer=42)


@pytest.mark.filterwarnings("ignore:binned MI")  # 8 bins on 120 rows saturate: it says so
def test_information_plane(tmp_path):
    model = mlp()
    x = torch.randn(120, 4)
    labels = torch.randint(0, 3, (120,))
    points = []
    for _ in range(3):
        h1 = model[1](model[0](x))
        h2 = model[3](model[2](h1))
        i_xt, i_ty = fastmi.information_plane_point(x, [h1, h2], labels, estimator="binned", bins=8)
        expected = float(fastmi.layer_mi(h1, labels, estimator="binned", bins=8))
        assert i_ty[0] == pytest.approx(expected) and len(i_xt) == 2
        points.append((i_xt, i_ty))
    fastmi.plot_information_plane(points, tmp_path / "plane.png")
    assert (tmp_path / "plane.png").stat().st_size > 1000


def test_plots_leave_the_users_matplotlib_backend_alone(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("pdf")
    model = mlp()
    reg = fastmi.Regularizer(model)
    log = fastmi.MILog(reg)
    model(torch.randn(40, 4))
    reg()
    log()
    log.plot(tmp_path / "mi.png")
    fastmi.plot_information_plane([([1.0], [0.5]), ([1.2], [0.6])], tmp_path / "plane.png")
    assert matplotlib.get_backend() == "pdf"
    assert (tmp_path / "mi.png").read_bytes()[:4] == b"\x89PNG"


def test_information_plane_with_another_estimator():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 2, generator=g)
    h = x + 0.3 * torch.randn(300, 2, generator=g)
    labels = x[:, :1] + 0.3 * torch.randn(300, 1, generator=g)
    i_xt, i_ty = fastmi.information_plane_point(x, [h], labels, estimator="ksg", k=4)
    assert i_xt == [float(fastmi.layer_mi(x, h, estimator="ksg", k=4))]
    assert i_ty == [float(fastmi.layer_mi(h, labels, estimator="ksg", k=4))]


def test_the_default_information_plane_is_not_flat():
    """The first-day case: 30-bin binned MI put every layer of every epoch at (ln N, H(Y)). The default
    (auto) separates the layers and stays below H(Y); binned with 30 bins warns that it is saturated."""
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 4, (400,), generator=g)
    means = torch.nn.functional.one_hot(labels, 4).float() @ torch.randn(4, 16, generator=g)
    x = means + torch.randn(400, 16, generator=g)
    h1 = torch.tanh(x @ torch.randn(16, 12, generator=g))
    h2 = torch.tanh(h1[:, :3] @ torch.randn(3, 6, generator=g)) + 0.5 * torch.randn(400, 6, generator=g)
    i_xt, i_ty = fastmi.information_plane_point(x, [h1, h2], labels, backend="torch")
    entropy = math.log(4)
    assert all(0 <= v <= entropy + 1e-9 for v in i_ty) and i_ty[0] > i_ty[1] + 0.05
    assert i_xt[0] > i_xt[1] + 0.5
    with pytest.warns(RuntimeWarning, match="binned MI: nearly every row has a bin pattern of its own"):
        binned_xt, binned_ty = fastmi.information_plane_point(x, [h1, h2], labels, estimator="binned")
    assert binned_ty == pytest.approx([entropy, entropy], abs=0.05)  # the flat plane the warning is about


@pytest.mark.parametrize("pairs,estimator,title,legend", [
    ("successive", "kde", "MI between successive layers", ["I(h1; h2)", "I(h2; h3)"]),
    ("input", "kde", "MI between the input and each layer", ["I(x; h1)", "I(x; h2)", "I(x; h3)"]),
    ("labels", "kde", "MI between each layer and the labels", ["I(h1; y)", "I(h2; y)", "I(h3; y)"]),
    ("input", "hsic", "HSIC between the input and each layer", ["HSIC(x; h1)", "HSIC(x; h2)", "HSIC(x; h3)"]),
])
def test_milog_plot_names_what_the_regularizer_measures(pairs, estimator, title, legend, tmp_path):
    """The first-day case: label, input and HSIC terms were all titled "MI between successive layers",
    their legend running to a layer h4 that does not exist."""
    pytest.importorskip("matplotlib")
    model = mlp()
    reg = fastmi.Regularizer(model, pairs=pairs, estimator=estimator)
    log = fastmi.MILog(reg)
    model(torch.randn(40, 4))
    reg(labels=torch.randint(0, 3, (40,))) if pairs == "labels" else reg()
    log()
    ax = log.plot(tmp_path / "mi.png").axes[0]
    assert ax.get_title() == title and [t.get_text() for t in ax.get_legend().get_texts()] == legend
    assert ax.get_ylabel() == ("HSIC" if estimator == "hsic" else "MI (nats)")


def test_milog_logs_each_computed_value_once_with_every():
    """With every=3 two calls in three compute nothing: MILog used to log the stale value again."""
    model, writer = mlp(), FakeWriter()
    reg = fastmi.Regularizer(model, every=3)
    log = fastmi.MILog(reg, writer)
    for step in range(7):
        model(torch.randn(40, 4))
        reg()
        log(step)
    assert log.steps == [0, 3, 6] and reg.last_call == 6
    assert [c[2] for c in writer.calls] == [0, 0, 0, 3, 3, 3, 6, 6, 6]  # two terms and the rows
    assert len(log.values) == 3 and log.values[0] != log.values[1]


@pytest.mark.parametrize("estimator,symbol", [("cka", "CKA"), ("distance_correlation", "dCor")])
def test_milog_names_every_registered_measure(estimator, symbol, tmp_path):
    """The Regularizer takes any differentiable measure of fastmi.MEASURES; its plot names that measure,
    not MI in nats."""
    pytest.importorskip("matplotlib")
    model = mlp()
    reg = fastmi.Regularizer(model, estimator=estimator)
    log = fastmi.MILog(reg)
    model(torch.randn(40, 4))
    reg()
    log()
    ax = log.plot(tmp_path / "mi.png").axes[0]
    assert ax.get_title() == f"{symbol} between successive layers" and ax.get_ylabel() == symbol
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"{symbol}(h1; h2)", f"{symbol}(h2; h3)"]
