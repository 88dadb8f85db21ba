"""Baselines: naive ways to compute fastmi's estimates (dense torch, dense numpy/scipy, pykeops for the
KDE MI; scipy's cKDTree and scikit-learn's KD-tree KSG; dense torch, pykeops and the dcor package for
CKA and distance correlation)."""
import math

import torch

from fastmi import bandwidth
from fastmi.bandwidth import column_bandwidths
from fastmi.reference import ksg_mi_tree


def dense_kde_mi(a, b, sigma="standardized_median"):
    """What one writes without fastmi: same estimate as fastmi.layer_mi(a, b, sigma), O(N^2) memory."""
    x, y = _scaled(a, b, sigma)
    alpha = torch.cdist(x, x).square() / 2
    beta = torch.cdist(y, y).square() / 2
    joint_term = torch.logsumexp(-alpha - beta, dim=1)
    return (joint_term - torch.logsumexp(-alpha, dim=1) - torch.logsumexp(-beta, dim=1)).mean() \
        + math.log(a.shape[0])


def _scaled(a, b, sigma="standardized_median"):
    joint = a.shape[1] + b.shape[1]
    return a / column_bandwidths(a, sigma, joint).to(a.dtype), b / column_bandwidths(b, sigma, joint).to(b.dtype)


def numpy_kde_mi(a, b, sigma="standardized_median"):
    """The same estimate with scipy's dense cdist and logsumexp in float64 (forward only)."""
    from scipy.spatial.distance import cdist
    from scipy.special import logsumexp
    x, y = (v.detach().cpu().double().numpy() for v in _scaled(a, b, sigma))
    alpha, beta = cdist(x, x, "sqeuclidean") / 2, cdist(y, y, "sqeuclidean") / 2
    value = (logsumexp(-alpha - beta, axis=1) - logsumexp(-alpha, axis=1) - logsumexp(-beta, axis=1)).mean()
    return torch.tensor(value + math.log(a.shape[0]))


def keops_kde_mi(a, b, sigma="standardized_median"):
    """The same estimate with pykeops LazyTensors: symbolic N x N matrices, reduced on the fly."""
    from pykeops.torch import LazyTensor
    x, y = _scaled(a, b, sigma)

    def pair_terms(v):
        return ((LazyTensor(v[:, None, :].contiguous()) - LazyTensor(v[None, :, :].contiguous())) ** 2).sum(-1) / 2
    alpha, beta = pair_terms(x), pair_terms(y)
    log_sums = [(-t).logsumexp(dim=1).squeeze(1) for t in (alpha + beta, alpha, beta)]
    return (log_sums[0] - log_sums[1] - log_sums[2]).mean() + math.log(a.shape[0])


def ckdtree_ksg_mi(a, b, k=3):
    """KSG with scipy's cKDTree, vectorised C queries on every core (reference.ksg_mi_tree): the raw tree."""
    return ksg_mi_tree(a, b, k, workers=-1)


def sklearn_ksg_mi(a, b, k=3):
    """KSG algorithm 1 the scikit-learn way (its mutual_info_regression, made multivariate): a KD-tree
    k-nearest-neighbour query in the joint space (max-norm), then radius counts in each marginal.
    a, b: float64 numpy arrays (N, Da), (N, Db), already scaled as wanted."""
    import numpy as np
    from scipy.special import digamma
    from sklearn.neighbors import KDTree, NearestNeighbors
    joint = np.hstack([a, b])
    eps = NearestNeighbors(metric="chebyshev", n_neighbors=k, n_jobs=-1).fit(joint).kneighbors()[0][:, -1]
    radius = np.nextafter(eps, 0)  # strictly inside
    na = KDTree(a, metric="chebyshev").query_radius(a, radius, count_only=True) - 1  # minus the row itself
    nb = KDTree(b, metric="chebyshev").query_radius(b, radius, count_only=True) - 1
    return float(digamma(k) + digamma(len(a)) - np.mean(digamma(na + 1) + digamma(nb + 1)))


def _median_sigma(x):
    return float(bandwidth.median(x.shape[0], x.shape[1], x.detach(), fraction=1.0))


def dense_cka(a, b):
    """RBF CKA the dense way (as torch_cka-style code does): N x N kernels, double-centred (by row and
    column means here, O(N^2), not by the N x N centring matrix H K H of HSIC-bottleneck code, O(N^3)),
    autograd through all of it; fastmi.cka's median bandwidths."""
    def centred_kernel(x):
        k = torch.exp(-torch.cdist(x, x).square() / (2 * _median_sigma(x) ** 2))
        return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()
    kc, lc = centred_kernel(a), centred_kernel(b)
    return (kc * lc).sum() / ((kc * kc).sum() * (lc * lc).sum()).sqrt()


def keops_cka(a, b):
    """The same RBF CKA with pykeops LazyTensors: the row sums fastmi's pass computes, reduced symbolically."""
    from pykeops.torch import LazyTensor

    from fastmi.measures import centred

    def kernel(x):
        gamma = 0.5 / _median_sigma(x) ** 2
        return (-gamma * ((LazyTensor(x[:, None, :].contiguous()) - LazyTensor(x[None, :, :].contiguous())) ** 2)
                .sum(-1)).exp()
    kernels = kernel(a), kernel(b)
    rows = torch.stack([k.sum(dim=1).squeeze(1) for k in kernels])
    sums = torch.stack([torch.stack([(p * q).sum(dim=1).sum() for q in kernels]) for p in kernels])
    hsics = centred.biased(sums, rows)
    return hsics[0, 1] / (hsics[0, 0] * hsics[1, 1]).sqrt()


def dense_distance_correlation(a, b):
    """Distance correlation with N x N distance matrices, double-centred, autograd through them."""
    def centred_distances(x):
        d = torch.cdist(x, x)
        return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()
    big_a, big_b = centred_distances(a), centred_distances(b)
    dcov, var_a, var_b = ((p * q).mean() for p, q in ((big_a, big_b), (big_a, big_a), (big_b, big_b)))
    return (dcov / (var_a * var_b).sqrt()).clamp_min(0).sqrt()


def dcor_distance_correlation(a, b):
    """The dcor package's distance_correlation (float64 numpy, forward only)."""
    import dcor
    x, y = (v.detach().cpu().double().numpy() for v in (a, b))
    return torch.tensor(dcor.distance_correlation(x, y))
