"""fastmi.Regularizer: an MI term between successive layers of a model, for the training loss."""
import inspect

import torch
from torch import nn

from .api import layer_mi, make_estimator
from .estimators import ESTIMATORS
from .inputs import choice

DEFAULT_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class Regularizer:
    """Captures chosen layers' outputs with forward hooks; `reg()` returns the loss term

        -weight * sum_k I(h_k; h_{k+1})     (maximize=True; +weight * ... when maximize=False)

    over successive pairs of the captured layers, in the order they ran in the latest forward pass.

    Args:
        model: the nn.Module whose layers are watched.
        layers: None (every Linear / Conv layer), or a list of submodule names or modules.
        weight: the loss weight.
        estimator, **estimator_kwargs: passed to fastmi.layer_mi (e.g. sigma=, bound=, backend=, and
            group= for the global-batch estimate under torch.distributed).
        maximize: True for -weight * MI (raise MI between layers, as in Hodas & Stinis 2018);
            False for +weight * MI (bottleneck-style minimisation).
        max_samples: if the batch has more rows, use this many, the same random rows for every layer
            (drawn from a private generator, so the model's own randomness is untouched).
        every: compute on every n-th call only; the other calls return 0 and capture nothing.
        seed: seed of the row-subsampling generator.

    `reg.last` holds the latest per-pair MI values (floats, in the estimator's units) for logging.
    Activations are released by `reg()`; `reg.remove()` (or leaving a `with` block) removes the hooks.
    """

    def __init__(self, model, layers=None, weight=1.0, estimator="kde", maximize=True, max_samples=None,
                 every=1, seed=0, **estimator_kwargs):
        options = {k: v for k, v in estimator_kwargs.items() if k not in inspect.signature(layer_mi).parameters}
        if not make_estimator(choice(estimator, "estimator", tuple(ESTIMATORS)), options).differentiable:
            raise ValueError("the Regularizer needs a differentiable estimator: 'kde', or 'unit' with soft=True; "
                             f"got estimator={estimator!r} with {options}")
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 2):
            raise ValueError(f"max_samples must be None or an int >= 2, got {max_samples!r}")
        self.modules = _resolve_layers(model, layers)
        self.weight, self.maximize, self.max_samples, self.every = float(weight), maximize, max_samples, every
        self.estimator_kwargs = dict(estimator=estimator, **estimator_kwargs)
        self.last = []
        self._calls = 0
        self._captured = {}  # module index -> latest output, in the order the modules ran
        self._generator = torch.Generator().manual_seed(seed)
        self._handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.modules)]

    def _hook(self, index):
        def capture(module, inputs, output):
            if self._calls % self.every != 0:
                return  # this step will not compute: keep nothing alive
            if isinstance(output, (tuple, list)):
                output = output[0]
            self._captured.pop(index, None)  # a module that runs twice counts at its latest run
            self._captured[index] = output
        return capture

    def __call__(self):
        computing = self._calls % self.every == 0
        if computing and len(self._captured) < 2:
            raise RuntimeError("call the Regularizer after a forward pass of the model: "
                               f"{len(self._captured)} of its {len(self.modules)} layers produced output")
        self._calls += 1
        if not computing:
            return torch.zeros((), device=self._device())
        activations = [h.reshape(h.shape[0], -1) for h in self._captured.values()]
        self._captured = {}
        activations = self._subsample(activations)
        values = [layer_mi(h, h_next, **self.estimator_kwargs)
                  for h, h_next in zip(activations, activations[1:])]
        self.last = [float(v.detach()) for v in values]
        total = torch.stack(values).sum()
        return -self.weight * total if self.maximize else self.weight * total

    def _subsample(self, activations):
        sizes = [h.shape[0] for h in activations]
        if len(set(sizes)) > 1:
            raise ValueError(f"the watched layers saw different batch sizes {sizes}: MI needs paired rows")
        n = sizes[0]
        if self.max_samples is None or n <= self.max_samples:
            return activations
        rows = torch.randperm(n, generator=self._generator)[: self.max_samples]
        return [h[rows.to(h.device)] for h in activations]

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


def _resolve_layers(model, layers):
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
    if len(modules) < 2:
        raise ValueError(f"the Regularizer needs at least two layers to pair, found {len(modules)}")
    return modules
