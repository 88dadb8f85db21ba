"""fastmi.hsic, fastmi.cka, fastmi.cka_matrix, fastmi.distance_correlation and fastmi.MinibatchCKA: kernel
dependence measures without an N x N matrix (docs/design.md, "Dependence measures"), differentiable.

RBF kernel k(x, y) = exp(-||x - y||^2 / (2 sigma^2)). sigma: a positive float in the data's units, "median"
(the median distance between rows of an evenly strided subsample of <= 256 rows: the field's median
heuristic, Gretton et al. 2005), a callable rule(n, d, x) -> float in the data's units, or one of those per
input (a pair for two inputs). The bandwidth is a constant of the gradient (detached), as in the literature.
"""
import math

import torch

from . import bandwidth
from .inputs import as_tensors, check_bool, choice, plain_result, result_dtype, sample_matrices
from .measures import centred
from .measures.pair_sums import gram_sums
from .warn import warn_user

CKA_KERNELS = ("rbf", "linear")


def hsic(a, b, *, sigma="median", unbiased=False, check_finite=True):
    """HSIC with RBF kernels: biased HSIC_b = (1/N^2) tr(K H L H) (Gretton et al. 2005), or the unbiased
    estimator of Song et al. 2012 (unbiased=True, N >= 4). A 0-d tensor (float64 for float64 inputs,
    float32 otherwise), differentiable w.r.t. a and b."""
    check_bool(unbiased, "unbiased")
    layers, plain = _inputs([("a", a), ("b", b)], check_finite, unbiased)
    return _result(_hsic_matrix(layers, "rbf", sigma, unbiased)[0, 1], layers, plain)


def cka(a, b, *, kernel="rbf", sigma="median", unbiased=False, check_finite=True):
    """Centered kernel alignment (Kornblith et al. 2019): HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), with
    RBF kernels (sigma as for hsic) or linear ones (K = a a^T of the centred input, through D x D Gram
    matrices); the biased or the unbiased HSIC. In [0, 1] (biased); CKA(a, a) = 1. A constant input has
    no variance to align: NaN, with a RuntimeWarning."""
    matrix, layers, plain = _cka([("a", a), ("b", b)], kernel, sigma, unbiased, check_finite)
    return _result(matrix[0, 1], layers, plain)


def cka_matrix(activations, *, kernel="rbf", sigma="median", unbiased=False, check_finite=True):
    """(L, L) CKA of every pair of L layers of one batch (paired rows; each flattened per sample), the
    plot people make to compare networks: each layer's kernel tiles are computed once per tile and serve
    all its pairs (one pass, not L(L - 1)/2). Options as for cka; sigma one spec for every layer or one
    per layer. A constant layer's row and column are NaN (with a RuntimeWarning). Differentiable."""
    if not isinstance(activations, (list, tuple)) or not activations:
        raise TypeError(f"activations must be a non-empty list or tuple of tensors, got {type(activations).__name__}")
    named = [(f"activations[{m}]", x) for m, x in enumerate(activations)]
    return _result(*_cka(named, kernel, sigma, unbiased, check_finite))


def distance_correlation(a, b, *, check_finite=True):
    """Distance correlation (Szekely, Rizzo & Bakirov 2007), the V-statistic as dcor.distance_correlation
    returns it: sqrt(dCov^2(a, b) / sqrt(dVar^2(a) dVar^2(b))), in [0, 1]; 0 when an input is constant
    (the definition). The distance has no gradient at 0 (the diagonal, duplicate rows): it is taken as 0
    there, as torch.cdist does. A 0-d tensor, differentiable."""
    layers, plain = _inputs([("a", a), ("b", b)], check_finite, False)
    if _constant(layers):  # 0, still connected to the inputs (a zero gradient, not an error)
        return _result(0.0 * (layers[0].sum() + layers[1].sum()).double(), layers, plain)
    moments = centred.biased(*gram_sums(layers, "distance"))
    ratio = moments[0, 1].clamp_min(0) / (moments[0, 0] * moments[1, 1]).sqrt()
    positive = ratio > 0  # sqrt has no derivative at 0: the gradient there is 0
    return _result(torch.where(positive, torch.where(positive, ratio, 1.0).sqrt(), 0.0), layers, plain)


