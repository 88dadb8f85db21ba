"""Pairwise-distance Gaussian-KDE MI (DESIGN.md, estimator 1): custom ops with autograd, back-end dispatch.

    SA_i = sum_j exp(-alpha_ij),  SB_i = sum_j exp(-beta_ij),  SJ_i = sum_j exp(-alpha_ij - beta_ij)
    I = (1/N) sum_i [ln SJ_i - ln SA_i - ln SB_i] + ln N        (nats; ln(N - 1) when leaving one out)

with alpha_ij = ||a_i - a_j||^2 / (2 sigma_a^2) (KL bound) or / (8 sigma_a^2) (Bhattacharyya bound).
The inputs are centred and scaled here so that a back-end only sees exp2(-||x_i - x_j||^2).
"""
import math
import warnings

import torch

from . import kde_cpu
from ._dispatch import full_precision, use_triton
from .bandwidth import column_bandwidths, split_sigma
from .distributed import shard_of

LOG2E = 1.0 / math.log(2.0)
BOUND_FACTOR = {"kl": 1.0 / 2.0, "bhattacharyya": 1.0 / 8.0}  # alpha = factor * ||da / sigma||^2
SATURATION = 0.95  # warn when the estimate is within 5% of its ceiling ln N


def _triton_backend():
    from .kernels import kde as kernels
    return kernels.kde_forward, kernels.kde_backward


def _torch_backend():
    return kde_cpu.forward, kde_cpu.backward


BACKEND_FUNCTIONS = {"triton": _triton_backend, "torch": _torch_backend}  # name -> (forward, backward)


def select_backend(name, like):
    """(back-end name, operand dtype) of the back-end that runs tensors like `like`."""
    if not use_triton(name, like):
        return "torch", torch.float64 if like.dtype == torch.float64 else torch.float32
    if like.dtype == torch.bfloat16 and not like.is_cuda:  # the Triton interpreter gets bf16 math wrong
        return "triton", torch.float32
    return "triton", like.dtype


def _log_sum_dtype(x, backend):
    return torch.float32 if backend == "triton" else x.dtype


def _input_grads(gx, gy, grad, n, x, y):
    # d/dx_k of (1/N) sum_i ln sum_j exp2(-|x_i - x_j|^2) terms = (2 ln2 / N) sum_j S_kj (x_k - x_j)
    scale = grad * (2.0 * math.log(2.0) / n)
    return (gx * scale).to(x.dtype), (gy * scale).to(y.dtype)


# Single process: custom ops, so that torch.compile and torch.export see one opaque op (with a fake
# implementation for shapes) instead of a graph break at the kernel launch.

@torch.library.custom_op("fastmi::kde_mi", mutates_args=())
def kde_mi_op(x: torch.Tensor, y: torch.Tensor, loo: bool, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean_i(ln SJ_i - ln SA_i - ln SB_i), the (3, N) log-sums) of pre-scaled x, y."""
    forward, _ = BACKEND_FUNCTIONS[backend]()
    log_sums = forward(x, y, loo)
    return (log_sums[2] - log_sums[0] - log_sums[1]).mean(), log_sums


@kde_mi_op.register_fake
def _(x, y, loo, backend):
    dtype = _log_sum_dtype(x, backend)
    return x.new_empty((), dtype=dtype), x.new_empty((3, x.shape[0]), dtype=dtype)


@torch.library.custom_op("fastmi::kde_mi_backward", mutates_args=())
def kde_mi_backward_op(x: torch.Tensor, y: torch.Tensor, log_sums: torch.Tensor, loo: bool,
                       backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    """G_k = sum_j S_kj (x_k - x_j) for x and y."""
    _, backward = BACKEND_FUNCTIONS[backend]()
    return backward(x, y, log_sums, loo)


@kde_mi_backward_op.register_fake
def _(x, y, log_sums, loo, backend):
    dtype = _log_sum_dtype(x, backend)
    return x.new_empty(x.shape, dtype=dtype), y.new_empty(y.shape, dtype=dtype)


def _kde_mi_setup(ctx, inputs, output):
    x, y, loo, backend = inputs
    ctx.save_for_backward(x, y, output[1])
    ctx.loo, ctx.backend = loo, backend


def _kde_mi_backward(ctx, grad, grad_log_sums):  # the log-sums output is for saving, not differentiable
    x, y, log_sums = ctx.saved_tensors
    gx, gy = kde_mi_backward_op(x, y, log_sums, ctx.loo, ctx.backend)
    return (*_input_grads(gx, gy, grad, x.shape[0], x, y), None, None)


torch.library.register_autograd("fastmi::kde_mi", _kde_mi_backward, setup_context=_kde_mi_setup)


class ShardedKDEMutualInformation(torch.autograd.Function):
    """The global-batch estimate under torch.distributed (fastmi.distributed): x, y are this rank's
    rows, x_all, y_all every rank's (detached); this rank sums its rows, the sums are all-reduced."""

    @staticmethod
    def forward(ctx, x, y, x_all, y_all, loo, backend, shard):
        forward, ctx.backward_fn = BACKEND_FUNCTIONS[backend]()
        own = forward(x_all, y_all, loo, rows=shard.rows)
        every = shard.gather(own, dim=1)
        ctx.save_for_backward(x_all, y_all, every)
        ctx.loo, ctx.rows = loo, shard.rows
        return shard.sum((own[2] - own[0] - own[1]).sum()) / every.shape[1]

    @staticmethod
    def backward(ctx, grad):
        x_all, y_all, every = ctx.saved_tensors
        gx, gy = ctx.backward_fn(x_all, y_all, every, ctx.loo, rows=ctx.rows)
        return (*_input_grads(gx, gy, grad, every.shape[1], x_all, y_all), None, None, None, None, None)


