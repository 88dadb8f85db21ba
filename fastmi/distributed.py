"""Global-batch MI under data parallelism (DDP / FSDP): every rank holds a shard of the batch.

KDE: layer_mi(..., group=g) gathers the rows of every rank (detached), computes the centring and the
bandwidth from the global batch, sums this rank's rows against every column with the same kernels
(a row range, not a copy of them), and all-reduces the row sums. Each rank's gradient for its own
rows is the global estimate's gradient for those rows: the pair terms from the gathered log-sums of
every row, and the column statistics (mean, std) through one all-reduce of their partial gradients
(docs/design.md, "torch.distributed").

Histograms: the bin ranges come from the global min/max; "binned" gathers the rows' 64-bit symbols;
unit_mi sums the joint counts over ranks (differentiably, for soft codes).
"""
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Shard:
    """This rank's place in the global batch."""
    group: object
    sizes: list  # rows held by each rank, in rank order
    rank: int

    @property
    def rows(self):
        start = sum(self.sizes[:self.rank])
        return start, start + self.sizes[self.rank]

    def gather(self, x, dim=0):
        """Every rank's rows of x (detached; rows along `dim`), concatenated in rank order."""
        rows_first = x.detach().movedim(dim, 0)
        padded = rows_first.new_zeros((max(self.sizes), *rows_first.shape[1:]))
        padded[:rows_first.shape[0]] = rows_first
        parts = [torch.empty_like(padded) for _ in self.sizes]
        dist.all_gather(parts, padded, group=self.group)
        return torch.cat([p[:n] for p, n in zip(parts, self.sizes)]).movedim(0, dim)

    def sum(self, value):
        """The sum over ranks (detached)."""
        total = value.detach().clone()
        dist.all_reduce(total, group=self.group)
        return total

    def sum_with_grad(self, value):
        """The sum over ranks, differentiable, for a total from which every rank computes the whole loss:
        the gradient for this rank's share is the gradient for the total (an identity backward)."""
        return _SumOverRanks.apply(value, self)

    def sum_partials(self, value):
        """The sum over ranks, differentiable, for a total whose uses are split over the ranks (each rank
        differentiates only its own rows' terms): the gradient for this rank's share is the sum of every
        rank's partial gradient for the total (an all-reduce in backward)."""
        return _SumPartialsOverRanks.apply(value, self)

    def extremes(self, lo, hi):
        """Global elementwise (min of lo, max of hi) over ranks."""
        lo, hi = lo.detach().clone(), hi.detach().clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN, group=self.group)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX, group=self.group)
        return lo, hi


class _SumOverRanks(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, shard):
        return shard.sum(value)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _SumPartialsOverRanks(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, shard):
        ctx.shard = shard
        return shard.sum(value)

    @staticmethod
    def backward(ctx, grad):
        return ctx.shard.sum(grad), None


def agreed_minimum(value, group, device):
    """The smallest of every rank's int `value` (a collective: every rank of the group calls it)."""
    value = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN, group=group)
    return int(value)


def shard_of(layers, group, error=None):
    """This rank's Shard, once every rank agrees that the global batch is valid: one all-gather of
    each rank's shapes, or of the error its own validation raised (`error`, with `layers` None). Every
    rank then raises the same error (the first failing rank's, named), so none waits for a collective
    that a failed rank never joins; N >= 2 is checked on the global batch."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("layer_mi(..., group=...) needs torch.distributed to be initialised "
                           "(torch.distributed.init_process_group) first")
    mine = (None, [layers[0].shape[0], *(x.shape[1] for x in layers)]) if error is None else \
        ((type(error).__name__, str(error)), None)
    every = [None] * dist.get_world_size(group)
    dist.all_gather_object(every, mine, group=group)
    failed = [(rank, failure) for rank, (failure, _) in enumerate(every) if failure is not None]
    if failed:
        rank, (kind, message) = failed[0]
        raise (TypeError if kind == "TypeError" else ValueError)(f"rank {rank}: {message}")
    shapes = [shape for _, shape in every]
    widths = [tuple(shape[1:]) for shape in shapes]
    if len(set(widths)) > 1:
        raise ValueError(f"the ranks hold different feature widths {widths}; every rank must pass the same layers")
    sizes = [shape[0] for shape in shapes]
    if sum(sizes) < 2:
        raise ValueError(f"at least 2 samples (rows) are needed in the global batch, got N = {sum(sizes)} "
                         f"(ranks: {sizes})")
    return Shard(group, sizes, dist.get_rank(group))
