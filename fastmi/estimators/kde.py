"""Pairwise-distance Gaussian-KDE MI (docs/design.md, "The KDE estimator"): options, operands, autograd.

    SA_i = sum_j exp(-alpha_ij),  SB_i = sum_j exp(-beta_ij),  SJ_i = sum_j exp(-alpha_ij - beta_ij)
    I = (1/N) sum_i [ln SJ_i - ln SA_i - ln SB_i] + ln N        (nats; ln(N - 1) when leaving one out)

alpha_ij is the divergence between the Gaussian kernels at a_i and a_j: ||a_i - a_j||^2 / (2 sigma_a^2)
for KL, / (8 sigma_a^2) for Bhattacharyya (Kolchinsky & Tracey 2017). The inputs are centred and
scaled here so that a back-end only sees exp2(-||x_i - x_j||^2). Back-ends (kernels/kde.py,
kde_torch.py) give row log-sums and pair gradients over a range of rows behind two custom ops; one
autograd Function serves a single process and torch.distributed alike.
"""
import math

import torch

from .. import kernels
from ..bandwidth import check_sigma, column_bandwidths, split_sigma
from ..inputs import check_bool, choice
from ..warn import warn_user
from . import kde_torch
from .base import Estimator

LOG2E = 1.0 / math.log(2.0)
DIVERGENCE_FACTOR = {"kl": 1.0 / 2.0, "bhattacharyya": 1.0 / 8.0}  # alpha = factor * ||da / sigma||^2
SATURATION = 0.95  # warn when the estimate is within 5% of its ceiling ln N
BACKENDS = {"triton": kernels.kde, "torch": kde_torch}  # each: log_sums(...), pair_grads(...)


class KDE(Estimator):
    """estimator="kde": sigma (a float in the data's units, a rule name, a callable rule, or a pair),
    divergence ("kl" or "bhattacharyya"), loo (leave one out)."""
    name = "kde"
    differentiable = True

    def __init__(self, *, sigma="median", divergence="kl", loo=False, bound=None):
        if bound is not None:
            warn_user("layer_mi(bound=...) is now divergence=...: the estimate is a difference of pairwise-"
                      "divergence entropy estimates, not a bound", FutureWarning)
            divergence = bound
        check_sigma(sigma)
        self.sigma = sigma
        self.divergence = choice(divergence, "divergence", tuple(DIVERGENCE_FACTOR))
        self.loo = check_bool(loo, "loo")

    def __call__(self, a, b, backend, shard):
        dtype = operand_dtype(backend, a)
        a_all, b_all = (a, b) if shard is None else (shard.gather(a), shard.gather(b))
        joint_dim = a.shape[1] + b.shape[1]
        operands = []
        for own, every, spec in zip((a, b), (a_all, b_all), split_sigma(self.sigma)):
            mean, scale = operand_scale(every, spec, joint_dim, self.divergence)
            x = kernel_operand(own, mean, scale, dtype)
            operands.append((x, None if shard is None else kernel_operand(every, mean, scale, dtype)))
        (x, x_all), (y, y_all) = operands
        n = a_all.shape[0]
        estimate = KDEEstimate.apply(x, y, x_all, y_all, self.loo, backend, shard)
        estimate = estimate + math.log(n - 1 if self.loo else n)
        if not torch.compiler.is_compiling():  # the check reads the value: a sync, and a graph break
            _warn_if_saturated(float(estimate.detach()), n, self.sigma)
        return estimate


def operand_dtype(backend, like):
    """The dtype the back-end computes in: float64 or float32 on the torch path; the input's own on the
    Triton path, except bfloat16 under the interpreter (whose bf16 arithmetic is wrong)."""
    if backend == "torch":
        return torch.float64 if like.dtype == torch.float64 else torch.float32
    return torch.float32 if like.dtype == torch.bfloat16 and not like.is_cuda else like.dtype


@torch.no_grad()
def operand_scale(x, spec, joint_dim, divergence):
    """(mean, scale) of the map x -> (x - mean) * scale after which pair kernels are exp2(-d^2):
    column c is scaled by sqrt(factor * log2 e) / sigma_c. Detached."""
    work_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    bandwidths = column_bandwidths(x, spec, joint_dim)
    scale = (math.sqrt(DIVERGENCE_FACTOR[divergence] * LOG2E) / bandwidths).to(work_dtype)
    return x.to(work_dtype).mean(dim=0), scale