@torch.no_grad()
def operand_scale(x, spec, joint_dim, bound):
    """(mean, scale) of the map x -> (x - mean) * scale after which pair kernels are exp2(-d^2):
    column c is scaled by sqrt(factor * log2 e) / sigma_c. Detached."""
    work_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    bandwidths = column_bandwidths(x, spec, joint_dim)
    scale = (math.sqrt(BOUND_FACTOR[bound] * LOG2E) / bandwidths).to(work_dtype)
    return x.to(work_dtype).mean(dim=0), scale


def kernel_operand(x, mean, scale, dtype):
    # centring: distances are translation invariant, and it limits cancellation in the Gram trick
    return ((x.to(mean.dtype) - mean) * scale).to(dtype).contiguous()


def kde_mi(a, b, sigma, bound, loo, backend, group=None):
    """KDE MI in nats of validated (N, Da), (N, Db) inputs of one dtype (this rank's rows if group)."""
    with full_precision(a.device):
        return _kde_mi(a, b, sigma, bound, loo, backend, group)


def _kde_mi(a, b, sigma, bound, loo, backend, group):
    backend, dtype = select_backend(backend, a)
    joint_dim = a.shape[1] + b.shape[1]
    spec_a, spec_b = split_sigma(sigma)
    if group is None:
        n = a.shape[0]
        x = kernel_operand(a, *operand_scale(a, spec_a, joint_dim, bound), dtype)
        y = kernel_operand(b, *operand_scale(b, spec_b, joint_dim, bound), dtype)
        estimate = kde_mi_op(x, y, loo, backend)[0]
    else:  # bandwidths and centring from the global batch, applied to this rank's rows and to all
        shard = shard_of(a, b, group)
        a_all, b_all = shard.gather(a), shard.gather(b)
        n = a_all.shape[0]
        scale_a = operand_scale(a_all, spec_a, joint_dim, bound)
        scale_b = operand_scale(b_all, spec_b, joint_dim, bound)
        estimate = ShardedKDEMutualInformation.apply(
            kernel_operand(a, *scale_a, dtype), kernel_operand(b, *scale_b, dtype),
            kernel_operand(a_all, *scale_a, dtype), kernel_operand(b_all, *scale_b, dtype), loo, backend, shard)
    estimate = estimate + math.log(n - 1 if loo else n)
    if not torch.compiler.is_compiling():  # the check reads the value: a sync, and a graph break
        _warn_if_saturated(float(estimate.detach()), n, sigma)
    return estimate.to(torch.float64 if a.dtype == torch.float64 else torch.float32)


def _warn_if_saturated(value, n, sigma):
    ceiling = math.log(n)
    if value >= SATURATION * ceiling:
        warnings.warn(
            f"KDE MI estimate {value:.4g} nats is within {100 * (1 - SATURATION):.0f}% of its ceiling "
            f"ln N = {ceiling:.4g}: the bandwidth (sigma={sigma!r}) is too small for the dimension, so "
            "every point only sees itself and the estimate is saturated. Use a larger sigma (a float in "
            "the data's units, or a pair of them) or more samples.", RuntimeWarning, stacklevel=5)
