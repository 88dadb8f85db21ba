"""The public entry points fastmi.layer_mi, fastmi.unit_mi and fastmi.chain_mi: one path from the call to
an estimator.

    options -> estimator (registry)  ->  inputs validated  ->  shard (group=)  ->  back-end resolved
            -> estimator(a, b, backend, shard) with autocast off  ->  result dtype, units
"""
import torch

from .bandwidth import KDE_MEDIAN
from .estimators import ESTIMATORS
from .estimators.base import entropy as symbol_entropy
from .estimators.unit import UnitMI
from .inputs import as_tensors, chained_samples, choice, class_ids, paired_samples, plain_result, result_dtype
from .pipeline import check_common, evaluation, in_units, nan_as_result, validated
from .warn import warn_user

REDUCTIONS = ("none", "mean", "sum")


def layer_mi(a, b, *, estimator="kde", units="nats", backend="auto", check_finite=True, group=None, **options):
    """Mutual information between two activation matrices with paired rows.

    Args:
        a, b: tensors (N, ...) on one device; dims after the first are flattened per sample. Floating
            inputs are promoted to a common dtype. Integer tensors: symbols for "binned" and "auto";
            class ids (N,) on one side for "ksg" (Ross's estimator) and "gcmi" (class-conditional).
        estimator: "kde" (default), the pairwise Gaussian-KDE estimator, differentiable;
            "binned", plug-in MI of the rows' bin patterns; "unit", the mean over unit pairs of
            fastmi.unit_mi (differentiable with soft=True); "ksg", the Kraskov-Stoegbauer-Grassberger
            kNN estimator (the least biased at low intrinsic dimension); "gcmi", Gaussian-copula MI
            (exact for Gaussian copulas at any dimension); "auto", KSG or GCMI chosen from the data
            (the most accurate on the ground-truth suite: docs/which-estimator.md). Formulas:
            docs/design.md.
        units: "nats" or "bits".
        backend: "auto" (Triton kernels for CUDA tensors, torch on CPU), "triton" or "torch".
        check_finite: raise ValueError on NaN/Inf inputs (costs one pass and a sync; False skips it,
            and a non-finite input then gives NaN).
        group: a torch.distributed process group: a and b are this rank's rows, and the estimate
            (the same on every rank) is over the global batch; each rank's gradient is the global
            estimate's gradient for its own rows. Not for "ksg".
        **options: the estimator's own (an unknown one is a TypeError that lists them).

            - kde: sigma="standardized_median" (a positive float in the data's units; a rule
              "standardized_median" — a quarter of the median distance between standardised rows;
              "median" is its old spelling, with a FutureWarning —, "silverman", "scott", applied after
              per-column standardisation; a callable rule(n, d, z) returning a factor in standard
              deviations; or a pair of those for (a, b); fastmi.bandwidth.kde_sigma),
              divergence="kl" | "bhattacharyya" (the pairwise divergence between kernels:
              exp(-d^2 / 2 sigma^2) or exp(-d^2 / 8 sigma^2)),
              loo=False (leave the self term out of every kernel sum).
            - binned: bins=30, range=None ((lo, hi) for every unit; default the layer's min/max).
            - unit: bins=16, soft=False, range=None (default each unit's own min/max).
            - ksg: k=3 (nearest neighbours, 1 <= k < N; columns scaled to unit variance first).
            - gcmi: bias_correction=True (subtract the analytic bias of the Gaussian estimate).
            - auto: k=3 (KSG's, where KSG is chosen).

    Returns:
        0-d tensor, float64 for float64 inputs and float32 otherwise; differentiable with respect
        to a and b for "kde" and soft "unit". A RuntimeWarning says when a KDE estimate is within 5%
        of ln N (saturated bandwidth).
    """
    choice(estimator, "estimator", tuple(ESTIMATORS))
    return _estimate(make_estimator(estimator, options), a, b, units, backend, check_finite, group)


POINTWISE = ("kde", "ksg")  # the estimators whose estimate is the mean of per-row terms


