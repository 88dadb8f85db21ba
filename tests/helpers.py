"""Data, tolerances and reference calls shared by the test modules (CPU, interpreter and GPU alike)."""
import torch

from fastmi import bandwidth, reference

# (value atol, gradient tolerance as max |error| / max |reference gradient|) per input dtype: the one
# table for the torch path, the Triton interpreter and compiled GPU kernels. On a GPU, where half-
# precision operands enter the tensor cores, a case also passes within 2x the error of the dense
# torch baseline in the same dtype (FlashAttention's rule; tests/test_gpu.py).
TOL = {
    torch.float64: (1e-10, 1e-9),
    torch.float32: (2e-5, 2e-5),
    torch.float16: (5e-3, 1e-2),
    torch.bfloat16: (1e-2, 2e-2),
}


def shifted_pair(n, da, db, gen, dtype):
    """a ~ N(0, I); b ~ N(0, I) with its first min(da, db) columns shifted by 1.5 a."""
    a = torch.randn(n, da, generator=gen, dtype=torch.float64)
    b = torch.randn(n, db, generator=gen, dtype=torch.float64)
    k = min(da, db)
    b[:, :k] += 1.5 * a[:, :k]
    return a.to(dtype), b.to(dtype)


def noisy_copy_pair(n, da, db, dtype, seed=0):
    """b = a's first db columns + 0.7 noise (db <= da), else an independent b."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, da, generator=g, dtype=torch.float64)
    b = a[:, :db] + 0.7 * torch.randn(n, db, generator=g, dtype=torch.float64) if db <= da else \
        torch.randn(n, db, generator=g, dtype=torch.float64)
    return a.to(dtype), b.to(dtype)


def shared_column_pair(n, da, db, dtype=torch.float64, seed=0):
    """Every column of b = a's first column + unit noise."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, da, generator=g, dtype=torch.float64)
    b = a[:, :1] + torch.randn(n, db, generator=g, dtype=torch.float64)
    return a.to(dtype), b.to(dtype)


def layer_pair(n, d, dtype, device, seed=0):
    """Two d-wide 'layers': a ~ N(0, I), b = tanh(a W / sqrt d) + 0.3 noise."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g)
    b = torch.tanh(a @ torch.randn(d, d, generator=g) / d ** 0.5) + 0.3 * torch.randn(n, d, generator=g)
    return a.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype)


def kde_reference(a, b, sigma="standardized_median", divergence="kl", loo=False):
    """(value, grad a, grad b) of the dense float64 reference on the very same (rounded) inputs, with
    the bandwidths layer_mi uses."""
    a64 = a.detach().double().requires_grad_()
    b64 = b.detach().double().requires_grad_()
    sa, sb = bandwidth.split_sigma(sigma)
    joint = a.shape[1] + b.shape[1]
    value = reference.kde_mi_dense(a64, b64, bandwidth.column_bandwidths(a64, sa, joint),
                                   bandwidth.column_bandwidths(b64, sb, joint), divergence, loo)
    ga, gb = torch.autograd.grad(value, (a64, b64))
    return float(value), ga, gb


def relative_error(g, ref):
    """max |g - ref| / max |ref|."""
    return float((g.double() - ref.to(g.device)).abs().max() / ref.abs().max().clamp_min(1e-300))
