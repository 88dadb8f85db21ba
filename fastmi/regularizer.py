"""fastmi.Regularizer: dependence terms between a model's layers (and its input or the labels) for the training loss."""
import functools
import inspect
import math
import weakref

import torch
from torch import nn

from . import bandwidth
from .api import chain_mi, label_mi, layer_mi, make_estimator, one_hot_labels
from .backend import BACKENDS
from .budget import Calibration, clock_for
from .distributed import agreed_minimum
from .estimators import ESTIMATORS
from .inputs import choice, class_ids
from .measures import MEASURES, hsic_terms
from .pipeline import UNITS, validated
from .warn import warn_user

DEFAULT_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
PAIR_WORK = 64  # kappa: per pair of rows and layer, the exps, sums and weights in flop-equivalents (CPU)
PAIRS = ("successive", "input", "labels")
INPUT = "input"  # the _Capture index of the model's input (a forward pre-hook on the model)
FORWARD_START, FORWARD_END = "forward start", "forward end"  # max_samples="auto": the model's forward timed
MIN_SAMPLES = 128  # max_samples="auto": the fewest rows it takes (a term on fewer says little)
SATURATED = 0.9  # a KDE term above this fraction of its ceiling ln n has little room to move


class Regularizer:
    """Captures chosen layers' outputs with forward hooks; `reg()` returns the loss term

        -weight * sum_k T_k     (maximize=True; +weight * sum_k T_k when maximize=False)

    with one term T_k per pair of operands, chosen by `pairs`:

        "successive":  T_k = I(h_k; h_{k+1}), successive captured layers in the order they ran in the
                       latest forward pass;
        "input":       T_k = I(x; h_k) for every captured layer, x the model's input (the first
                       positional argument of its latest forward, flattened per sample);
        "labels":      T_k = I(h_k; y) for every captured layer, y given at the call: reg(labels=y).
                       Integer class ids (N,): with the KDE, fastmi.label_mi (Saxe et al.'s
                       class-conditional KDE MI); with another estimator, the term of h_k and one-hot
                       rows of y. Floating targets (N,) or (N, ...): a layer, flattened per sample.

    and I the MI of `estimator` (fastmi.layer_mi), or estimator="hsic": T = fastmi.hsic, the biased
    HSIC V-statistic of Gretton et al. 2005 with RBF kernels (unbiased=True: Song et al. 2012).

    The information bottleneck, sum_k [I(X; T_k) - beta I(T_k; Y)], or the HSIC bottleneck of Ma et al.
    2019, sum_k [HSIC(X, T_k) - beta HSIC(Y, T_k)], is two Regularizers on the same model:

        compress = Regularizer(model, pairs="input", maximize=False, estimator="hsic")
        predict = Regularizer(model, pairs="labels", maximize=True, weight=beta, estimator="hsic")
        loss = task_loss(model(x), y) + compress() + predict(labels=y)

    Args:
        model: the nn.Module whose layers are watched.
        layers: None (every Linear / Conv layer), or a list of submodule names or modules; at least two
            for pairs="successive", one otherwise.
        weight: the loss weight.
        estimator: with its options (the keyword arguments after it): "hsic" with those of fastmi.hsic (sigma=,
            unbiased=, group=, ...), or an estimator of fastmi.layer_mi with its options (e.g. sigma=,
            divergence=, backend=, and group= for the global-batch estimate under torch.distributed);
            the KDE's successive terms go through fastmi.chain_mi (every layer's work once per step).
            A pair of sigma specs applies to each term's operands in the order written above, except for
            class ids under the KDE: label_mi takes one spec, h_k's (the labels' kernel is its indicator).
        maximize: True for -weight * sum (raise the dependence, as Hodas & Stinis 2018 do between
            layers); False for +weight * sum (bottleneck-style minimisation).
        max_samples: if the batch has more rows, use this many, the same random rows for every layer,
            the input and the labels (drawn from a private generator, so the model's own randomness is
            untouched); "auto": the number whose terms cost about `budget` forward passes of the model,
            measured: the first 17 computing calls time whole training steps (the period between
            successive reg() calls) with the terms on trial row counts and, at 8 of them, without the
            terms (control steps: reg() returns 0), then n is frozen (fastmi.budget). The cost model
            (Regularizer.auto_samples) gives the first trial. reg.calibrate() starts over; so does a
            change of the watched layers' widths.
        budget: with max_samples="auto", the cost of the terms per computing call in forward passes of
            the model (default 1.0).
        min_samples: with max_samples="auto", the fewest rows (default 128, or the batch): where the
            terms on this many rows cost more than the budget, they still use them, with a warning that
            says what budget they need.
        clock: with max_samples="auto", a callable returning seconds (default time.perf_counter; CUDA
            events for CUDA layers): what times the steps, e.g. a fake clock in tests.
        every: compute on every n-th call only; the other calls return 0 and capture nothing.
        seed: seed of the row-subsampling generator.
        pairs: "successive" (default), "input" or "labels", as above.

    `reg.last` holds the latest per-term values (floats, in the order of the terms above) for logging,
    `reg.last_call` the index (from 0) of the call that computed them (calls skipped by every= or a
    one-row batch leave both as they were),
    `reg.samples` the number of rows they used and `reg.modelled_overhead` the cost model's overhead of
    that call in forward passes of the watched layers (auto_samples); with max_samples="auto",
    `reg.measured_overhead` the measured cost of the frozen row count in forward passes of the model
    (None while calibrating). Activations are released by
    `reg()`; `reg.remove()` (or leaving a `with` block) removes the hooks.

    Maximising a KDE MI with a rule bandwidth (the default) has degenerate optima: points pushed into
    tight clusters relative to the median distance, the estimate approaching its ceiling ln N. Large
    weights get there (measured: docs/regularizer.md, "Does enforcing MI between layers speed training?"); the
    saturation RuntimeWarning of layer_mi then fires during training.
    """

    def __init__(self, model, layers=None, weight=1.0, estimator="kde", maximize=True, max_samples=None,
                 every=1, seed=0, budget=None, pairs="successive", min_samples=None, clock=None,
                 **estimator_kwargs):
        self.pairs = choice(pairs, "pairs", PAIRS)
        self._term, estimator_kwargs = _term_function(estimator, estimator_kwargs)
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
        if min_samples is not None and (max_samples != "auto" or not isinstance(min_samples, int) or min_samples < 2):
            raise ValueError("min_samples must be an int >= 2, with max_samples='auto'; got "
                             f"min_samples={min_samples!r} and max_samples={max_samples!r}")
        if clock is not None and max_samples != "auto":
            raise ValueError("clock= times the steps of max_samples='auto'; this Regularizer has "
                             f"max_samples={max_samples!r}")
        self._minimum = 2 if pairs == "successive" else 1  # captured layers a term needs
        self.modules = _resolve_layers(model, layers, pairs, self._minimum)
        names = {id(m): name for name, m in model.named_modules()}
        self._names = [names[id(m)] or type(m).__name__ for m in self.modules]  # for error messages
        self.weight, self.maximize, self.max_samples, self.every = float(weight), maximize, max_samples, every
        self.budget = 1.0 if budget is None else float(budget)
        self.min_samples = MIN_SAMPLES if min_samples is None else min_samples
        self._clock = clock_for(clock, torch.device("cpu")) if clock is not None else None
        self._calibration, self._widths = None, None  # max_samples="auto": its Calibration, of these widths
        self._forward = None  # max_samples="auto": the (start, end) clock marks of the latest forward
        self.estimator, self.estimator_kwargs = estimator, estimator_kwargs
        self.last, self.samples, self.modelled_overhead = [], None, None
        self.last_call = None  # the index (from 0) of the reg() call that produced reg.last
        # module index -> fan-in of its latest run (max_samples="auto"); every key from the start, so that
        # torch.compile sees one dict shape (a key added at the first step was a recompile)
        self._fan_in = dict.fromkeys(range(len(self.modules)), 0)
        self._calls = 0
        # whether the hooks keep the next forward's outputs: a bool the hooks read instead of the call
        # count, which torch.compile would guard on (a recompile per step); with every=1 it never changes
        self._capturing = True
        self._captured = {}  # module index -> latest output, in the order the modules ran
        self._input = None  # pairs="input": the positional arguments of the model's latest forward
        self._model = model if pairs == "input" or max_samples == "auto" else None
        self._generator = torch.Generator().manual_seed(seed)
        self._handles = [m.register_forward_hook(_Capture(self, i)) for i, m in enumerate(self.modules)]
        if pairs == "input":
            self._handles.append(model.register_forward_pre_hook(_Capture(self, INPUT)))
        if max_samples == "auto":
            self._handles += [model.register_forward_pre_hook(_Capture(self, FORWARD_START)),
                              model.register_forward_hook(_Capture(self, FORWARD_END))]

    def _hooked(self, index):
        """The module that the hook with this index was registered on."""
        return self._model if index in (INPUT, FORWARD_START, FORWARD_END) else self.modules[index]

    def _capture(self, index, module, inputs, output):
        if index in (FORWARD_START, FORWARD_END):
            return self._time_forward(index)
        if not self._capturing:
            return  # this step will not compute: keep nothing alive
        if index == INPUT:
            self._input = inputs
            return
        if isinstance(output, (tuple, list)):
            output = output[0]
        self._captured.pop(index, None)  # a module that runs twice counts at its latest run
        self._captured[index] = output
        self._fan_in[index] = _fan_in(module, inputs)

    def __call__(self, *, labels=None):
        """The loss term of the latest forward pass; labels=: the batch's y, with pairs="labels" only. A call
        that raises (bad labels, a NaN in a layer) changes nothing: the captured activations stay, the call
        does not count. A batch of one row (a last partial batch) gives 0 and a warning, like a skipped step."""
        if self.pairs != "labels" and labels is not None:
            raise TypeError(f"labels= is for pairs='labels'; this Regularizer has pairs={self.pairs!r}")
        if not self._handles:
            raise RuntimeError("this Regularizer's hooks were removed (reg.remove(), or its `with` block ended), "
                               "so it captures nothing: build a new Regularizer to go on")
        mark = self._step_mark()
        if self._calls % self.every != 0:
            return self._skipped()
        if len(self._captured) < self._minimum:
            raise RuntimeError("call the Regularizer after a forward pass of the model: "
                               f"{len(self._captured)} of its {len(self.modules)} layers produced output")
        layers = [_per_sample(h) for h in self._captured.values()]
        other, shard = self._checked_operands(layers, labels)
        if layers[0].shape[0] < 2 and self.estimator_kwargs.get("group") is None:
            warn_user(f"Regularizer: a batch of {layers[0].shape[0]} row has no dependence to measure, so the term "
                      "is 0 for this step (a last partial batch? DataLoader(drop_last=True) avoids it)")
            return self._skipped()
        self._warn_if_no_gradient(layers)
        widths, fan_ins = _cost_operands(layers, [self._fan_in[index] for index in self._captured], other)
        rows = self._rows(layers[0].shape[0], widths, fan_ins)
        if rows is None:  # a control step of max_samples="auto"'s calibration
            self._started(None, mark)
            return self._skipped()
        rows_state = self._generator.get_state()
        try:
            values = self._terms(*self._subsample(layers, other, rows), shard)
        except Exception as error:
            self._generator.set_state(rows_state)  # changes nothing: not even the rows the next call draws
            raise self._named(error, layers, other) from error
        self.last, self.last_call = values.detach().tolist(), self._calls
        self.samples, self.modelled_overhead = rows, self.overhead_model(layers[0].shape[0], rows, widths, fan_ins)
        self._started(rows, mark)
        self._count_call()
        self._captured, self._input = {}, None
        total = values.sum()
        return -self.weight * total if self.maximize else self.weight * total

    def _skipped(self):
        """A counted call without a term (every=, a one-row batch): 0, nothing kept, reg.last unchanged."""
        self._count_call()
        self._captured, self._input = {}, None
        return torch.zeros((), device=self._device())

    def _named(self, error, layers, other):
        """error, or a ValueError that names the watched module (or the input, the labels) whose values
        are not finite, where the estimator's check found one (it knows its operands only by position)."""
        operands = [(f"the output of layer {self._names[index]!r}", h) for index, h in zip(self._captured, layers)]
        if other is not None and other.is_floating_point():
            operands.append(("the model's input x" if self.pairs == "input" else "labels", other))
        for name, x in operands:
            if not bool(torch.isfinite(x.detach()).all()):
                return ValueError(f"Regularizer: {name} contains NaN or Inf")
        return error

    def _count_call(self):
        self._calls += 1
        self._capturing = self._calls % self.every == 0

    def _checked_operands(self, layers, labels):
        """(the operand every term pairs a layer with: None, the model's input x or the labels; the shard
        under group=), after checking that the layers, and x or the labels, have one batch size. Under
        group= with x or labels every rank checks first and agrees (pipeline.validated): bad labels on one rank
        are the same error on every rank, and none is left waiting in a collective."""
        def validate(_):
            sizes = [h.shape[0] for h in layers]
            if len(set(sizes)) > 1:
                raise ValueError(f"the watched layers saw different batch sizes {sizes}: MI needs paired rows")
            other = self._other_operand(labels)
            if other is not None and other.shape[0] != sizes[0]:
                name = "the model's input x" if self.pairs == "input" else "labels"
                raise ValueError(f"{name} has {other.shape[0]} rows but the watched layers' batch has {sizes[0]}: "
                                 "the terms pair them row by row")
            return layers + ([] if other is None else [other])
        # successive terms have nothing beside the layers to agree on (layer_mi / chain_mi agree on those):
        # no extra collective per step there
        group = None if self.pairs == "successive" else self.estimator_kwargs.get("group")
        checked, shard = validated(validate, group)
        return (checked[-1] if len(checked) > len(layers) else None), shard

    def _terms(self, layers, other, shard):
        """The 1-d tensor of terms: I(h_k; h_k+1), I(x; h_k) or I(h_k; y) (or HSIC), in that order. The KDE's
        successive terms are one chain (chain_mi) and HSIC terms one pass (measures.hsic_terms): each
        operand's work once per step, not once per term it is in."""
        if other is not None and not other.is_floating_point():  # class ids, (N, 1)
            if self.estimator == "kde":
                return torch.stack([label_mi(h, other[:, 0], **self.estimator_kwargs) for h in layers])
            other = one_hot_labels(other[:, 0], layers[0].dtype, shard)
        operands, pairs = _term_operands(self.pairs, layers, other)
        if self.estimator == "kde" and self.pairs == "successive":
            return chain_mi(layers, **self.estimator_kwargs)
        if self.estimator == "hsic":
            specs = _operand_sigmas(self.estimator_kwargs.get("sigma", "median"), pairs, len(operands))
            if specs is not None:
                return hsic_terms(operands, pairs, **dict(self.estimator_kwargs, sigma=specs))
        return torch.stack([self._term(operands[a], operands[b]) for a, b in pairs])

    def _other_operand(self, labels):
        """None (successive), the model's input x, or the labels as an (N, columns) matrix."""
        if self.pairs == "input":
            return self._model_input()
        if self.pairs == "labels":
            if labels is None:
                raise TypeError("pairs='labels' measures I(h_k; y): pass the batch's labels, reg(labels=y)")
            return _label_rows(labels)
        return None

    def _model_input(self):
        """x of pairs="input": the model's latest first positional argument, flattened per sample."""
        if self._input is None:
            raise RuntimeError("pairs='input': call the Regularizer after a forward pass of the model itself "
                               "(its input was not captured)")
        x = self._input[0] if self._input else None
        if not (isinstance(x, torch.Tensor) and x.is_floating_point() and x.dim() > 0):
            raise TypeError("pairs='input' measures I(x; h_k) with x the model's first positional argument, a "
                            f"floating tensor with a row per sample; the latest forward got {_described(self._input)}")
        return _per_sample(x)

    def _warn_if_no_gradient(self, activations):
        training = torch.is_grad_enabled() and any(m.training for m in self.modules)
        if training and not any(h.requires_grad for h in activations):
            warn_user("Regularizer: the watched layers' latest outputs carry no gradient (their forward ran "
                      "under torch.no_grad(), e.g. a validation pass), so reg() measures that pass and its "
                      "term gives the model no gradient; call reg() right after the training forward")

    def _rows(self, n, widths, fan_ins):
        """The rows this call's terms use: all, max_samples, or max_samples="auto"'s (None: a control step)."""
        if self.max_samples is None:
            return n
        if self.max_samples != "auto":
            return min(n, self.max_samples)
        if self._calibration is None or self._widths != widths:
            group = self.estimator_kwargs.get("group")
            agree = (lambda rows: rows) if group is None else functools.partial(
                agreed_minimum, group=group, device=self._device())
            first = self.auto_samples(n, widths, fan_ins, self.budget)
            self._calibration = Calibration(first, n, self.budget, self.min_samples, self._step_clock(), agree)
            self._widths = widths
        rows = self._calibration.rows()
        return None if rows is None else min(n, rows)

    def _subsample(self, layers, other, rows):
        """(layers, other) on `rows` of their rows, drawn at random, the same rows for all."""
        n = layers[0].shape[0]
        if rows == n:
            return layers, other
        rows = torch.randperm(n, generator=self._generator)[:rows]
        # index_select: its backward (index_add_ into zeros) took half the time of indexing's (index_put)
        # for 128 of 512 rows of a 32k-wide conv output on the CPU
        picked = [h.index_select(0, rows.to(h.device)) for h in layers]
        return picked, None if other is None else other.index_select(0, rows.to(other.device))

    def calibrate(self):
        """max_samples="auto": measure again from the next call (after a change of batch size, say)."""
        if self.max_samples != "auto":
            raise ValueError("calibrate() is for max_samples='auto'; this Regularizer has "
                             f"max_samples={self.max_samples!r}")
        self._calibration = None

    @property
    def measured_overhead(self):
        """max_samples="auto": the frozen row count's measured cost in forward passes (None before)."""
        calibration = self._calibration
        return None if calibration is None or calibration.calibrating else calibration.measured_overhead

    def _step_clock(self):
        if self._clock is None:
            self._clock = clock_for(None, self._device())
        return self._clock

    def _step_mark(self):
        """max_samples="auto" while calibrating: the clock's mark of this call's start, which ends the step
        of the previous computing call; None otherwise."""
        calibration = self._calibration
        if self.max_samples != "auto" or (calibration is not None and not calibration.calibrating):
            return None
        mark = self._step_clock().mark()
        forward, self._forward = self._forward, None
        if calibration is not None:
            calibration.record(mark, forward if forward and forward[1] is not None else None)
            if not calibration.calibrating:
                self._settle(calibration)
        return mark

    def _started(self, rows, mark):
        if self._calibration is not None and mark is not None:
            self._calibration.start(rows, mark)

    def _settle(self, calibration):
        """The warnings the frozen n asks for."""
        message = calibration.over_budget()
        if message:
            warn_user(f"Regularizer: {message}")
        n = calibration.frozen
        if self.estimator == "kde" and self.last and max(self.last) > SATURATED * math.log(self.samples):
            warn_user(f"Regularizer: a term of {max(self.last):.2f} nats on {self.samples} rows is near its ceiling "
                      f"ln {self.samples} = {math.log(self.samples):.2f}; max_samples='auto' froze {n} rows: a larger "
                      "budget or min_samples gives the terms room to move")

    def _time_forward(self, index):
        if torch.compiler.is_compiling():  # a clock read would break the graph: the forward is estimated
            return
        calibration = self._calibration
        if calibration is not None and not calibration.calibrating:
            return
        if index == FORWARD_START:
            self._forward = (self._step_clock().mark(), None)
        elif self._forward is not None:
            self._forward = (self._forward[0], self._step_clock().mark())

    @staticmethod
    def auto_samples(n, widths, fan_ins, budget=1.0):
        """The number of rows whose terms cost about `budget` forward passes of the watched layers.

        Cost model (flops, each layer's work once per step as chain_mi does it): the terms on n rows
        cost n^2 sum_m (4 D_m + kappa): per operand the distances of the forward (n^2 D_m with symmetric
        blocks), those of the backward (n^2 D_m) and its weighted sum S @ X (2 n^2 D_m), plus kappa per
        pair of rows for the exps, sums and weights; a forward pass of the watched layers on N rows
        costs 2 N sum_m D_m F_m (D_m: a layer's output numel per sample, F_m: its fan-in). So

            overhead / forward = n^2 sum_m (4 D_m + kappa) / (2 N sum_m D_m F_m),

        and n = sqrt(budget * 2 N sum D F / sum (4 D + kappa)), at least 2 and at most N. With
        pairs="input" or "labels" the sums over m also count the input x (its numel per sample) or
        the labels (the number of classes, or the targets' numel per sample) once per term, with F = 0:
        every term works on that operand, which the watched layers do not compute (an upper bound for
        an input without gradient). estimator="hsic" uses the same model (the same distances, exps and
        weighted sums per pair of rows)."""
        scale = Regularizer.overhead_model(n, 1, widths, fan_ins)
        return n if scale == 0 else max(2, min(n, math.isqrt(int(budget / scale))))

    @staticmethod
    def overhead_model(n, samples, widths, fan_ins):
        """The cost model's terms on `samples` of n rows, in forward passes of the watched layers."""
        forward = 2 * n * sum(d * f for d, f in zip(widths, fan_ins))
        return samples ** 2 * sum(4 * d + PAIR_WORK for d in widths) / forward if forward else 0.0

    def _device(self):
        return next((p.device for m in self.modules for p in m.parameters()), torch.device("cpu"))

    def remove(self):
        """Remove the hooks and drop any captured activation."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._captured, self._input = {}, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


class _Capture:
    """The forward hook of one watched module, or the forward pre-hook of the model (index INPUT). It
    refers to its Regularizer weakly and acts only on the module it was registered on, so a deep copy of
    the model (an EMA copy, say) carries an inert hook, and a pickled or saved model carries one that
    does nothing."""

    def __init__(self, regularizer, index):
        self.regularizer, self.index = weakref.ref(regularizer), index

    def __call__(self, module, inputs, output=None):
        regularizer = self.regularizer()
        if regularizer is not None and module is regularizer._hooked(self.index):
            regularizer._capture(self.index, module, inputs, output)

    def __reduce__(self):
        return _inert_hook, ()


def _inert_hook():
    return _Inert()


class _Inert:
    def __call__(self, module, inputs, output=None):
        return None


def _term_operands(pairs, layers, other):
    """(operands, [(a, b)]): the terms as pairs of operand indices, in the order of reg.last."""
    count = len(layers)
    if pairs == "successive":
        return layers, [(k, k + 1) for k in range(count - 1)]
    if pairs == "input":
        return [other, *layers], [(0, k + 1) for k in range(count)]
    return [*layers, other], [(k, count) for k in range(count)]


def _operand_sigmas(sigma, pairs, count):
    """One sigma spec per operand such that every term (a, b) gets the pair (sigma_a, sigma_b) it is given,
    or None where an operand would need two (a pair of different specs on successive layers)."""
    if not isinstance(sigma, (tuple, list)):
        return [sigma] * count
    if len(sigma) != 2:
        return None  # each term's hsic call then names the problem
    specs = [None] * count
    for a, b in pairs:
        for index, spec in ((a, sigma[0]), (b, sigma[1])):
            if specs[index] is not None and specs[index] is not spec and specs[index] != spec:
                return None
            specs[index] = spec
    return specs


def _term_function(estimator, options):
    """(term(a, b) -> a differentiable 0-d tensor, the options as checked): a measure of MEASURES, or layer_mi
    with a differentiable estimator. The options' names and values are checked here, when the Regularizer is
    built (sigma by fastmi.bandwidth, in the estimator's or the measure's convention; the KDE's old rule
    names spelled anew, so their FutureWarning is said once)."""
    choice(estimator, "estimator", (*ESTIMATORS, *MEASURES))
    differentiable = [name for name, measure in MEASURES.items() if measure.differentiable]
    if estimator in MEASURES:
        measure = MEASURES[estimator]
        if not measure.differentiable:
            raise ValueError(f"the Regularizer needs a differentiable measure; {estimator!r} is not (those that are: "
                             f"{differentiable})")
        known = [name for name, p in inspect.signature(measure).parameters.items() if p.kind == p.KEYWORD_ONLY]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"estimator={estimator!r} takes the options {known}, got {unknown}")
        choice(options.get("backend", "auto"), "backend", BACKENDS)
        if "sigma" in options:
            bandwidth.measure_sigma(options["sigma"], 2)  # one spec, or a pair: each term's (a, b)
        return functools.partial(measure, **options), options
    common = inspect.signature(layer_mi).parameters
    own = {k: v for k, v in options.items() if k not in common}
    built = make_estimator(estimator, own)
    if not built.differentiable:
        raise ValueError("the Regularizer needs a differentiable estimator: 'kde', 'unit' with soft=True, or a "
                         f"measure of fastmi.MEASURES {differentiable}; got estimator={estimator!r} with {own}")
    choice(options.get("units", "nats"), "units", UNITS)
    choice(options.get("backend", "auto"), "backend", BACKENDS)
    if "sigma" in options:
        options = dict(options, sigma=built.sigma)
    return functools.partial(layer_mi, estimator=estimator, **options), options


def _label_rows(labels):
    """reg(labels=...) as an (N, columns) matrix: class ids (N,) as (N, 1) int64, or floating targets
    flattened per sample."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor (class ids or targets), got {type(labels).__name__}")
    if not labels.is_floating_point():
        return class_ids(labels)[:, None]
    if labels.dim() == 0:
        raise ValueError("labels must have a row per sample, got a 0-d tensor")
    return _per_sample(labels)