def kernel_operand(x, mean, scale, dtype):
    # centring: distances are translation invariant, and it limits cancellation in the Gram trick
    return ((x.to(mean.dtype) - mean) * scale).to(dtype).contiguous()


# Custom ops, so that torch.compile and torch.export see one opaque op (with a fake implementation
# for shapes) instead of a graph break at the kernel launch. Rows row_start:row_stop against every column.

def _log_sum_dtype(x, backend):
    return torch.float32 if backend == "triton" else x.dtype


@torch.library.custom_op("fastmi::kde_log_sums", mutates_args=())
def log_sums_op(x: torch.Tensor, y: torch.Tensor, loo: bool, backend: str, row_start: int,
                row_stop: int) -> torch.Tensor:
    """(3, rows) natural-log kernel sums ln SX, ln SY, ln SJ of pre-scaled x, y."""
    return BACKENDS[backend].log_sums(x, y, loo, rows=(row_start, row_stop))


@log_sums_op.register_fake
def _(x, y, loo, backend, row_start, row_stop):
    return x.new_empty((3, row_stop - row_start), dtype=_log_sum_dtype(x, backend))


@torch.library.custom_op("fastmi::kde_pair_grads", mutates_args=())
def pair_grads_op(x: torch.Tensor, y: torch.Tensor, log_sums: torch.Tensor, loo: bool, backend: str,
                  row_start: int, row_stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """G_k = sum_j S_kj (x_k - x_j) for x and y (docs/design.md, "The KDE estimator", backward); log_sums: every row's."""
    return BACKENDS[backend].pair_grads(x, y, log_sums, loo, rows=(row_start, row_stop))


@pair_grads_op.register_fake
def _(x, y, log_sums, loo, backend, row_start, row_stop):
    dtype = _log_sum_dtype(x, backend)
    rows = row_stop - row_start
    return x.new_empty((rows, x.shape[1]), dtype=dtype), y.new_empty((rows, y.shape[1]), dtype=dtype)


class KDEEstimate(torch.autograd.Function):
    """mean_i (ln SJ_i - ln SA_i - ln SB_i) over the whole batch, differentiable in x and y.

    x, y: this process's rows; x_all, y_all: None without a shard, else every rank's rows (gathered,
    detached). A rank sums its own rows against every column and the sums are all-reduced; the backward
    needs no collective: the gathered log-sums of every row give each rank the global estimate's
    gradient for its own rows."""

    @staticmethod
    def forward(ctx, x, y, x_all, y_all, loo, backend, shard):
        if shard is None:
            x_all, y_all = x, y
        rows = (0, x_all.shape[0]) if shard is None else shard.rows
        own = log_sums_op(x_all, y_all, loo, backend, *rows)
        every = own if shard is None else shard.gather(own, dim=1)
        total = (own[2] - own[0] - own[1]).sum()
        ctx.save_for_backward(x_all, y_all, every)
        ctx.loo, ctx.backend, ctx.rows = loo, backend, rows
        return (total if shard is None else shard.sum(total)) / every.shape[1]

    @staticmethod
    def backward(ctx, grad):
        x_all, y_all, every = ctx.saved_tensors
        gx, gy = pair_grads_op(x_all, y_all, every, ctx.loo, ctx.backend, *ctx.rows)
        # d/dx_k of (1/N) sum_i ln sum_j exp2(-|x_i - x_j|^2) terms = (2 ln2 / N) sum_j S_kj (x_k - x_j)
        scale = grad * (2.0 * math.log(2.0) / every.shape[1])
        return (gx * scale).to(x_all.dtype), (gy * scale).to(y_all.dtype), None, None, None, None, None


def _warn_if_saturated(value, n, sigma):
    ceiling = math.log(n)
    if value >= SATURATION * ceiling:
        warn_user(
            f"KDE MI estimate {value:.4g} nats is within {100 * (1 - SATURATION):.0f}% of its ceiling "
            f"ln N = {ceiling:.4g}: the bandwidth (sigma={sigma!r}) is too small for the dimension, so "
            "every point only sees itself and the estimate is saturated. Use a larger sigma (a float in "
            "the data's units, or a pair of them) or more samples.")
