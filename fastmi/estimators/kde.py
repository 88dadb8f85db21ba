"""Pairwise-distance Gaussian-KDE MI (docs/design.md, "The KDE estimator"): options, operands, autograd.

    SA_i = sum_j exp(-alpha_ij),  SB_i = sum_j exp(-beta_ij),  SJ_i = sum_j exp(-alpha_ij - beta_ij)
    I = (1/N) sum_i [ln SJ_i - ln SA_i - ln SB_i] + ln N        (nats; ln(N - 1) when leaving one out)

alpha_ij is the divergence between the Gaussian kernels at a_i and a_j: ||a_i - a_j||^2 / (2 sigma_a^2)
for KL, / (8 sigma_a^2) for Bhattacharyya (Kolchinsky & Tracey 2017). The inputs are centred and
scaled here so that a back-end only sees exp2(-||x_i - x_j||^2).

Everything runs as a chain of L >= 2 layers side by side (a pair is the chain of two): the back-ends
(kernels/kde.py, kde_torch.py) give the layers' marginal and the successive pairs' joint log-sums, and
the gradients, over a range of rows behind two custom ops; one autograd Function serves a single
process and torch.distributed alike. In a chain each layer's operand and kernel blocks are computed
once and serve both pairs the layer belongs to.
"""
import math

import torch

from .. import kernels
from ..backend import op_or_function, opaque
from ..bandwidth import (
    KDE_MEDIAN,
    column_centres,
    column_extremes,
    column_mean_std,
    column_scales,
    depends_on_dimension,
    kde_sigma,
    rule_factor,
    rule_of,
    split_sigma,
    squared_distances,
)
from ..inputs import check_bool, choice
from ..warn import warn_user
from . import kde_torch
from .base import Estimator

LOG2E = 1.0 / math.log(2.0)
DIVERGENCE_FACTOR = {"kl": 1.0 / 2.0, "bhattacharyya": 1.0 / 8.0}  # alpha = factor * ||da / sigma||^2
SATURATION = 0.95  # warn when the estimate is within 5% of its ceiling ln N
NULL_BYTES = 256 << 20  # mi_test keeps both N x N kernel matrices up to this size (float32: N <= 5792)


