"""Double-centred statistics of L symmetric pair matrices P^1..P^L from their sums (diagonal included):
S[m, m'] = sum_ij P^m_ij P^m'_ij and the row sums R[m] = P^m 1 (docs/design.md, "Dependence measures").
Each returns the (L, L) matrix of the statistic for every pair (m, m').

biased (a V-statistic; HSIC_b of Gretton et al. 2005, dCov^2 of Szekely et al. 2007):
    (1/N^2) tr(P H Q H) = (1/N^2) [S_pq - (2/N) R_p . R_q + (1^T R_p)(1^T R_q) / N^2],   H = I - 11^T/N
unbiased (Song et al. 2012), on the zero-diagonal P~, Q~ (D[m]: P^m's diagonal, subtracted from the sums):
    [S~_pq + (1^T R~_p)(1^T R~_q) / ((N-1)(N-2)) - (2/(N-2)) R~_p . R~_q] / (N (N-3))
"""
import torch


def biased(sums, rows):
    n = rows.shape[1]
    totals = rows.sum(1)
    return (sums - (2.0 / n) * rows @ rows.T + torch.outer(totals, totals) / n ** 2) / n ** 2


def unbiased(sums, rows, diagonals):
    n = rows.shape[1]
    sums, rows = sums - diagonals @ diagonals.T, rows - diagonals
    totals = rows.sum(1)
    return (sums + torch.outer(totals, totals) / ((n - 1) * (n - 2)) - (2.0 / (n - 2)) * rows @ rows.T) / (n * (n - 3))