def pointwise_mi(a, b, *, estimator="kde", units="nats", backend="auto", check_finite=True, **options):
    """(N,) per-row terms whose mean is ``layer_mi(a, b, estimator=..., **options)`` to rounding: a decomposition
    of the estimate (which rows carry the dependence), permutation-equivariant.

    "kde": ln J_i - ln S^a_i - ln S^b_i + ln N (J, S: the joint and marginal kernel sums of row i; ln (N - 1)
    with loo=True), differentiable; the N x N log-kernels are formed densely in torch (O(N^2) memory:
    ~8 N^2 bytes per side in float32), whatever the back-end. "ksg": psi(k) + psi(N) - psi(n_a,i + 1) -
    psi(n_b,i + 1), KSG's sum term by term (not a per-sample MI in the strict sense), continuous sides only.
    No group=. units, backend, check_finite and the options as for layer_mi."""
    choice(estimator, "estimator", POINTWISE)
    chosen = make_estimator(estimator, options)
    return _estimate(chosen, a, b, units, backend, check_finite, None, compute=chosen.pointwise)


def unit_mi(a, b, *, bins=16, soft=False, range=None, reduction="none", units="nats", backend="auto",
            check_finite=True, group=None):
    """MI of every unit pair (a[:, p], b[:, q]) from its bins x bins joint histogram (plug-in, nats).

    Each unit is binned into `bins` equal-width bins over its own min/max (or `range`). Hard codes
    count samples; `soft=True` spreads each sample's mass over the two nearest bin centres (linear
    interpolation), which makes the result differentiable. Returns a (Da, Db) tensor, or its mean or
    sum (`reduction`), float64 for float64 inputs and float32 otherwise. With a torch.distributed
    `group`, a and b are this rank's rows and the histograms are those of the global batch.
    """
    choice(reduction, "reduction", REDUCTIONS)
    estimator = UnitMI(bins=bins, soft=soft, range=range)
    matrix = _estimate(estimator, a, b, units, backend, check_finite, group, compute=estimator.matrix)
    return {"none": matrix, "mean": matrix.mean(), "sum": matrix.sum()}[reduction]


LABEL_SIGMA = 0.05  # one-hot labels 0.05 apart in sigmas: e^-400 between classes, below every back-end's clamp


def label_mi(a, labels, *, sigma=KDE_MEDIAN, units="nats", backend="auto", check_finite=True, group=None,
             **kde_options):
    """KDE MI between activations a (N, ...) and discrete labels (N,) (Saxe et al. 2018):

        I(T; Y) = H(T) - sum_y p(y) H(T | Y = y) = (1/N) sum_i [ln sum_{j: y_j = y_i} K_ij - ln sum_j K_ij] + H(Y)

    with class-conditional kernel sums and the plug-in H(Y). It is layer_mi's KDE estimate with an
    indicator kernel on the labels, computed as such: the labels become one-hot rows LABEL_SIGMA
    bandwidths apart (kernel e^-400 between classes, 1 within, to the float rounding of the distance
    GEMM: ~1e-5 relative in float32). Differentiable w.r.t. a; sigma and kde_options are a's (as for
    layer_mi: one spec); group= as for layer_mi. labels: integer class ids (a tensor, numpy array or
    list); an error names the labels as b."""
    (a, labels), plain = as_tensors([("a", a), ("labels", labels)])
    (labels,), shard = validated(lambda min_rows: [class_ids(labels)[:, None]], group)
    dtype = torch.float64 if a.dtype == torch.float64 else torch.float32
    one_hot = one_hot_labels(labels[:, 0], dtype, shard).to(a.device)
    value = layer_mi(a, one_hot, units=units, backend=backend, check_finite=check_finite, group=group,
                     sigma=(sigma, LABEL_SIGMA), **kde_options)
    if shard is None and not torch.compiler.is_compiling():
        _warn_if_near_label_entropy(value, labels[:, 0], units)
    return plain_result(value) if plain else value


