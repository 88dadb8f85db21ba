"""Logging MI during training: a recorder/forwarder for Regularizer.last, and information-plane helpers."""
import torch

from .api import label_mi, layer_mi
from .estimators import ESTIMATORS
from .measures import MEASURES


class MILog:
    """Records `regularizer.last` (the per-term values of its latest call) and forwards it to a logger.

    `writer` may be a TensorBoard-style object with add_scalar(tag, value, step) (e.g.
    torch.utils.tensorboard.SummaryWriter: pip install tensorboard), any callable(dict, step), or None
    (record only). Call `log(step)` after each `reg()`; `log.steps`, `log.values` and `log.samples` (the rows
    each value used, reg.samples, also written as the scalar `<tag>/samples`) hold the history.
    A call after a `reg()` that computed nothing new (every=n, a one-row batch) logs nothing and
    returns {}: the history holds each computed value once, at the step it was computed.
    """

    def __init__(self, regularizer, writer=None, tag="fastmi/mi"):
        if writer is not None and not (hasattr(writer, "add_scalar") or callable(writer)):
            raise TypeError(f"writer must have add_scalar(tag, value, step) or be callable, got {writer!r}")
        self.regularizer, self.writer, self.tag = regularizer, writer, tag
        self.steps, self.values, self.samples = [], [], []
        self._logged_call = None  # regularizer.last_call of the latest values logged

    def __call__(self, step=None):
        if not self.regularizer.last:
            raise RuntimeError("MILog: the Regularizer has no MI values yet; call reg() after a forward pass, "
                               "then log")
        if self.regularizer.last_call == self._logged_call:
            return {}
        self._logged_call = self.regularizer.last_call
        step = len(self.steps) if step is None else step
        values = list(self.regularizer.last)
        self.steps.append(step)
        self.values.append(values)
        self.samples.append(self.regularizer.samples)
        scalars = {f"{self.tag}/pair{k}": v for k, v in enumerate(values)}
        scalars[f"{self.tag}/samples"] = self.regularizer.samples  # the rows: a KDE term's ceiling is ln(rows)
        if hasattr(self.writer, "add_scalar"):
            for tag, value in scalars.items():
                self.writer.add_scalar(tag, value, step)
        elif self.writer is not None:
            self.writer(scalars, step)
        return scalars

    def plot(self, path, title=None):
        """PNG of each term against the step, labelled by what the Regularizer measures (title=None: that,
        in words); returns the matplotlib Figure."""
        if not self.values:
            raise ValueError("MILog.plot: nothing logged yet")
        measure, default_title, unit = describe(self.regularizer)
        fig = new_figure(figsize=(6, 4))
        ax = fig.subplots()
        for k in range(max(map(len, self.values), default=0)):  # the number of terms may change between steps
            logged = [(step, v[k]) for step, v in zip(self.steps, self.values) if len(v) > k]
            ax.plot(*zip(*logged), label=term_label(measure, self.regularizer.pairs, k))
        ax.set(xlabel="step", ylabel=f"{measure} ({unit})" if unit else measure,
               title=default_title if title is None else title)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        return fig


OPERANDS = {"successive": "successive layers", "input": "the input and each layer",
            "labels": "each layer and the labels"}


SYMBOLS = {"hsic": "HSIC", "cka": "CKA", "distance_correlation": "dCor"}  # a measure's name in a plot


def describe(regularizer):
    """(the measure's symbol, a title in words, its unit or None) of a Regularizer's terms: MI in nats or
    bits for an estimator, a measure of fastmi.MEASURES by its symbol (no unit)."""
    if regularizer.estimator in MEASURES:
        symbol = SYMBOLS.get(regularizer.estimator, regularizer.estimator)
        return symbol, f"{symbol} between {OPERANDS[regularizer.pairs]}", None
    unit = regularizer.estimator_kwargs.get("units", "nats")
    return "MI", f"MI between {OPERANDS[regularizer.pairs]}", unit


