"""Dense float64 references: the oracle for tests and benchmarks. O(N^2) memory: N up to ~10k."""
import math

import numpy as np
import torch


def _scaled_sq_dists(x, bandwidth, factor):
    """factor * ||(x_i - x_j) / bandwidth||^2 from explicit differences (no Gram cancellation)."""
    z = x.double() / torch.as_tensor(bandwidth, dtype=torch.float64, device=x.device)
    return factor * torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist").square()


def kde_mi_dense(a, b, bandwidth_a, bandwidth_b, divergence="kl", loo=False):
    """KDE MI in nats (docs/design.md, "The KDE estimator"), differentiable in float64: the mean of
    kde_pointwise_dense.

    bandwidth_*: a float or a per-column tensor; divergence: "kl" (2 sigma^2) or "bhattacharyya" (8 sigma^2).
    """
    return kde_pointwise_dense(a, b, bandwidth_a, bandwidth_b, divergence, loo).mean()


def kde_pointwise_dense(a, b, bandwidth_a, bandwidth_b, divergence="kl", loo=False):
    """(N,) per-row terms of the KDE MI: ln S^J_i - ln S^A_i - ln S^B_i + ln N (ln (N - 1) with loo)."""
    factor = {"kl": 0.5, "bhattacharyya": 0.125}[divergence]
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
    return log_sj - log_sa - log_sb + math.log(n - 1 if loo else n)


def gaussian_mi(cov, da):
    """Closed-form MI in nats of a joint Gaussian: -1/2 ln(det S / (det S_aa det S_bb))."""
    cov = torch.as_tensor(cov, dtype=torch.float64)
    logdet = torch.logdet
    return float(-0.5 * (logdet(cov) - logdet(cov[:da, :da]) - logdet(cov[da:, da:])))


