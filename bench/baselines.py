"""Baselines: the naive dense torch KDE MI (cdist + logsumexp) and scikit-learn's KD-tree KSG."""
import math

import torch

from fastmi.bandwidth import column_bandwidths


def dense_kde_mi(a, b, sigma="median"):
    """What one writes without fastmi: same estimate as fastmi.layer_mi(a, b, sigma), O(N^2) memory."""
    joint = a.shape[1] + b.shape[1]
    x = a / column_bandwidths(a, sigma, joint).to(a.dtype)
    y = b / column_bandwidths(b, sigma, joint).to(b.dtype)
    alpha = torch.cdist(x, x).square() / 2
    beta = torch.cdist(y, y).square() / 2
    joint_term = torch.logsumexp(-alpha - beta, dim=1)
    return (joint_term - torch.logsumexp(-alpha, dim=1) - torch.logsumexp(-beta, dim=1)).mean() \
        + math.log(a.shape[0])


def tree_ksg_mi(a, b, k=3):
    """KSG algorithm 1 the scikit-learn way (its mutual_info_regression, made multivariate): a KD-tree
    k-nearest-neighbour query in the joint space (max-norm), then radius counts in each marginal.
    a, b: float64 numpy arrays (N, Da), (N, Db), already scaled as wanted."""
    import numpy as np
    from scipy.special import digamma
    from sklearn.neighbors import KDTree, NearestNeighbors
    joint = np.hstack([a, b])
    eps = NearestNeighbors(metric="chebyshev", n_neighbors=k).fit(joint).kneighbors()[0][:, -1]
    radius = np.nextafter(eps, 0)  # strictly inside
    na = KDTree(a, metric="chebyshev").query_radius(a, radius, count_only=True) - 1  # minus the row itself
    nb = KDTree(b, metric="chebyshev").query_radius(b, radius, count_only=True) - 1
    return float(digamma(k) + digamma(len(a)) - np.mean(digamma(na + 1) + digamma(nb + 1)))