def term_label(measure, pairs, k):
    """The legend entry of term k: I(h1; h2), I(x; h1) or I(h1; y), with HSIC for I where it is HSIC."""
    symbol = "I" if measure == "MI" else measure
    operands = {"successive": f"h{k + 1}; h{k + 2}", "input": f"x; h{k + 1}", "labels": f"h{k + 1}; y"}[pairs]
    return f"{symbol}({operands})"


@torch.no_grad()
def information_plane_point(x, layers, labels, **layer_mi_kwargs):
    """One epoch's information-plane coordinates: ([I(X; T_k)], [I(T_k; Y)]) for each layer output T_k.

    Defaults to estimator="auto" (docs/which-estimator.md's recommendation). Integer class ids (N,) as labels are
    read as such by every estimator: "kde" through fastmi.label_mi (Saxe et al.'s class-conditional KDE), "ksg"
    Ross's estimator, "gcmi" the class-conditional Gaussian form, "auto" the plug-in or Ross's (at most
    H(Y)), "binned" the plug-in over bin patterns; "unit" (per-unit histograms) refuses them by name.
    estimator="binned" gives Shwartz-Ziv & Tishby's binned plane, which saturates at (ln N, H(Y)) wherever
    layers have more than a few units per N rows (it warns). For a deterministic network I(X; T) of a
    continuous X is infinite: a kNN or copula estimate of it measures the estimator, not the layer (a
    binned or fixed-sigma KDE measures a noisy version of the layer, bounded by ln N).
    """
    kwargs = {"estimator": "auto", **layer_mi_kwargs}
    i_xt = [float(layer_mi(x, t, **kwargs)) for t in layers]
    i_ty = [float(_layer_and_labels(t, labels, kwargs)) for t in layers]
    return i_xt, i_ty


def _layer_and_labels(t, labels, kwargs):
    """I(T; Y) by the chosen estimator, class ids read as such (information_plane_point)."""
    ids = isinstance(labels, torch.Tensor) and labels.dim() == 1 and not labels.is_floating_point()
    if not ids:
        return layer_mi(t, labels, **kwargs)
    if kwargs["estimator"] == "kde":
        return label_mi(t, labels, **{k: v for k, v in kwargs.items() if k != "estimator"})
    chosen = ESTIMATORS.get(kwargs["estimator"])  # an unknown name: layer_mi's error
    if chosen is not None and not chosen.takes_symbols:  # the registry says which read class ids
        readers = ["kde", *(name for name, cls in ESTIMATORS.items() if cls.takes_symbols)]
        raise ValueError(f"information_plane_point: estimator={chosen.name!r} (it reads no integer symbols) has no "
                         f"form for class ids; use one of {readers}")
    return layer_mi(t, labels, **kwargs)


def plot_information_plane(points, path, title="Information plane"):
    """PNG of the information plane from a list of per-epoch (i_xt, i_ty) points, one line per layer,
    coloured by epoch."""
    if not points:
        raise ValueError("plot_information_plane needs at least one (i_xt, i_ty) point")
    fig = new_figure(figsize=(6, 4.5))
    ax = fig.subplots()
    layers = len(points[0][0])
    for k in range(layers):
        xs, ys = [p[0][k] for p in points], [p[1][k] for p in points]
        ax.plot(xs, ys, "-", color="gray", lw=0.6, alpha=0.6)
        scatter = ax.scatter(xs, ys, c=range(len(points)), cmap="viridis", s=14)
        ax.annotate(f"T{k + 1}", (xs[-1], ys[-1]), fontsize=8)
    fig.colorbar(scatter, ax=ax, label="epoch")
    ax.set(xlabel="I(X; T)", ylabel="I(T; Y)", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def new_figure(**kwargs):
    """A matplotlib Figure that saves to files by itself: no pyplot, so the user's plotting back-end and
    open figures are left alone."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install 'fastmi[bench]' or matplotlib") from e
    return Figure(**kwargs)
