"""Closed forms and MI-keeping maps of the ground-truth tasks (bench/accuracy.py, bench/suite.py): invertible
per-variable maps leave MI unchanged, so a Gaussian's closed form stays the truth through them."""
import math

import torch


def student_t_correction(nu, da, db):
    """MI of a multivariate Student-t minus that of the Gaussian with the same scale matrix
    (Arellano-Valle, Contreras-Reyes & Genton 2013): f(nu) + f(nu + da + db) - f(nu + da) - f(nu + db),
    f(x) = ln Gamma(x / 2) - (x / 2) psi(x / 2)."""
    def f(x):
        return math.lgamma(x / 2) - (x / 2) * float(torch.special.digamma(torch.tensor(x / 2, dtype=torch.float64)))
    return f(nu) + f(nu + da + db) - f(nu + da) - f(nu + db)


def spiral(x, speed=0.5):
    """Rotate the first two coordinates by speed * |x|^2: invertible (|x| is kept), so MI is unchanged."""
    angle = speed * x.square().sum(1)
    c, s = torch.cos(angle), torch.sin(angle)
    out = x.clone()
    out[:, 0], out[:, 1] = c * x[:, 0] - s * x[:, 1], s * x[:, 0] + c * x[:, 1]
    return out


def half_cube(x):
    return x * x.abs().sqrt()


def normal_cdf(x):
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))
