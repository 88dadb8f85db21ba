"""The interface every estimator of the registry (fastmi.estimators.ESTIMATORS) implements.

An estimator is built from its options, keyword-only and validated in __init__ before any tensor is
touched, and called on inputs that fastmi.api has already validated:

    Estimator(**options)(a, b, backend, shard) -> 0-d tensor, nats

- a, b: (N, Da), (N, Db) from fastmi.inputs.paired_samples: one floating dtype (or integer symbols
  where `takes_symbols`), on one device; this rank's rows when shard is not None;
- backend: "triton" or "torch", resolved once by fastmi.backend.resolve;
- shard: None, or the fastmi.distributed.Shard of this rank (group=): the estimate is then the
  global batch's, the same on every rank.
fastmi.api converts the result to the inputs' result dtype and to bits; autocast is off.

    estimator.with_null(a, b, permutations, backend) -> (estimate, null (P,))

is what fastmi.mi_test calls (one process, no shard): the estimate and, for each row permutation p
(a (P, N) index tensor), the estimate with b's rows permuted. An estimator overrides it to share work
between the surrogates (KSG: the marginal search trees; KDE: the kernel matrices; GCMI: the whitened
scores; auto: the choice).
"""
import inspect

import torch


class Estimator:
    name = None
    differentiable = False  # the result carries a gradient (what the Regularizer needs)
    takes_symbols = False  # integer / bool inputs are discrete symbols, not refused
    supports_group = True  # group=: the global batch under torch.distributed
    nan_blind = False  # binning / neighbour search would turn NaN into a plausible number
    compiles = False  # torch.compile(fullgraph=True) traces it without a graph break (tests/test_contract.py)
    triton_kernels = False  # has Triton kernels: backend="auto" runs them on CUDA (python -m fastmi lists them)

    def __call__(self, a, b, backend, shard):
        raise NotImplementedError

    @torch.no_grad()
    def with_null(self, a, b, permutations, backend):
        return self(a, b, backend, None), torch.stack([self(a, b[p], backend, None) for p in permutations])

    @classmethod
    def option_names(cls):
        return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]


def class_side(a, b, name):
    """(the continuous side, class ids (N,) int64 from 0, whether a is the ids) where one side is integer
    class ids (N, 1), else None; a TypeError naming the problem for integer inputs the estimator `name`
    cannot read as class ids (several columns, or both sides)."""
    integer = [not x.is_floating_point() for x in (a, b)]
    if not any(integer):
        return None
    if all(integer):
        raise TypeError(f"estimator={name!r} takes class ids on one side only; both a and b are integer: for the MI "
                        "of two discrete variables use estimator='auto' (the plug-in MI) or 'binned'")
    ids, continuous = (a, b) if integer[0] else (b, a)
    if ids.shape[1] != 1:
        raise TypeError(f"estimator={name!r} reads an integer input as class ids, one column (N,), got "
                        f"{tuple(ids.shape)}: convert a quantised variable to float (x.float())")
    return continuous, torch.unique(ids[:, 0], return_inverse=True)[1], integer[0]


def estimate_and_null(estimate, permutations):
    """(estimate(None), the estimates estimate(p) at each permutation p of b's rows, stacked; None without
    any): with_null for estimators whose surrogates share nothing beyond what `estimate` closes over."""
    null = [estimate(p) for p in permutations]
    return estimate(None), torch.stack(null) if null else None


def permuted_b(x, ids, ids_are_a, rows):
    """(x, ids) of class_side with b's rows permuted by `rows` (None: as they are): b is x where a holds
    the ids, else the ids."""
    if rows is None:
        return x, ids
    return (x[rows], ids) if ids_are_a else (x, ids[rows])


def entropy(ids):
    """Plug-in entropy (nats, float64) of symbol ids (N,)."""
    p = torch.unique(ids, return_counts=True)[1].double() / ids.numel()
    return -(p * p.log()).sum()