class MinibatchCKA:
    """CKA over a dataset larger than a batch (Nguyen et al. 2021): the unbiased HSIC of every layer pair,
    averaged over batches, then normalised — an unbiased estimate of the population HSICs, so the result
    does not depend on the batch size the way a per-batch average of CKA does.

        acc = fastmi.MinibatchCKA(kernel="linear")
        for x in loader: acc.update([h(x) for h in layers])       # L activations of one batch
        acc.value()                                                # (L, L) CKA

    Batches need N >= 4 rows; every batch has the same L layers. With kernel="rbf" and sigma="median" each
    batch takes its own median bandwidth (pass a float, or one per layer, for one kernel throughout).
    Detached (a measurement)."""

    def __init__(self, *, kernel="linear", sigma="median", check_finite=True):
        self.kernel, self.sigma = choice(kernel, "kernel", CKA_KERNELS), sigma
        self.check_finite = check_bool(check_finite, "check_finite")
        self.total, self.batches = None, 0

    @torch.no_grad()
    def update(self, activations):
        if not isinstance(activations, (list, tuple)) or not activations:
            raise TypeError(f"activations must be a non-empty list or tuple of tensors, got {type(activations).__name__}")
        names = [f"activations[{m}]" for m in range(len(activations))]
        layers, _ = _inputs(list(zip(names, activations)), self.check_finite, True)
        hsics = _hsic_matrix(layers, self.kernel, self.sigma, True)
        if self.total is not None and self.total.shape != hsics.shape:
            raise ValueError(f"every batch must have the same layers: {self.total.shape[0]} before, {len(layers)} now")
        self.total = hsics if self.total is None else self.total + hsics
        self.batches += 1

    def value(self):
        """(L, L) float64 CKA of the batches so far."""
        if self.total is None:
            raise RuntimeError("MinibatchCKA.value() before any update()")
        mean = self.total / self.batches
        empty = mean.diagonal() <= 0
        if bool(empty.any()):
            warn_user(f"MinibatchCKA: layers {empty.nonzero().flatten().tolist()} have no variance (constant, or too "
                      "few rows per batch for the unbiased HSIC): CKA with them is NaN")
        scale = mean.diagonal().clamp_min(0).sqrt()
        return (mean / (scale[:, None] * scale[None, :])).masked_fill(empty[:, None] | empty[None, :], math.nan)


def _cka(named, kernel, sigma, unbiased, check_finite):
    """(CKA matrix, layers, plain) of [(name, input)]."""
    choice(kernel, "kernel", CKA_KERNELS)
    check_bool(unbiased, "unbiased")
    layers, plain = _inputs(named, check_finite, unbiased)
    return _cka_from_hsic(_hsic_matrix(layers, kernel, sigma, unbiased), layers, [n for n, _ in named]), layers, plain


def _inputs(named, check_finite, unbiased):
    """Validated (N, D_m) layers in the dtype the pass computes in (float64 or float32), and whether every
    input was an array-like (the result is then a Python float or a numpy array)."""
    tensors, plain = as_tensors(named)
    layers = sample_matrices([(name, x) for (name, _), x in zip(named, tensors)], check_finite)
    if unbiased and layers[0].shape[0] < 4:
        raise ValueError(f"the unbiased HSIC divides by N - 3: it needs N >= 4 rows, got N = {layers[0].shape[0]}")
    work = torch.float64 if layers[0].dtype == torch.float64 else torch.float32
    # centred: every measure ignores shifts, and the distances' GEMM loses digits with an offset
    return [x.to(work) - x.detach().to(work).mean(dim=0) for x in layers], plain


def _hsic_matrix(layers, kernel, sigma, unbiased):
    """(L, L) HSIC of every pair of layers (biased or unbiased), float64, from one pass."""
    if kernel == "linear":
        sums, rows, diagonals = _linear_sums(layers)
    else:
        gammas = [0.5 / _bandwidth(x, spec) ** 2 for x, spec in zip(layers, _specs(sigma, len(layers)))]
        sums, rows = gram_sums(layers, "rbf", gammas)
        diagonals = torch.ones_like(rows)  # an RBF kernel's diagonal
    return centred.unbiased(sums, rows, diagonals) if unbiased else centred.biased(sums, rows)


def _linear_sums(layers):
    """S, R and the diagonals of the linear kernels K_m = x_m x_m^T of the centred layers from D x D
    Grams: sum_ij K_ij L_ij = ||x^T y||_F^2, K 1 = x (x^T 1), diag K = |x_i|^2 (float64)."""
    centred_layers = [x.double() - x.double().mean(dim=0) for x in layers]
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
    if isinstance(sigma, (tuple, list)):
        if len(sigma) != count:
            raise ValueError(f"sigma as a sequence must have one spec per input ({count}), got {sigma!r}")
        return sigma
    return (sigma,) * count


def _bandwidth(x, spec):
    """sigma in the data's units: a positive float, "median", or a callable rule(n, d, x)."""
    n, d = x.shape
    if isinstance(spec, str) and spec == "median":
        value = float(bandwidth.median(n, d, x.detach(), fraction=1.0))
    elif callable(spec):
        value = float(spec(n, d, x.detach()))
    elif isinstance(spec, (int, float)) and not isinstance(spec, bool):
        value = float(spec)
    else:
        raise ValueError(f"sigma must be a positive float, 'median', a callable rule(n, d, x) or one of those per "
                         f"input, got {spec!r}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"sigma must be positive and finite, got {value!r}")
    return value


def _result(value, layers, plain):
    value = value.to(result_dtype(*layers))
    return plain_result(value) if plain else value
