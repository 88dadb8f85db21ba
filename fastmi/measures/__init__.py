"""Kernel dependence measures that share the KDE's pairwise computation (docs/design.md, "Dependence
measures"): pair_sums.py, the fused tile pass and its autograd; centred.py, HSIC-type statistics from its
sums. The public functions are in fastmi/dependence.py."""
