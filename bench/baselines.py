"""Baselines: naive ways to compute fastmi's estimates (dense torch, dense numpy/scipy, pykeops for the
KDE MI; scipy's cKDTree and scikit-learn's KD-tree KSG)."""
import math

import torch

from fastmi.bandwidth import column_bandwidths
from fastmi.reference import ksg_mi_tree


def dense_kde_mi(a, b, sigma="median"):
    """What one writes without fastmi: same estimate as fastmi.layer_mi(a, b, sigma), O(N^2) memory."""
    x, y = _scaled(a, b, sigma)
    alpha = torch.cdist(x, x).square() / 2
    beta = torch.cdist(y, y).square() / 2
    joint_term = torch.logsumexp(-alpha - beta, dim=1)
    return (joint_term - torch.logsumexp(-alpha, dim=1) - torch.logsumexp(-beta, dim=1)).mean() \
        + math.log(a.shape[0])


def _scaled(a, b, sigma="median"):
    joint = a.shape[1] + b.shape[1]
    return a / column_bandwidths(a, sigma, joint).to(a.dtype), b / column_bandwidths(b, sigma, joint).to(b.dtype)


def numpy_kde_mi(a, b, sigma="median"):
    """The same estimate with scipy's dense cdist and logsumexp in float64 (forward only)."""
    from scipy.spatial.distance import cdist
    from scipy.special import logsumexp
    x, y = (v.detach().cpu().double().numpy() for v in _scaled(a, b, sigma))
    alpha, beta = cdist(x, x, "sqeuclidean") / 2, cdist(y, y, "sqeuclidean") / 2
    value = (logsumexp(-alpha - beta, axis=1) - logsumexp(-alpha, axis=1) - logsumexp(-beta, axis=1)).mean()
    return torch.tensor(value + math.log(a.shape[0]))


def keops_kde_mi(a, b, sigma="median"):
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
