"""Dense float64 references: the oracle for tests and benchmarks. O(N^2) memory: N up to ~10k."""
import math

import torch


def _scaled_sq_dists(x, bandwidth, factor):
    """factor * ||(x_i - x_j) / bandwidth||^2 from explicit differences (no Gram cancellation)."""
    z = x.double() / torch.as_tensor(bandwidth, dtype=torch.float64, device=x.device)
    return factor * torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist").square()


def kde_mi(a, b, bandwidth_a, bandwidth_b, bound="kl", loo=False):
    """KDE MI in nats (DESIGN.md, estimator 1), differentiable in float64.

    bandwidth_*: a float or a per-column tensor; bound: "kl" (2 sigma^2) or "bhattacharyya" (8 sigma^2).
    """
    factor = {"kl": 0.5, "bhattacharyya": 0.125}[bound]
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    n = a.shape[0]
    alpha = _scaled_sq_dists(a, bandwidth_a, factor)
    beta = _scaled_sq_dists(b, bandwidth_b, factor)
    if loo:
        excluded = torch.eye(n, dtype=torch.bool, device=a.device)
        alpha = alpha.masked_fill(excluded, math.inf)
        beta = beta.masked_fill(excluded, math.inf)
    log_sa = torch.logsumexp(-alpha, dim=1)
    log_sb = torch.logsumexp(-beta, dim=1)
    log_sj = torch.logsumexp(-alpha - beta, dim=1)
    return (log_sj - log_sa - log_sb).mean() + math.log(n - 1 if loo else n)


def gaussian_mi(cov, da):
    """Closed-form MI in nats of a joint Gaussian: -1/2 ln(det S / (det S_aa det S_bb))."""
    cov = torch.as_tensor(cov, dtype=torch.float64)
    logdet = torch.logdet
    return float(-0.5 * (logdet(cov) - logdet(cov[:da, :da]) - logdet(cov[da:, da:])))