class KDE(Estimator):
    """estimator="kde": sigma (a float in the data's units, a rule name, a callable rule, or a pair),
    divergence ("kl" or "bhattacharyya"), loo (leave one out)."""
    name = "kde"
    differentiable = True
    compiles = True  # custom ops with fake implementations (docs/design.md, "torch.compile")
    triton_kernels = True

    def __init__(self, *, sigma=KDE_MEDIAN, divergence="kl", loo=False, bound=None):
        if bound is not None:
            warn_user("layer_mi(bound=...) is now divergence=...: the estimate is a difference of pairwise-"
                      "divergence entropy estimates, not a bound", FutureWarning)
            divergence = bound
        self.sigma = kde_sigma(sigma)
        self.divergence = choice(divergence, "divergence", tuple(DIVERGENCE_FACTOR))
        self.loo = check_bool(loo, "loo")

    @torch.no_grad()
    def with_null(self, a, b, permutations, backend):
        """The estimate and its surrogates from the two N x N kernel matrices K_a, K_b, computed once: a
        permutation p of b's rows permutes b's marginal sums and makes the joint sums
        sum_j K_a[i, j] K_b[p_i, p_j] (one gather and one product per pair, no distances or exps). Every
        surrogate keeps the unpermuted data's bandwidth (its marginal is the same; the median rule's row
        subsample would otherwise differ). Leave-one-out, or matrices over NULL_BYTES: one plain call
        each, at that same bandwidth."""
        frozen = KDE(sigma=tuple(_frozen(spec) for spec in split_sigma(self.sigma)), divergence=self.divergence,
                     loo=self.loo)
        dtype = operand_dtype("torch", a)
        n = a.shape[0]
        if self.loo or 2 * n * n * dtype.itemsize > NULL_BYTES:
            return Estimator.with_null(frozen, a, b, permutations, backend)
        as_a, as_b = frozen._operand_keys([a.shape[1], b.shape[1]])
        ka, kb = (kernel_matrix(frozen._operand(x, x, key, dtype, None)[0])
                  for x, key in ((a, as_a[0]), (b, as_b[0])))
        marginals = ka.sum(1).log().mean() + kb.sum(1).log().mean() - math.log(n)
        rows, product = torch.empty_like(ka[:ROW_BLOCK]), torch.empty_like(ka[:ROW_BLOCK])
        joints = [joint_log_sums(ka, kb, p.to(ka.device), rows, product).mean()
                  for p in [torch.arange(n), *permutations]]
        _warn_if_saturated(joints[0][None] - marginals, n)
        return joints[0] - marginals, torch.stack(joints[1:]) - marginals

    def __call__(self, a, b, backend, shard, *more):
        """MI in nats of validated (N, D) a, b of one dtype: a 0-d tensor; with more layers, the (L - 1,) MI of
        each successive pair of (a, b, *more) (chain). One method for both: a pair is a chain of two, and
        layer_mi then reaches the autograd Function in one frame.

        A layer's operand (centring, bandwidth, scale) is computed once where both pairs it belongs to
        give it the same bandwidth: always for a float sigma and the "standardized_median" rule; for a rule
        of the joint dimension (Silverman, Scott, a callable) only where the two pairs' Da + Db agree. Where
        they do not, every pair is computed on its own."""
        layers = [a, b, *more]
        as_a, as_b = self._operand_keys([x.shape[1] for x in layers])
        if as_a[1:] != as_b[:-1]:  # a middle layer would need two operands
            return torch.cat([self.chain(layers[m:m + 2], backend, shard) for m in range(len(layers) - 1)])
        dtype = operand_dtype(backend, layers[0])
        everys = layers if shard is None else [shard.gather(x) for x in layers]
        operands = [self._operand(x, every, key, dtype, shard)
                    for x, every, key in zip(layers, everys, [as_a[0], *as_b])]
        offsets = [0]
        for x in layers:
            offsets.append(offsets[-1] + x.shape[1])
        x = torch.cat([own for own, _ in operands], dim=1)
        x_all = None if shard is None else torch.cat([every for _, every in operands], dim=1)
        n = everys[0].shape[0]
        values = KDEChain.apply(x, x_all, offsets, self.loo, backend, shard)
        values = values + math.log(n - 1 if self.loo else n)
        if not torch.compiler.is_compiling():  # the checks read the values: a sync, and a graph break
            _check_overflow(values.detach(), layers, self.sigma, dtype)
            _warn_if_saturated(values.detach(), n, self.loo)
        return values if more else values[0]

    def pointwise(self, a, b, backend, shard):
        """(N,) per-row terms ln J_i - ln S^a_i - ln S^b_i + ln N (N - 1 with loo) of validated a, b, whose mean
        is the estimate: the same operands, the N x N log-kernels formed densely in torch (the Gram form,
        as the back-ends), differentiable through autograd; O(N^2) memory, whatever the back-end."""
        as_a, as_b = self._operand_keys([a.shape[1], b.shape[1]])
        dtype = operand_dtype("torch", a)
        log_a, log_b = (_log_kernel(self._operand(x, x, key, dtype, None)[0], self.loo)
                        for x, key in ((a, as_a[0]), (b, as_b[0])))
        marginals = torch.logsumexp(log_a, dim=1) + torch.logsumexp(log_b, dim=1)
        n = a.shape[0]
        return torch.logsumexp(log_a + log_b, dim=1) - marginals + math.log(n - 1 if self.loo else n)

    def chain(self, layers, backend, shard):
        """(L - 1,) MI in nats of each successive pair of validated (N, D_m) layers of one dtype (__call__)."""
        values = self(layers[0], layers[1], backend, shard, *layers[2:])
        return values if len(layers) > 2 else values[None]

    def _operand_keys(self, widths):
        """What a layer's operand depends on as the a of each pair and as the b of each pair:
        two lists of (spec, joint dimension, or None where the bandwidth does not depend on it)."""
        specs = split_sigma(self.sigma)
        pairs = list(zip(widths[:-1], widths[1:]))
        return tuple([(spec, da + db if depends_on_dimension(spec) else None) for da, db in pairs]
                     for spec in specs)

    def _operand(self, own, every, key, dtype, shard):
        """(this process's rows, every row or None) of one layer as a back-end operand: centred on the
        column means, or medians where an outlier drags a mean (bandwidth.column_centres: exact, as
        distances ignore shifts), and column c scaled by sqrt(factor * log2 e) / sigma_c. With a rule,
        sigma_c = std_c * factor, the column means and stds in the autograd graph (under a shard: the
        global ones, whose gradient sums every rank's partials) and the rule's factor detached; the
        columns are first divided by powers of two near their largest values (exact), so subnormal or
        huge inputs keep their stds."""
        spec, joint_dim = key
        work = torch.float64 if own.dtype == torch.float64 else torch.float32
        mine = every is own  # no shard: one tensor, one pass per step below
        own = own.to(work)
        every = own if mine else every.to(work)
        constant = math.sqrt(DIVERGENCE_FACTOR[self.divergence] * LOG2E)
        n = every.shape[0]
        if rule_of(spec) is None:
            centre, scale = column_centres(every), constant / float(spec)
        else:
            lo, hi = column_extremes(every)  # for the scales and the centres' outlier test alike
            scales = column_scales(every, (lo, hi))
            own = own / scales
            every = own if mine else every / scales
            mean, std = column_mean_std(own, None if shard is None else shard.sum_partials, n)
            # the moments of every row (global under a shard; / scales is exact): column_centres need not
            # pass over them again
            variance = std.detach().square() * ((n - 1) / max(n, 1))
            centre = column_centres(every, (mean.detach(), variance, lo / scales, hi / scales))
            z = ((every - centre) / std).detach()
            scale = constant / std / rule_factor(spec, n, joint_dim, z)
        x = ((own - centre) * scale).to(dtype)
        return x, None if shard is None else ((every - centre) * scale).detach().to(dtype)


