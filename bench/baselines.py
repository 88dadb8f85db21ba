"""The naive way: dense torch KDE MI (cdist + logsumexp), N x N matrices, autograd through all of it."""
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