def plug_in_entropy(symbols):
    _, counts = np.unique(symbols, axis=0, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def bin_layer(x, bins, value_range):
    """Equal-width bins over the layer's range in x's own float dtype (as fastmi bins them)."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        return x
    work = np.float64 if x.dtype == np.float64 else np.float32
    lo, hi = value_range if value_range is not None else (x.min(), x.max())
    lo, hi = float(lo), float(hi)
    scale = work(bins / (hi - lo)) if hi > lo else work(0.0)
    return np.clip(np.floor((x.astype(work) - work(lo)) * scale), 0, bins - 1).astype(np.int64)


def binned_mi_unique(a, b, bins, value_range=None):
    """Plug-in MI (nats) of the rows' bin patterns: H(A) + H(B) - H(A, B), exact (numpy unique rows)."""
    sa = bin_layer(a.reshape(len(a), -1), bins, value_range)
    sb = bin_layer(b.reshape(len(b), -1), bins, value_range)
    return plug_in_entropy(sa) + plug_in_entropy(sb) - plug_in_entropy(np.concatenate([sa, sb], 1))


def unit_mi_histogram2d(a, b, bins):
    """Plug-in MI (nats) of every unit pair's bins x bins histogram (numpy histogram2d per pair, float64)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    out = np.zeros((a.shape[1], b.shape[1]))
    for p in range(a.shape[1]):
        for q in range(b.shape[1]):
            edges = [_edges(a[:, p], bins), _edges(b[:, q], bins)]
            joint, _, _ = np.histogram2d(a[:, p], b[:, q], bins=edges)
            pj = joint / joint.sum()
            pu, pv = pj.sum(1, keepdims=True), pj.sum(0, keepdims=True)
            nz = pj > 0
            out[p, q] = (pj[nz] * np.log(pj[nz] / (pu @ pv)[nz])).sum()
    return out


def _edges(x, bins):
    lo, hi = x.min(), x.max()
    return np.linspace(lo, hi, bins + 1) if hi > lo else np.linspace(lo - 0.5, lo + 0.5, bins + 1)


def ksg_mi_dense(a, b, k=3):
    """KSG MI (algorithm 1, max-norm) in nats, dense float64: Kraskov et al. 2004, eq. 8."""
    return float(ksg_pointwise_dense(a, b, k).mean())


def ksg_pointwise_dense(a, b, k=3):
    """(N,) per-row terms of KSG's eq. 8: psi(k) + psi(N) - psi(n_a,i + 1) - psi(n_b,i + 1)."""
    a = torch.as_tensor(a, dtype=torch.float64).reshape(len(a), -1)
    b = torch.as_tensor(b, dtype=torch.float64).reshape(len(b), -1)
    n = a.shape[0]
    self_pair = torch.eye(n, dtype=torch.bool)
    da = torch.cdist(a, a, p=math.inf).masked_fill(self_pair, math.inf)
    db = torch.cdist(b, b, p=math.inf).masked_fill(self_pair, math.inf)
    eps = torch.maximum(da, db).sort(dim=1).values[:, k - 1:k]
    na, nb = (da < eps).sum(1).double(), (db < eps).sum(1).double()
    digamma = torch.special.digamma
    constant = digamma(torch.tensor([k, n], dtype=torch.float64)).sum()
    return constant - digamma(na + 1) - digamma(nb + 1)


def ksg_mi_tree(a, b, k=3, workers=1):
    """The same KSG MI with scipy's cKDTree (O(N) memory): eps from each row's k + 1 nearest joint
    neighbours (itself among them), strict marginal counts as radius counts at the largest float below
    eps, less the row itself. a, b: float64 arrays (N, Da), (N, Db), already scaled as wanted."""
    from scipy.spatial import cKDTree
    from scipy.special import digamma
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    joint = np.hstack([a, b])
    eps = cKDTree(joint).query(joint, k=k + 1, p=np.inf, workers=workers)[0][:, -1]
    radius = np.nextafter(eps, 0)
    na, nb = (cKDTree(v).query_ball_point(v, radius, p=np.inf, return_length=True, workers=workers) - 1 for v in (a, b))
    na, nb = np.where(eps > 0, na, 0), np.where(eps > 0, nb, 0)
    return float(digamma(k) + digamma(len(a)) - np.mean(digamma(na + 1) + digamma(nb + 1)))


def gcmi_dense(a, b, bias_correction=True):
    """Gaussian-copula MI in nats (Ince et al. 2017) with scipy: mid-ranks (scipy.stats.rankdata), normal
    scores, then 1/2 [ln det C_a + ln det C_b - ln det C] from full-rank float64 covariances, less the
    Wishart bias of each log-determinant: sum_{i=1..d} psi((N - i) / 2) + d ln(2 / (N - 1))."""
    from scipy.special import digamma, ndtri
    from scipy.stats import rankdata
    a, b = (np.asarray(x, dtype=np.float64).reshape(len(x), -1) for x in (a, b))
    n = len(a)
    z = ndtri(rankdata(np.hstack([a, b]), axis=0) / (n + 1))

    def logdet(cols):
        sign, value = np.linalg.slogdet(np.atleast_2d(np.cov(z[:, cols], rowvar=False)))
        assert sign > 0, "gcmi_dense needs full-rank covariances"
        d = len(cols)
        bias = digamma((n - np.arange(1, d + 1)) / 2).sum() + d * np.log(2 / (n - 1)) if bias_correction else 0.0
        return value - bias

    da, d = a.shape[1], a.shape[1] + b.shape[1]
    return float(0.5 * (logdet(range(da)) + logdet(range(da, d)) - logdet(range(d))))


def gcmi_class_conditional_dense(x, ids, bias_correction=True):
    """Gaussian-copula MI in nats between x (N, d) and class ids (N,) (Ince et al. 2017, a Gaussian per
    class) with scipy: normal scores of every row, then h(z) - sum_y p(y) h(z | y) with h = 1/2 ln det of
    the full-rank float64 sample covariance, less its Wishart bias 1/2 [sum_{i=1..d} psi((n - i) / 2) +
    d ln(2 / (n - 1))] for n rows."""
    from scipy.special import digamma, ndtri
    from scipy.stats import rankdata
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    ids = np.asarray(ids)
    z = ndtri(rankdata(x, axis=0) / (len(x) + 1))

    def entropy(rows):
        n, d = rows.shape
        sign, value = np.linalg.slogdet(np.atleast_2d(np.cov(rows, rowvar=False)))
        assert sign > 0, "gcmi_class_conditional_dense needs full-rank covariances"
        bias = digamma((n - np.arange(1, d + 1)) / 2).sum() + d * np.log(2 / (n - 1)) if bias_correction else 0.0
        return 0.5 * (value - bias)

    classes, counts = np.unique(ids, return_counts=True)
    return float(entropy(z) - sum(c / len(ids) * entropy(z[ids == y]) for y, c in zip(classes, counts)))


def _rbf_gram(x, sigma):
    return torch.exp(-_scaled_sq_dists(x, sigma, 0.5))


def hsic_dense(k, l, unbiased=False):
    """HSIC of two N x N kernel matrices, float64: tr(K H L H) / N^2 with the explicit centring matrix H
    (Gretton et al. 2005), or Song et al.'s (2012) unbiased estimator on the zero-diagonal K~, L~."""
    n = k.shape[0]
    if not unbiased:
        h = torch.eye(n, dtype=torch.float64) - 1.0 / n
        return torch.trace(k @ h @ l @ h) / n ** 2
    k, l = k - torch.diag(torch.diag(k)), l - torch.diag(torch.diag(l))
    one = torch.ones(n, 1, dtype=torch.float64)
    total = torch.trace(k @ l) + (one.T @ k @ one) * (one.T @ l @ one) / ((n - 1) * (n - 2)) \
        - 2.0 / (n - 2) * (one.T @ k @ l @ one)
    return total.squeeze() / (n * (n - 3))


def rbf_hsic_dense(a, b, sigma_a, sigma_b, unbiased=False):
    """HSIC with RBF kernels exp(-||x - y||^2 / (2 sigma^2)) from dense float64 matrices; differentiable."""
    return hsic_dense(_rbf_gram(a, sigma_a), _rbf_gram(b, sigma_b), unbiased)


def cka_dense(a, b, sigma_a=None, sigma_b=None, unbiased=False):
    """CKA, float64: RBF kernels with the given sigmas, or linear kernels of the centred inputs (sigmas None)."""
    def gram(x, sigma):
        x = x.double()
        if sigma is None:
            x = x - x.mean(0)
            return x @ x.T
        return _rbf_gram(x, sigma)
    k, l = gram(a, sigma_a), gram(b, sigma_b)
    return hsic_dense(k, l, unbiased) / (hsic_dense(k, k, unbiased) * hsic_dense(l, l, unbiased)).sqrt()


def distance_correlation_dense(a, b):
    """Distance correlation (V-statistic), float64, from explicitly double-centred distance matrices
    A_ij = a_ij - mean_i - mean_j + mean (Szekely et al. 2007)."""
    def centred(x):
        x = x.double()
        d = (x[:, None, :] - x[None, :, :]).square().sum(-1).clamp_min(1e-300).sqrt()
        d = d - torch.diag(torch.diag(d))
        return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()
    big_a, big_b = centred(a), centred(b)
    dcov, var_a, var_b = ((p * q).mean() for p, q in ((big_a, big_b), (big_a, big_a), (big_b, big_b)))
    return (dcov / (var_a * var_b).sqrt()).clamp_min(0).sqrt()