def _log_kernel(x, loo):
    """(N, N) natural-log kernel -ln2 |x_i - x_j|^2 of a prepared operand (exp2 of minus the squared
    distance), -inf on the diagonal with leave-one-out."""
    log_k = squared_distances(x) * -math.log(2.0)
    return log_k.diagonal_scatter(torch.full_like(log_k[0], -math.inf)) if loo else log_k


ROW_BLOCK = 256  # rows of K_b gathered at a time by joint_log_sums


def kernel_matrix(x):
    """(N, N) exp2(-||x_i - x_j||^2) of a prepared operand: the torch back-end's kernel tile, all of it."""
    n = x.shape[0]
    return kde_torch.kernel_tile(kde_torch.Layer(x), (0, n, 0, n), x.new_empty((n, n)))


def joint_log_sums(ka, kb, p, rows, product):
    """(N,) ln sum_j K_a[i, j] K_b[p_i, p_j], ROW_BLOCK rows at a time in the buffers rows and product."""
    n = ka.shape[0]
    out = ka.new_empty(n)
    for lo in range(0, n, ROW_BLOCK):
        hi = min(lo + ROW_BLOCK, n)
        gathered = torch.index_select(kb, 0, p[lo:hi], out=rows[:hi - lo])
        torch.gather(gathered, 1, p.expand(hi - lo, n), out=product[:hi - lo])
        torch.sum(product[:hi - lo].mul_(ka[lo:hi]), 1, out=out[lo:hi])
    return out.log_()


def _frozen(spec):
    """A float sigma as it is; a rule as a callable that returns the rule's value at its first call (the
    unpermuted data) at every later call (mi_test's surrogates)."""
    rule = rule_of(spec)
    if rule is None:
        return spec
    first = []

    def frozen(n, d, z):
        if not first:
            first.append(rule(n, d, z))
        return first[0]
    return frozen


