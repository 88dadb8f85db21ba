"""fastmi.hsic, fastmi.cka, fastmi.cka_matrix, fastmi.distance_correlation and fastmi.MinibatchCKA: kernel
dependence measures without an N x N matrix (docs/design.md, "Dependence measures"), differentiable.

RBF kernel k(x, y) = exp(-||x - y||^2 / (2 sigma^2)). sigma: a positive float in the data's units, "median"
(the median distance between rows of an evenly strided subsample of <= 256 rows: the field's median
heuristic, Gretton et al. 2005), a callable rule(n, d, x) -> float in the data's units, or one of those per
input (a pair for two inputs). The bandwidth is a constant of the gradient (detached), as in the literature.
"""
import contextlib
import math
from dataclasses import dataclass

import torch

from .. import bandwidth
from ..backend import BACKENDS, full_precision, resolve
from ..estimators.kde import operand_dtype
from ..inputs import as_tensors, check_bool, choice, plain_result, result_dtype, sample_matrices
from ..pipeline import validated
from ..warn import warn_user
from . import centred
from .pair_sums import gram_sums

CKA_KERNELS = ("rbf", "linear")


def capabilities(*, differentiable, supports_group, compiles, triton_kernels):
    """Declares what a registered measure (fastmi.MEASURES) can do, as an estimator's class attributes do
    for fastmi.ESTIMATORS; tests/test_contract.py checks every declaration. compiles: traced by
    torch.compile(fullgraph=True) with a float sigma (the "median" rule reads its median on the host)."""
    def declare(measure):
        measure.differentiable, measure.supports_group, measure.compiles = differentiable, supports_group, compiles
        measure.triton_kernels = triton_kernels
        return measure
    return declare


@contextlib.contextmanager
def _full_precision():
    """Autocast off on every device inside (the pair sums need full-precision GEMMs, as layer_mi's do); a
    context, not a wrapper of the public functions: no frame of its own on their path to the kernels."""
    with full_precision(torch.device("cpu")), full_precision(torch.device("cuda")):
        yield


@capabilities(differentiable=True, supports_group=True, compiles=True, triton_kernels=True)
def hsic(a, b, *, sigma="median", unbiased=False, backend="auto", check_finite=True, group=None):
    """HSIC with RBF kernels: biased HSIC_b = (1/N^2) tr(K H L H) (Gretton et al. 2005), or the unbiased
    estimator of Song et al. 2012 (unbiased=True, N >= 4). A 0-d tensor (float64 for float64 inputs,
    float32 otherwise), differentiable w.r.t. a and b. backend: "auto" (the Triton kernels for CUDA
    float32/float16/bfloat16 tensors, else torch), "triton" or "torch", as for layer_mi. group: a
    torch.distributed process group (a, b this rank's rows; the value is the global batch's, each rank's
    gradient the global one for its rows)."""
    check_bool(unbiased, "unbiased")
    bandwidth.measure_sigma(sigma, 2)
    batch = _inputs([("a", a), ("b", b)], check_finite, unbiased, group, backend)
    return _result(_hsic_matrix(batch, "rbf", sigma, unbiased)[0, 1], batch)


@capabilities(differentiable=True, supports_group=True, compiles=True, triton_kernels=True)
def cka(a, b, *, kernel="rbf", sigma="median", unbiased=False, backend="auto", check_finite=True, group=None):
    """Centered kernel alignment (Kornblith et al. 2019): HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), with
    RBF kernels (sigma as for hsic) or linear ones (K = a a^T of the centred input, through D x D Gram
    matrices); the biased or the unbiased HSIC. In [0, 1] (biased); CKA(a, a) = 1. A constant input has
    no variance to align: NaN, with a RuntimeWarning. backend, group: as for hsic (linear CKA runs torch's
    GEMMs on whichever back-end resolves; backend="triton" is still refused where the kernels cannot run)."""
    matrix, batch = _cka([("a", a), ("b", b)], kernel, sigma, unbiased, backend, check_finite, group)
    return _result(matrix[0, 1], batch)


