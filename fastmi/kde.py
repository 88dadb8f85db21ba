"""Pairwise-distance Gaussian-KDE MI (DESIGN.md, estimator 1): autograd Function and back-end dispatch.

    SA_i = sum_j exp(-alpha_ij),  SB_i = sum_j exp(-beta_ij),  SJ_i = sum_j exp(-alpha_ij - beta_ij)
    I = (1/N) sum_i [ln SJ_i - ln SA_i - ln SB_i] + ln N        (nats; ln(N - 1) when leaving one out)

with alpha_ij = ||a_i - a_j||^2 / (2 sigma_a^2) (KL bound) or / (8 sigma_a^2) (Bhattacharyya bound).
The inputs are centred and scaled here so that a back-end only sees exp2(-||x_i - x_j||^2).
"""
import math
import warnings

import torch

from . import kde_cpu
from ._dispatch import use_triton
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


def select_backend(name, like):
    """(forward, backward, operand dtype) of the back-end that runs tensors like `like`."""
    if not use_triton(name, like):
        dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
        return (*_torch_backend(), dtype)
    if like.dtype == torch.bfloat16 and not like.is_cuda:  # the Triton interpreter gets bf16 math wrong
        return (*_triton_backend(), torch.float32)
    return (*_triton_backend(), like.dtype)


class KDEMutualInformation(torch.autograd.Function):
    """(1/N) sum_i (ln SJ_i - ln SA_i - ln SB_i) of pre-scaled x, y; saves the 3N log-sums for backward.

    Single process: x, y are all the rows. With a Shard (fastmi.distributed), x, y are this rank's
    rows, x_all, y_all every rank's (detached): this rank sums its rows, the sums are all-reduced.
    """

    @staticmethod
    def forward(ctx, x, y, x_all, y_all, loo, forward, backward, shard):
        rows = None if shard is None else shard.rows
        own = forward(x_all, y_all, loo, rows=rows)
        every = own if shard is None else shard.gather(own, dim=1)
        total = (own[2] - own[0] - own[1]).sum()
        if shard is not None:
            total = shard.sum(total)
        ctx.save_for_backward(x_all, y_all, every)
        ctx.loo, ctx.backward_fn, ctx.rows = loo, backward, rows
        return total / every.shape[1]

    @staticmethod
    def backward(ctx, grad):
        x_all, y_all, every = ctx.saved_tensors
        gx, gy = ctx.backward_fn(x_all, y_all, every, ctx.loo, rows=ctx.rows)
        # d/dx_k of (1/N) sum_i ln sum_j exp2(-|x_i - x_j|^2) terms = (2 ln2 / N) sum_j S_kj (x_k - x_j)
        scale = grad * (2.0 * math.log(2.0) / every.shape[1])
        return (gx * scale).to(x_all.dtype), (gy * scale).to(y_all.dtype), None, None, None, None, None, None


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
    with torch.autocast(device_type=a.device.type, enabled=False):  # MI needs full-precision GEMMs
        return _kde_mi(a, b, sigma, bound, loo, backend, group)


def _kde_mi(a, b, sigma, bound, loo, backend, group):
    forward, backward, dtype = select_backend(backend, a)
    shard = None if group is None else shard_of(a, b, group)
    a_all, b_all = (a, b) if shard is None else (shard.gather(a), shard.gather(b))
    joint_dim = a.shape[1] + b.shape[1]
    (spec_a, spec_b), operands = split_sigma(sigma), []
    for own, every, spec in ((a, a_all, spec_a), (b, b_all, spec_b)):
        mean, scale = operand_scale(every, spec, joint_dim, bound)
        operands.append(kernel_operand(own, mean, scale, dtype))
        operands.append(operands[-1].detach() if shard is None else kernel_operand(every, mean, scale, dtype))
    x, x_all, y, y_all = operands
    n = a_all.shape[0]
    estimate = KDEMutualInformation.apply(x, y, x_all, y_all, loo, forward, backward, shard)
    estimate = estimate + math.log(n - 1 if loo else n)
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