def operand_dtype(backend, like):
    """The dtype the back-end computes in: float64 or float32 on the torch path; the input's own on the
    Triton path, except bfloat16 under the interpreter (whose bf16 arithmetic is wrong)."""
    if backend == "torch":
        return torch.float64 if like.dtype == torch.float64 else torch.float32
    return torch.float32 if like.dtype == torch.bfloat16 and not like.is_cuda else like.dtype


# name -> the back-end module: cache_elements(...), chain_log_sums(...), chain_grads(...), one interface
BACKENDS = {"triton": kernels.kde, "torch": kde_torch}


# Custom ops, so that torch.compile and torch.export see one opaque op (with a fake implementation
# for shapes) instead of a graph break at the kernel launch. Rows row_start:row_stop against every column.

def _sum_dtype(x, backend):
    return torch.float32 if backend == "triton" else x.dtype


def _cache_elements(x, offsets, loo, backend, row_start, row_stop):
    return BACKENDS[backend].cache_elements(x.shape[0], offsets, loo, (row_start, row_stop), x.dtype)


def chain_log_sums(x, offsets, loo, backend, row_start, row_stop):
    """(2L - 1, rows) natural-log kernel sums (the layers' marginals, then the successive pairs' joints),
    and the kernel tiles the back-end keeps for the backward (a flat tensor, empty where it keeps none)."""
    cache = x.new_empty((_cache_elements(x, offsets, loo, backend, row_start, row_stop),))
    try:
        sums = BACKENDS[backend].chain_log_sums(x, offsets, loo, rows=(row_start, row_stop),
                                                cache=cache if cache.numel() else None)
    except kernels.KernelUnavailable:  # this triton cannot build the kernel (warned once): torch, in float32
        sums = kde_torch.chain_log_sums(x.float(), offsets, loo, rows=(row_start, row_stop))
    return sums, cache


def chain_grads(x, offsets, sums, weights, cache, loo, backend, row_start, row_stop):
    """d(sum_l weights_l * sum of pair l's row terms)/dx before the factor 2 ln2 / N; sums: every row's."""
    try:
        return BACKENDS[backend].chain_grads(x, offsets, sums, weights, loo, rows=(row_start, row_stop),
                                             cache=cache if cache.numel() else None)
    except kernels.KernelUnavailable:  # this triton cannot build the kernel (warned once): torch, in float32
        return kde_torch.chain_grads(x.float(), offsets, sums, weights, loo, rows=(row_start, row_stop))


def _chain_log_sums_shapes(x, offsets, loo, backend, row_start, row_stop):
    return (x.new_empty((2 * len(offsets) - 3, row_stop - row_start), dtype=_sum_dtype(x, backend)),
            x.new_empty((_cache_elements(x, offsets, loo, backend, row_start, row_stop),)))


