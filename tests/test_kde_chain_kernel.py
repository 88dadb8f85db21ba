"""kernels.kde.chain_log_sums (the chain forward kernel, in the interpreter): against a dense float64
reference, and equal to log_sums on each successive pair within float32 rounding."""
import math

import pytest
import torch

from fastmi import kernels

pytestmark = pytest.mark.kernels  # they run the Triton kernels: CI reruns them on other tritons

LN2 = math.log(2.0)


def chain_operand(n, widths, dtype, gen):
    """Layers side by side, each a noisy function of the previous one (scaled like fastmi's operands)."""
    layers = [torch.randn(n, widths[0], generator=gen, dtype=torch.float64)]
    for width in widths[1:]:
        mix = torch.randn(layers[-1].shape[1], width, generator=gen, dtype=torch.float64) / layers[-1].shape[1] ** 0.5
        layers.append(torch.tanh(layers[-1] @ mix) + 0.5 * torch.randn(n, width, generator=gen, dtype=torch.float64))
    x = torch.cat([layer - layer.mean(0) for layer in layers], 1) * 0.7
    offsets = [0]
    for width in widths:
        offsets.append(offsets[-1] + width)
    return x.to(dtype), offsets


def reference_chain_sums(x, offsets, loo):
    """(2L - 1, N) float64: ln sum_j exp2(-d^m_ij) per layer, then ln sum_j exp2(-d^l_ij - d^(l+1)_ij)."""
    x = x.double()
    dists = []
    for lo, hi in zip(offsets[:-1], offsets[1:]):
        d = torch.cdist(x[:, lo:hi], x[:, lo:hi], compute_mode="donot_use_mm_for_euclid_dist").square()
        dists.append(d.fill_diagonal_(math.inf) if loo else d)
    joints = [a + b for a, b in zip(dists[:-1], dists[1:])]
    return torch.stack([torch.logsumexp(-LN2 * d, dim=1) for d in dists + joints])


# float32: the tf32x3 products; float16: operands rounded to fp16, the reference on the same rounded values
TOL = {torch.float32: 2e-5, torch.float16: 2e-4}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("loo", [False, True])
@pytest.mark.parametrize("widths", [[5, 20, 3], [16, 1, 33, 7]], ids=["L3", "L4"])
def test_chain_sums_match_float64_reference(dtype, loo, widths, gen):
    x, offsets = chain_operand(150, widths, dtype, gen)
    sums = kernels.kde.chain_log_sums(x, offsets, loo)
    assert sums.shape == (2 * len(widths) - 1, 150) and sums.dtype == torch.float32
    torch.testing.assert_close(sums.double(), reference_chain_sums(x, offsets, loo), atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("loo", [False, True])
def test_chain_equals_log_sums_of_each_successive_pair(loo, gen):
    widths = [5, 20, 3, 9]
    x, offsets = chain_operand(130, widths, torch.float32, gen)
    sums = kernels.kde.chain_log_sums(x, offsets, loo, rows=(7, 120), splits=3)
    count = len(widths)
    for m in range(count - 1):
        a, b = x[:, offsets[m]:offsets[m + 1]], x[:, offsets[m + 1]:offsets[m + 2]]
        pair = kernels.kde.log_sums(a, b, loo, rows=(7, 120), splits=2)
        torch.testing.assert_close(sums[[m, m + 1, count + m]], pair, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("loo", [False, True])
def test_long_chains_go_in_windows_that_share_a_layer(loo, gen):
    """Seven layers: more than one launch takes (MAX_LAYERS); the windows agree with the reference."""
    widths = [3, 4, 2, 5, 3, 2, 4]
    assert len(widths) > kernels.kde.MAX_LAYERS
    x, offsets = chain_operand(70, widths, torch.float32, gen)
    sums = kernels.kde.chain_log_sums(x, offsets, loo)
    torch.testing.assert_close(sums.double(), reference_chain_sums(x, offsets, loo), atol=2e-5, rtol=2e-5)


def test_chain_launcher_refuses_what_it_cannot_index(gen):
    x, offsets = chain_operand(40, [3, 4], torch.float32, gen)
    with pytest.raises(ValueError, match="offsets"):
        kernels.kde.chain_log_sums(x, [0, 7], False)  # one layer
    with pytest.raises(ValueError, match="offsets"):
        kernels.kde.chain_log_sums(x, [0, 5, 3, 7], False)  # not increasing
    with pytest.raises(ValueError, match="offsets"):
        kernels.kde.chain_log_sums(x, [0, 3, 6], False)  # does not end at the last column
    with pytest.raises(ValueError, match="2-d"):
        kernels.kde.chain_log_sums(x[:, 0], offsets, False)
    with pytest.raises(TypeError, match="dtypes"):
        kernels.kde.chain_log_sums(x.double(), offsets, False)
    with pytest.raises(ValueError, match="row-major"):
        kernels.kde.chain_log_sums(x.T.contiguous().T, offsets, False)
    with pytest.raises(ValueError, match="rows must be a range"):
        kernels.kde.chain_log_sums(x, offsets, False, rows=(30, 50))