def cka_matrix(activations, *, kernel="rbf", sigma="median", unbiased=False, backend="auto", check_finite=True,
               group=None):
    """(L, L) CKA of every pair of L layers of one batch (paired rows; each flattened per sample), the
    plot people make to compare networks: each layer's kernel tiles are computed once per tile and serve
    all its pairs (one pass, not L(L - 1)/2). Options as for cka; sigma one spec for every layer or one
    per layer. A constant layer's row and column are NaN (with a RuntimeWarning). Differentiable; backend,
    group: as for hsic (the Triton kernels take the layers in pairs: each layer's tiles once per pair)."""
    if not isinstance(activations, (list, tuple)) or not activations:
        raise TypeError(f"activations must be a non-empty list or tuple of tensors, got {type(activations).__name__}")
    named = [(f"activations[{m}]", x) for m, x in enumerate(activations)]
    return _result(*_cka(named, kernel, sigma, unbiased, backend, check_finite, group))


@capabilities(differentiable=True, supports_group=True, compiles=True, triton_kernels=True)
def distance_correlation(a, b, *, backend="auto", check_finite=True, group=None):
    """Distance correlation (Szekely, Rizzo & Bakirov 2007), the V-statistic as dcor.distance_correlation
    returns it: sqrt(dCov^2(a, b) / sqrt(dVar^2(a) dVar^2(b))), in [0, 1]; 0 when an input is constant
    (the definition). The distance has no gradient at 0 (the diagonal, duplicate rows): it is taken as 0
    there, as torch.cdist does. A 0-d tensor, differentiable; backend, group: as for hsic."""
    batch = _inputs([("a", a), ("b", b)], check_finite, False, group, backend)
    layers = batch.layers
    if _constant(batch.everys):  # 0, still connected to the inputs (a zero gradient, not an error)
        return _result(0.0 * (layers[0].sum() + layers[1].sum()).double(), batch)
    with _full_precision():
        moments = centred.biased(*gram_sums(layers, "distance", None, batch.shard, batch.everys, batch.backend,
                                            batch.dtype))
    ratio = moments[0, 1].clamp_min(0) / (moments[0, 0] * moments[1, 1]).sqrt()
    positive = ratio > 0  # sqrt has no derivative at 0: the gradient there is 0
    return _result(torch.where(positive, torch.where(positive, ratio, 1.0).sqrt(), 0.0), batch)


def hsic_terms(activations, pairs, *, sigma="median", unbiased=False, backend="auto", check_finite=True, group=None):
    """(len(pairs),) RBF HSIC of the listed (m, m') pairs of L layers of one batch, from one pass: each
    layer's bandwidth and operand once, its kernel tiles once per tile (torch) or one Triton launch per
    listed pair. The Regularizer's HSIC terms; options as for cka_matrix (sigma: one spec or one per layer)."""
    check_bool(unbiased, "unbiased")
    bandwidth.measure_sigma(sigma, len(activations))
    batch = _inputs([(f"activations[{m}]", x) for m, x in enumerate(activations)], check_finite, unbiased, group,
                    backend)
    matrix = _hsic_matrix(batch, "rbf", sigma, unbiased, pairs)
    return _result(torch.stack([matrix[a, b] for a, b in pairs]), batch)