@opaque("fastmi::kde_chain_log_sums", _chain_log_sums_shapes)
def chain_log_sums_op(x: torch.Tensor, offsets: list[int], loo: bool, backend: str, row_start: int,
                      row_stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    return chain_log_sums(x, offsets, loo, backend, row_start, row_stop)


def _chain_grads_shapes(x, offsets, sums, weights, cache, loo, backend, row_start, row_stop):
    return x.new_empty((row_stop - row_start, x.shape[1]), dtype=_sum_dtype(x, backend))


@opaque("fastmi::kde_chain_grads", _chain_grads_shapes)
def chain_grads_op(x: torch.Tensor, offsets: list[int], sums: torch.Tensor, weights: torch.Tensor,
                   cache: torch.Tensor, loo: bool, backend: str, row_start: int, row_stop: int) -> torch.Tensor:
    return chain_grads(x, offsets, sums, weights, cache, loo, backend, row_start, row_stop)


class KDEChain(torch.autograd.Function):
    """(L - 1,) mean_i (ln J^l_i - ln S^l_i - ln S^{l+1}_i) over the whole batch, for each successive pair
    of the L layers side by side in x (columns offsets[m]:offsets[m+1]); differentiable in x.

    x: this process's rows; x_all: None without a shard, else every rank's rows (gathered, detached).
    A rank sums its own rows against every column and the sums are all-reduced; the gathered log-sums
    of every row give each rank the global estimate's gradient for its own rows, with no collective."""

    @staticmethod
    def forward(ctx, x, x_all, offsets, loo, backend, shard):
        if shard is None:
            x_all = x
        rows = (0, x_all.shape[0]) if shard is None else shard.rows
        own, cache = op_or_function(chain_log_sums_op, chain_log_sums)(x_all, offsets, loo, backend, *rows)
        every = own if shard is None else shard.gather(own, dim=1)
        count = len(offsets) - 1
        totals = (own[count:] - own[:count - 1] - own[1:count]).sum(dim=1)
        ctx.save_for_backward(x_all, every, cache)
        ctx.offsets, ctx.loo, ctx.backend, ctx.rows = offsets, loo, backend, rows
        return (totals if shard is None else shard.sum(totals)) / every.shape[1]

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():
            raise RuntimeError("fastmi's KDE estimate has first derivatives only: its backward cannot be "
                               "differentiated again (create_graph=True, double backward)")
        x_all, every, cache = ctx.saved_tensors
        weights = grad.to(every.dtype)
        grads_of = op_or_function(chain_grads_op, chain_grads)
        g = grads_of(x_all, ctx.offsets, every, weights, cache, ctx.loo, ctx.backend, *ctx.rows)
        # d/dx_k of (1/N) sum_i ln sum_j exp2(-|x_i - x_j|^2) terms = (2 ln2 / N) sum_j W_kj (x_k - x_j)
        return (g * (2.0 * math.log(2.0) / every.shape[1])).to(x_all.dtype), None, None, None, None, None


def _check_overflow(values, layers, sigma, dtype):
    """A non-finite estimate from finite inputs: with a float sigma far below the data's spread, the scaled
    squared distances overflow the back-end's dtype (a rule bandwidth is scale-free and cannot)."""
    if bool(torch.isfinite(values).all()) or not all(bool(torch.isfinite(x).all()) for x in layers):
        return
    raise ValueError(f"sigma={sigma!r} is so small against these inputs' spread that the scaled squared distances "
                     f"overflow {dtype} (every kernel value would be 0 and the estimate saturated at ln N); use "
                     "a larger sigma, a bandwidth rule such as 'standardized_median', or float64 inputs")


def _warn_if_saturated(values, n, loo=False):
    """A warning text with no numbers in it, so that the default warnings filter shows it once per call
    site. Near ln N every point's kernel sum is about its own term (the estimate is at most ln N minus
    the mean log marginal sum): too few rows per bandwidth volume in this dimension, whether the batch
    is small (a last partial batch, a small max_samples) or sigma is. Leave-one-out has no own term:
    there the same case makes each row's sums those of its nearest neighbour, and the estimate a ratio
    of tiny kernel values, unbounded either way (-276 nats seen): beyond +-ln N it means nothing."""
    if loo and any(abs(v) > math.log(n) for v in values.tolist()):
        warn_user("KDE leave-one-out MI estimate beyond +-ln N: each row's kernel sums are about those of its "
                  "nearest neighbour alone, so the estimate is a ratio of tiny kernel values and means nothing. "
                  "Too few rows for the bandwidth in this dimension: use more rows, or a larger sigma.")
        return
    if any(v >= SATURATION * math.log(n) for v in values.tolist()):
        warn_user("KDE MI estimate within 5% of its ceiling ln N: every point's kernel sum is about its own "
                  "term, so the estimate is saturated and means nothing. Too few rows for the bandwidth in "
                  "this dimension: a small batch (a last partial batch, a small max_samples) or a small "
                  "sigma. Use more rows, or a larger sigma (a float in the data's units, or a callable rule).")
