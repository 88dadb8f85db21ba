"""fastmi.mi_matrix: the MI between every pair of L layers, an (L, L) matrix.

The KDE reads its pairs off chains (fastmi.chain_mi: the fused kernels, O(N) memory, differentiable,
group=): the complete graph on L layers splits into Hamiltonian paths (Walecki's construction; for odd L
the paths of L + 1 layers with the extra one removed), every pair of layers adjacent in exactly one of
them. A chain works each of its layers once (operand, kernel tiles, one weighted sum in the backward),
so each layer is worked at most ceil(L / 2) times, where L - 1 pair calls would work it L - 1 times. Once in
all is not possible on O(N) memory: a pair's joint sums need both layers' kernels at the same tile.
Other estimators: layer_mi per pair.

The diagonal is NaN: the MI of a continuous layer with itself is infinite.
"""
import math

import torch

from .api import chain_mi, layer_mi
from .estimators import ESTIMATORS
from .inputs import choice


def mi_matrix(layers, *, estimator="kde", units="nats", backend="auto", check_finite=True, group=None, **options):
    """(L, L) MI between every pair of `layers` (a list of L >= 2 tensors (N, ...) with paired rows): entry
    (i, j) equals ``layer_mi(layers[i], layers[j], estimator=..., **options)`` to rounding (symmetric), the
    diagonal NaN. Differentiable with the KDE (mask the diagonal before summing). Options as layer_mi's."""
    if not isinstance(layers, (list, tuple)) or len(layers) < 2:
        raise ValueError(f"mi_matrix takes a list of at least 2 layers, got {type(layers).__name__}"
                         + (f" of {len(layers)}" if isinstance(layers, (list, tuple)) else ""))
    choice(estimator, "estimator", tuple(ESTIMATORS))
    common = dict(units=units, backend=backend, check_finite=check_finite, group=group)
    values = {}
    if estimator == "kde":
        for path in walecki_paths(len(layers)):
            chain = chain_mi([layers[i] for i in path], **common, **options)
            values.update({(path[m], path[m + 1]): chain[m] for m in range(len(path) - 1)})
    else:
        for i in range(len(layers)):
            for j in range(i + 1, len(layers)):
                values[i, j] = layer_mi(layers[i], layers[j], estimator=estimator, **common, **options)
    like = next(iter(values.values()))
    diagonal = torch.full((), math.nan, dtype=like.dtype, device=like.device)
    return torch.stack([torch.stack([diagonal if i == j else values.get((i, j), values.get((j, i)))
                                     for j in range(len(layers))]) for i in range(len(layers))])


def walecki_paths(count):
    """Lists of layer indices in which every pair i != j of range(count) is adjacent exactly once: for an
    even count, path s is s, s + 1, s - 1, s + 2, s - 2, ..., s + count / 2 (mod count), s < count / 2
    (Walecki); for an odd count, those of count + 1 with the extra index cut out (a path may split in two)."""
    even = count + count % 2
    paths = []
    for start in range(even // 2):
        path = [start]
        for step in range(1, even):
            path.append((start + (step + 1) // 2 * (1 if step % 2 else -1)) % even)
        if count % 2:
            cut = path.index(count)
            paths += [path[:cut], path[cut + 1:]]
        else:
            paths.append(path)
    return [path for path in paths if len(path) >= 2]