LABEL_CEILING = 0.9  # label_mi warns at this fraction of H(Y): independent labels reach it at small N


def _warn_if_near_label_entropy(value, ids, units):
    """The KDE's small-sample bias alone brings label_mi near H(Y) (measured, 10 classes, 32 dims,
    independent labels: 94% of H(Y) at 128 rows, 82% at 512, 61% at 2048, 34% at 8192): near the
    ceiling, the estimate cannot tell a separable layer from an unrelated one. No numbers in the text,
    so the default warnings filter shows it once per call site."""
    entropy = float(symbol_entropy(ids))
    if entropy > 0 and float(value.detach()) >= LABEL_CEILING * float(in_units(torch.tensor(entropy), units)):
        warn_user("label_mi: the estimate is within 10% of the labels' entropy H(Y), which the KDE's small-sample "
                  "bias alone reaches on labels unrelated to the layer at small N (in 32 dims: 94% of H(Y) at "
                  "128 rows, 61% at 2048): check it with fastmi.mi_test(a, labels) (its null gives the bias), "
                  "estimator='auto' in layer_mi (Ross's estimator), or more rows")


def one_hot_labels(ids, dtype, shard):
    """Validated class ids (N,) as one-hot rows of `dtype`; under a shard as wide as the largest id of any
    rank (every rank needs the same width: a collective, after every rank has checked its labels)."""
    classes = torch.tensor(int(ids.max()) + 1 if ids.numel() else 1, device=ids.device)
    if shard is not None:
        classes = shard.extremes(classes, classes)[1]
    return torch.nn.functional.one_hot(ids, int(classes)).to(dtype)


def chain_mi(activations, *, units="nats", backend="auto", check_finite=True, group=None, **kde_options):
    """KDE MI of every successive pair of L layers: a 1-d tensor (L - 1,) equal to
    ``[layer_mi(activations[m], activations[m + 1], **kde_options) for m in range(L - 1)]``, differentiable.

    Each layer's work is done once per call: its operand (centring, bandwidth, scale), its kernel
    blocks (shared by the two pairs it belongs to) and, in the backward, one weighted sum per layer.
    That holds for a float sigma and the "standardized_median" rule; a rule of the joint dimension (Silverman,
    Scott, a callable rule) gives a middle layer a different bandwidth in its two pairs unless their
    widths agree, and the pairs are then computed one by one. Activations are flattened per sample and
    promoted to one dtype; errors name the layer index. Options and the rest as in layer_mi.
    """
    estimator = make_estimator("kde", kde_options)
    check_common(units, backend)
    layers, shard = validated(lambda min_rows: chained_samples(activations, check_finite, min_rows), group)
    with evaluation(layers, backend) as resolved:
        values = estimator.chain(layers, resolved, shard)
    return in_units(values.to(result_dtype(*layers)), units)


def make_estimator(name, options):
    """The registry's estimator `name` built from its options; a TypeError that lists them for an
    option it does not take."""
    cls = ESTIMATORS[name]
    unknown = sorted(set(options) - set(cls.option_names()))
    if unknown:
        raise TypeError(f"estimator={name!r} takes the options {cls.option_names()}, got {unknown}")
    return cls(**options)


def _estimate(estimator, a, b, units, backend, check_finite, group, compute=None):
    check_common(units, backend)
    if group is not None and not estimator.supports_group:
        raise ValueError(f"group= is not supported by estimator={estimator.name!r} "
                         "(gather the rows and call it on one rank)")
    (a, b), plain = as_tensors([("a", a), ("b", b)])
    (a, b), shard = validated(lambda min_rows: paired_samples(a, b, check_finite, estimator.takes_symbols, min_rows),
                               group)
    a_in, b_in, mark = nan_as_result(a, b, guard=estimator.nan_blind and not check_finite)
    with evaluation([a, b], backend) as resolved:
        value = (compute or estimator)(a_in, b_in, resolved, shard)
    value = in_units(mark(value).to(device=a.device, dtype=result_dtype(a, b)), units)
    return plain_result(value) if plain else value
