"""The kernel dependence measures (docs/design.md, "Dependence measures"): the public functions in
dependence.py, computed from the KDE's kind of pairwise pass (pair_sums.py, the fused tile pass and its
autograd; centred.py, HSIC-type statistics from its sums).

MEASURES is their registry, beside fastmi.ESTIMATORS: name -> measure(a, b, **options), each declaring
`differentiable`, `supports_group` and `compiles` (dependence.capabilities). The Regularizer takes any of
them by name.
"""
from .dependence import MinibatchCKA, cka, cka_matrix, distance_correlation, hsic, hsic_terms

#: name -> the measure's function (each declares differentiable, supports_group, compiles).
MEASURES = {"hsic": hsic, "cka": cka, "distance_correlation": distance_correlation}

__all__ = ["MEASURES", "MinibatchCKA", "cka", "cka_matrix", "distance_correlation", "hsic", "hsic_terms"]