class MinibatchCKA:
    """CKA over a dataset larger than a batch (Nguyen et al. 2021): the unbiased HSIC of every layer pair,
    averaged over batches, then normalised — an unbiased estimate of the population HSICs, so the result
    does not depend on the batch size the way a per-batch average of CKA does.

        acc = fastmi.MinibatchCKA(kernel="linear")
        for x in loader: acc.update([h(x) for h in layers])       # L activations of one batch
        acc.value()                                                # (L, L) CKA

    Batches need N >= 4 rows; every batch has the same L layers. With kernel="rbf" and sigma="median" each
    batch takes its own median bandwidth (pass a float, or one per layer, for one kernel throughout).
    Detached (a measurement). For two layers, fastmi.metrics.CKA supersedes it (torchmetrics: reset, the
    state dict, DDP synchronisation); this class stays for L layers at once."""

    def __init__(self, *, kernel="linear", sigma="median", backend="auto", check_finite=True):
        self.kernel, self.sigma = choice(kernel, "kernel", CKA_KERNELS), sigma
        bandwidth.measure_sigma(sigma)
        self.backend = choice(backend, "backend", BACKENDS)
        self.check_finite = check_bool(check_finite, "check_finite")
        self.total, self.batches = None, 0

    @torch.no_grad()
    def update(self, activations):
        if not isinstance(activations, (list, tuple)) or not activations:
            raise TypeError("activations must be a non-empty list or tuple of tensors, got "
                            f"{type(activations).__name__}")
        hsics = unbiased_hsic_matrix(activations, self.kernel, self.sigma, self.backend, self.check_finite)
        if self.total is not None and self.total.shape != hsics.shape:
            raise ValueError(f"every batch must have the same layers: {self.total.shape[0]} before, "
                             f"{len(activations)} now")
        self.total = hsics if self.total is None else self.total + hsics
        self.batches += 1

    def value(self):
        """(L, L) float64 CKA of the batches so far."""
        if self.total is None:
            raise RuntimeError("MinibatchCKA.value() before any update()")
        return cka_of_mean_hsic(self.total / self.batches, "MinibatchCKA")


def unbiased_hsic_matrix(activations, kernel, sigma, backend, check_finite):
    """(L, L) float64 unbiased HSIC (Song et al. 2012) of every pair of one batch's L layers (N >= 4 rows),
    detached: the per-batch term of minibatch CKA (MinibatchCKA, fastmi.metrics)."""
    names = [f"activations[{m}]" for m in range(len(activations))]
    with torch.no_grad():
        batch = _inputs(list(zip(names, activations)), check_finite, True, None, backend)
        return _hsic_matrix(batch, kernel, sigma, True)


def cka_of_mean_hsic(mean, who):
    """(L, L) CKA of batch-averaged unbiased HSICs (L, L): NaN, with a warning, for a layer without variance."""
    empty = mean.diagonal() <= 0
    if bool(empty.any()):
        warn_user(f"{who}: layers {empty.nonzero().flatten().tolist()} have no variance (constant, or too "
                  "few rows per batch for the unbiased HSIC): CKA with them is NaN")
    scale = mean.diagonal().clamp_min(0).sqrt()
    return (mean / (scale[:, None] * scale[None, :])).masked_fill(empty[:, None] | empty[None, :], math.nan)


def _cka(named, kernel, sigma, unbiased, backend, check_finite, group):
    """(CKA matrix, Batch) of [(name, input)]."""
    choice(kernel, "kernel", CKA_KERNELS)
    check_bool(unbiased, "unbiased")
    bandwidth.measure_sigma(sigma, len(named))
    batch = _inputs(named, check_finite, unbiased, group, backend)
    return _cka_from_hsic(_hsic_matrix(batch, kernel, sigma, unbiased), batch.everys, [n for n, _ in named]), batch


@dataclass
class Batch:
    """Validated inputs: `layers` this process's rows (centred, differentiable), `everys` every row of the
    batch (centred; detached copies under a shard), `shard` None or this rank's, `plain` whether every
    input was an array-like (the result is then a Python float or a numpy array), `backend` the resolved
    back-end ("triton" or "torch") and `dtype` its operands'."""
    layers: list
    everys: list
    shard: object
    plain: bool
    backend: str
    dtype: torch.dtype

    def differentiable_everys(self):
        """Every row of each layer, this process's rows differentiable (the others detached, as gathered)."""
        if self.shard is None:
            return self.layers
        start, stop = self.shard.rows
        return [torch.cat([every[:start], own, every[stop:]]) for every, own in zip(self.everys, self.layers)]