def _per_sample(x):
    """x flattened per sample, (N, features), also for N = 0 (a torch.distributed shard may be empty)."""
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def _described(args):
    """What a forward's first positional argument was, for an error."""
    if not args:
        return "no positional argument"
    x = args[0]
    return f"a {x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


def _cost_operands(layers, fan_ins, other):
    """(widths, fan-ins) of the cost model's operands: the layers, then, with the input or the labels, that
    operand once per term (every term works on it; it is not a layer: no fan-in)."""
    widths = [h.shape[1] for h in layers]
    if other is None:
        return widths, fan_ins
    return widths + [_width(other)] * len(layers), fan_ins + [0] * len(layers)


def _width(operand):
    """An operand's width for the cost model: its columns, or the number of classes of class ids (N, 1)."""
    if operand.is_floating_point():
        return operand.shape[1]
    return int(operand.max()) + 1 if operand.numel() else 1


def _resolve_layers(model, layers, pairs, minimum):
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
    if len(modules) < minimum:
        needed = "two layers to pair" if minimum == 2 else "one layer"
        raise ValueError(f"the Regularizer with pairs={pairs!r} needs at least {needed}, found {len(modules)}")
    return modules


def _fan_in(module, inputs):
    """Inputs per output element: Linear and Conv exactly; any other module as a dense map from its input."""
    if isinstance(module, nn.Linear):
        return module.in_features
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.in_channels // module.groups * math.prod(module.kernel_size)
    x = inputs[0] if inputs else None
    return x[0].numel() if isinstance(x, torch.Tensor) and x.dim() > 0 else 0
