"""fastmi.Regularizer: an MI term between successive layers of a model, for the training loss."""
import inspect
import math
import weakref

import torch
from torch import nn

from .api import UNITS, chain_mi, layer_mi, make_estimator
from .backend import BACKENDS
from .estimators import ESTIMATORS
from .inputs import choice
from .warn import warn_user

DEFAULT_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
PAIR_WORK = 64  # kappa: per pair of rows and layer, the exps, sums and weights in flop-equivalents (CPU)


class Regularizer:
    """Captures chosen layers' outputs with forward hooks; `reg()` returns the loss term

        -weight * sum_k I(h_k; h_{k+1})     (maximize=True; +weight * ... when maximize=False)

    over successive pairs of the captured layers, in the order they ran in the latest forward pass.

    Args:
        model: the nn.Module whose layers are watched.
        layers: None (every Linear / Conv layer), or a list of submodule names or modules.
        weight: the loss weight.
        estimator, **estimator_kwargs: passed to fastmi.chain_mi ("kde": every layer's work once per
            step) or fastmi.layer_mi (e.g. sigma=, divergence=, backend=, and group= for the
            global-batch estimate under torch.distributed).
        maximize: True for -weight * MI (raise MI between layers, as in Hodas & Stinis 2018);
            False for +weight * MI (bottleneck-style minimisation).
        max_samples: if the batch has more rows, use this many, the same random rows for every layer
            (drawn from a private generator, so the model's own randomness is untouched); "auto":
            the number whose MI term costs about `budget` forward passes of the watched layers
            (Regularizer.auto_samples, the cost model).
        budget: with max_samples="auto", the cost of the term in forward passes (default 1.0).
        every: compute on every n-th call only; the other calls return 0 and capture nothing.
        seed: seed of the row-subsampling generator.

    `reg.last` holds the latest per-pair MI values (floats, in the estimator's units) for logging,
    `reg.samples` the number of rows they used and `reg.modelled_overhead` the cost model's overhead of
    that call in forward passes of the watched layers (auto_samples). Activations are released by
    `reg()`; `reg.remove()` (or leaving a `with` block) removes the hooks.

    Maximising a KDE MI with a rule bandwidth (the default) has degenerate optima: points pushed into
    tight clusters relative to the median distance, the estimate approaching its ceiling ln N. Large
    weights get there (measured: README, "Does enforcing MI between layers speed training?"); the
    saturation RuntimeWarning of layer_mi then fires during training.
    """

    def __init__(self, model, layers=None, weight=1.0, estimator="kde", maximize=True, max_samples=None,
                 every=1, seed=0, budget=None, **estimator_kwargs):
        common = inspect.signature(layer_mi).parameters
        options = {k: v for k, v in estimator_kwargs.items() if k not in common}
        if not make_estimator(choice(estimator, "estimator", tuple(ESTIMATORS)), options).differentiable:
            raise ValueError("the Regularizer needs a differentiable estimator: 'kde', or 'unit' with soft=True; "
                             f"got estimator={estimator!r} with {options}")
        choice(estimator_kwargs.get("units", "nats"), "units", UNITS)
        choice(estimator_kwargs.get("backend", "auto"), "backend", BACKENDS)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ValueError(f"weight must be a finite number, got {weight!r}")
        if not isinstance(maximize, bool):
            raise TypeError(f"maximize must be a bool, got {maximize!r}")
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        if not (max_samples is None or max_samples == "auto" or (isinstance(max_samples, int) and max_samples >= 2)):
            raise ValueError(f"max_samples must be None, an int >= 2 or 'auto', got {max_samples!r}")
        if budget is not None and (max_samples != "auto" or not (isinstance(budget, (int, float)) and budget > 0)):
            raise ValueError(f"budget must be a positive number, with max_samples='auto'; got budget={budget!r} "
                             f"and max_samples={max_samples!r}")
        self.modules = _resolve_layers(model, layers)
        self.weight, self.maximize, self.max_samples, self.every = float(weight), maximize, max_samples, every
        self.budget = 1.0 if budget is None else float(budget)
        self.estimator, self.estimator_kwargs = estimator, estimator_kwargs
        self.last, self.samples, self.modelled_overhead = [], None, None
        self._fan_in = {}  # module index -> fan-in of its latest run (for max_samples="auto")
        self._calls = 0
        self._captured = {}  # module index -> latest output, in the order the modules ran
        self._generator = torch.Generator().manual_seed(seed)
        self._handles = [m.register_forward_hook(_Capture(self, i)) for i, m in enumerate(self.modules)]

    def _capture(self, index, module, inputs, output):
        if self._calls % self.every != 0:
            return  # this step will not compute: keep nothing alive
        if isinstance(output, (tuple, list)):
            output = output[0]
        self._captured.pop(index, None)  # a module that runs twice counts at its latest run
        self._captured[index] = output
        self._fan_in[index] = _fan_in(module, inputs)

    def __call__(self):
        computing = self._calls % self.every == 0
        if computing and len(self._captured) < 2:
            raise RuntimeError("call the Regularizer after a forward pass of the model: "
                               f"{len(self._captured)} of its {len(self.modules)} layers produced output")
        self._calls += 1
        if not computing:
            return torch.zeros((), device=self._device())
        activations = [h.reshape(h.shape[0], -1) for h in self._captured.values()]
        self._warn_if_no_gradient(activations)
        fan_ins = [self._fan_in[index] for index in self._captured]
        self._captured = {}
        activations = self._subsample(activations, fan_ins)
        if self.estimator == "kde":
            values = chain_mi(activations, **self.estimator_kwargs)
        else:
            values = torch.stack([layer_mi(h, h_next, estimator=self.estimator, **self.estimator_kwargs)
                                  for h, h_next in zip(activations, activations[1:])])
        self.last = values.detach().tolist()
        total = values.sum()
        return -self.weight * total if self.maximize else self.weight * total

    def _warn_if_no_gradient(self, activations):
        training = torch.is_grad_enabled() and any(m.training for m in self.modules)
        if training and not any(h.requires_grad for h in activations):
            warn_user("Regularizer: the watched layers' latest outputs carry no gradient (their forward ran "
                      "under torch.no_grad(), e.g. a validation pass), so reg() measures that pass and its "
                      "term gives the model no gradient; call reg() right after the training forward")

    def _subsample(self, activations, fan_ins):
        sizes = [h.shape[0] for h in activations]
        if len(set(sizes)) > 1:
            raise ValueError(f"the watched layers saw different batch sizes {sizes}: MI needs paired rows")
        n, widths = sizes[0], [h.shape[1] for h in activations]
        limit = self.max_samples
        if limit == "auto":
            limit = self.auto_samples(n, widths, fan_ins, self.budget)
        self.samples = n if limit is None else min(n, limit)
        self.modelled_overhead = self.overhead_model(n, self.samples, widths, fan_ins)
        if self.samples == n:
            return activations
        rows = torch.randperm(n, generator=self._generator)[:self.samples]
        return [h[rows.to(h.device)] for h in activations]

    @staticmethod
    def auto_samples(n, widths, fan_ins, budget=1.0):
        """The number of rows whose MI term costs about `budget` forward passes of the watched layers.

        Cost model (flops, each layer's work once per step as chain_mi does it): the term on n rows
        costs n^2 sum_m (4 D_m + kappa): per layer the distances of the forward (n^2 D_m with symmetric
        blocks), those of the backward (n^2 D_m) and its weighted sum S @ X (2 n^2 D_m), plus kappa per
        pair of rows for the exps, sums and weights; a forward pass of the watched layers on N rows
        costs 2 N sum_m D_m F_m (D_m: a layer's output numel per sample, F_m: its fan-in). So

            overhead / forward = n^2 sum_m (4 D_m + kappa) / (2 N sum_m D_m F_m),

        and n = sqrt(budget * 2 N sum D F / sum (4 D + kappa)), at least 2 and at most N."""
        scale = Regularizer.overhead_model(n, 1, widths, fan_ins)
        return n if scale == 0 else max(2, min(n, math.isqrt(int(budget / scale))))

    @staticmethod
    def overhead_model(n, samples, widths, fan_ins):
        """The cost model's MI term on `samples` of n rows, in forward passes of the watched layers."""
        forward = 2 * n * sum(d * f for d, f in zip(widths, fan_ins))
        return samples ** 2 * sum(4 * d + PAIR_WORK for d in widths) / forward if forward else 0.0

    def _device(self):
        return next((p.device for m in self.modules for p in m.parameters()), torch.device("cpu"))

    def remove(self):
        """Remove the hooks and drop any captured activation."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._captured = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


class _Capture:
    """The forward hook of one watched module. It refers to its Regularizer weakly and acts only on the
    module it was registered on, so a deep copy of the model (an EMA copy, say) carries an inert hook,
    and a pickled or saved model carries one that does nothing."""

    def __init__(self, regularizer, index):
        self.regularizer, self.index = weakref.ref(regularizer), index

    def __call__(self, module, inputs, output):
        regularizer = self.regularizer()
        if regularizer is not None and module is regularizer.modules[self.index]:
            regularizer._capture(self.index, module, inputs, output)

    def __reduce__(self):
        return _inert_hook, ()


def _inert_hook():
    return _Inert()


class _Inert:
    def __call__(self, module, inputs, output):
        return None


def _resolve_layers(model, layers):
    if layers is not None and not isinstance(layers, (list, tuple)):
        raise TypeError(f"layers must be None or a list of layer names or modules, got {type(layers).__name__}")
    if layers is None:
        modules = [m for m in model.modules() if isinstance(m, DEFAULT_LAYER_TYPES)]
    else:
        named = dict(model.named_modules())
        owned = {id(m) for m in named.values()}
        modules = []
        for layer in layers:
            if isinstance(layer, str):
                if layer not in named or layer == "":
                    raise ValueError(f"model has no layer named {layer!r}; it has {[n for n in named if n]}")
                modules.append(named[layer])
            elif isinstance(layer, nn.Module) and id(layer) in owned:
                modules.append(layer)
            else:
                raise ValueError(f"{layer!r} is neither a layer name nor a submodule of the model")
    repeated = sorted({i for i, m in enumerate(modules) if any(m is other for other in modules[:i])})
    if repeated:
        raise ValueError(f"layers lists the same module more than once (positions {repeated}): MI of a layer "
                         "with itself is its entropy, not a dependence between layers")
    if len(modules) < 2:
        raise ValueError(f"the Regularizer needs at least two layers to pair, found {len(modules)}")
    return modules


def _fan_in(module, inputs):
    """Inputs per output element: Linear and Conv exactly; any other module as a dense map from its input."""
    if isinstance(module, nn.Linear):
        return module.in_features
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.in_channels // module.groups * math.prod(module.kernel_size)
    x = inputs[0] if inputs else None
    return x[0].numel() if isinstance(x, torch.Tensor) and x.dim() > 0 else 0