def _inputs(named, check_finite, unbiased, group, backend):
    """A Batch of the validated (N, D_m) layers in the dtype the pass computes in (float64 or float32),
    centred on the (global) column means, or medians where an outlier drags a mean (bandwidth.column_centres):
    every measure ignores shifts, and the distances' GEMM loses digits with an offset."""
    choice(backend, "backend", BACKENDS)
    tensors, plain = as_tensors(named)
    pairs = [(name, x) for (name, _), x in zip(named, tensors)]
    layers, shard = validated(lambda min_rows: sample_matrices(pairs, check_finite, min_rows=min_rows), group)
    n = layers[0].shape[0] if shard is None else sum(shard.sizes)
    if unbiased and n < 4:
        raise ValueError(f"the unbiased HSIC divides by N - 3: it needs N >= 4 rows, got N = {n}")
    backend = resolve(backend, layers[0])
    dtype = operand_dtype(backend, layers[0])
    work = torch.float64 if layers[0].dtype == torch.float64 else torch.float32
    layers = [x.to(work) for x in layers]
    everys = layers if shard is None else [shard.gather(x) for x in layers]
    centres = [bandwidth.column_centres(every) for every in everys]
    return Batch([x - c for x, c in zip(layers, centres)], [x - c for x, c in zip(everys, centres)], shard,
                 plain, backend, dtype)


def _hsic_matrix(batch, kernel, sigma, unbiased, pairs=None):
    """(L, L) HSIC of every pair of layers (biased or unbiased), float64, from one pass; with pairs, the
    entries of those (m, m') (the others may be left out on the Triton path)."""
    with _full_precision():
        if kernel == "linear":
            sums, rows, diagonals = _linear_sums(batch.differentiable_everys())
        else:
            specs = _specs(sigma, len(batch.layers))
            gammas = [0.5 / _bandwidth(every, spec) ** 2 for every, spec in zip(batch.everys, specs)]
            sums, rows = gram_sums(batch.layers, "rbf", gammas, batch.shard, batch.everys, batch.backend, batch.dtype,
                                   pairs)
            diagonals = torch.ones_like(rows)  # an RBF kernel's diagonal
        return centred.unbiased(sums, rows, diagonals) if unbiased else centred.biased(sums, rows)


def _linear_sums(layers):
    """S, R and the diagonals of the linear kernels K_m = x_m x_m^T of the centred layers from D x D
    Grams: sum_ij K_ij L_ij = ||x^T y||_F^2, K 1 = x (x^T 1), diag K = |x_i|^2 (float64)."""
    centred_layers = [x.double() for x in layers]  # centred by _inputs
    sums = torch.stack([torch.stack([(x.T @ y).square().sum() for y in centred_layers]) for x in centred_layers])
    rows = torch.stack([x @ x.sum(0) for x in centred_layers])
    return sums, rows, torch.stack([x.square().sum(1) for x in centred_layers])


def _cka_from_hsic(hsics, layers, names):
    constant = [m for m, x in enumerate(layers) if _constant([x])]
    if constant:
        which = ", ".join(names[m] for m in constant) + (" is" if len(constant) == 1 else " are")
        warn_user(f"cka: {which} constant (every row the same): no variance to align, CKA with it is "
                  "undefined: NaN")
    scale = hsics.diagonal().sqrt()
    matrix = hsics / (scale[:, None] * scale[None, :])
    if constant:
        nan = torch.zeros(len(layers), dtype=torch.bool, device=matrix.device)
        nan[constant] = True
        matrix = matrix.masked_fill(nan[:, None] | nan[None, :], math.nan)
    return matrix


def _constant(layers):
    """Whether any layer has every row the same (a host sync; False while torch.compile traces)."""
    return not torch.compiler.is_compiling() and any(bool((x == x[:1]).all()) for x in layers)


def _specs(sigma, count):
    """One checked spec per input (bandwidth.measure_sigma)."""
    specs = bandwidth.measure_sigma(sigma, count if isinstance(sigma, (tuple, list)) else None)
    return specs if isinstance(sigma, (tuple, list)) else specs * count


def _bandwidth(x, spec):
    """sigma in the data's units of a checked spec (bandwidth.measure_sigma): a positive float, "median" (the
    median distance between rows), or a callable rule(n, d, x), whose value is checked here."""
    n, d = x.shape
    if isinstance(spec, str):
        return float(bandwidth.median(n, d, x.detach(), fraction=1.0))
    if not callable(spec):
        return float(spec)
    value = float(spec(n, d, x.detach()))
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"the bandwidth rule {spec!r} gave sigma = {value!r}; it must return a positive float")
    return value


def _result(value, batch):
    value = value.to(result_dtype(*batch.layers))
    return plain_result(value) if batch.plain else value
