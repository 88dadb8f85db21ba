"""The safety net for the user's triton (kernels/launch.py): a kernel that the installed triton cannot
build warns once, naming the kernel, the triton version and the fallback, and the call takes the torch
path on the same device with the same numbers and gradients; a triton below the tested floor runs the
torch paths, one above it warns once. The failure is forced for real: the patched launch compiles a
broken kernel for sm_90 with Triton's own compiler, which raises from triton.compiler as a kernel of
fastmi's would on a triton that cannot build it."""
import re
import warnings
from pathlib import Path

import pytest
import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.jit import JITFunction

import fastmi
from fastmi.kernels import launch as launch_module

pytestmark = pytest.mark.kernels  # they run the Triton kernels: CI reruns them on other tritons

ROOT = Path(__file__).parents[1]


def _does_not_compile(X):
    tl_store(X, 1.0)  # noqa: F821 - a name the Triton front end cannot resolve


def compile_broken_kernel():
    """Raise what Triton raises for a kernel it cannot build: its compiler, for an H100, on this CPU."""
    source = ASTSource(JITFunction(_does_not_compile), {"X": "*fp32"})
    triton.compile(source, target=GPUTarget("cuda", 90, 32))


@pytest.fixture
def unbuildable(monkeypatch):
    """unbuildable(*names): launches of the named kernels fail to compile (counted); others run."""
    monkeypatch.setattr(launch_module, "_UNAVAILABLE", {})
    monkeypatch.setattr(launch_module, "_WARNED", set())
    run, attempts = launch_module._run, []

    def make(*names):
        def patched(kernel, grid, args, meta):
            if kernel.__name__ in names:
                attempts.append(kernel.__name__)
                compile_broken_kernel()
            run(kernel, grid, args, meta)
        monkeypatch.setattr(launch_module, "_run", patched)
        return attempts
    return make


def fallback_warnings(caught, name):
    return [w for w in caught if name in str(w.message)]


def assert_one_clear_warning(caught, name):
    found = fallback_warnings(caught, name)
    assert len(found) == 1, [str(w.message) for w in caught]
    message = str(found[0].message)
    assert triton.__version__ in message and "torch path" in message and "cannot build" in message
    assert found[0].filename == __file__  # it points at the user's line


def test_the_forced_failure_is_triton_compiler_error():
    with pytest.raises(Exception) as error:
        compile_broken_kernel()
    assert launch_module.raised_while_building(error.value)
    assert not launch_module.raised_while_building(ValueError("a launcher's own check"))


def test_unit_mi_falls_back_once_with_the_same_numbers(unbuildable, gen):
    attempts = unbuildable("_unit_mi_kernel")
    a, b = torch.randn(300, 5, generator=gen), torch.randn(300, 6, generator=gen)
    expected = fastmi.unit_mi(a, b, backend="torch")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = fastmi.unit_mi(a, b, backend="triton")
        second = fastmi.unit_mi(a, b, backend="triton")
    assert_one_clear_warning(caught, "_unit_mi_kernel")
    assert attempts == ["_unit_mi_kernel"]  # the second call does not try to compile again
    torch.testing.assert_close(first, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(second, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("measure, broken", [("layer_mi", "_kde_chain_fwd_kernel"), ("layer_mi", "_kde_bwd_kernel"),
                                             ("cka", "_gram_fwd_kernel"), ("cka", "_gram_bwd_kernel")])
def test_differentiable_measures_fall_back_in_forward_or_backward(unbuildable, measure, broken, gen):
    """The KDE and the dependence measures: a forward kernel that cannot be built, or only a backward one
    (the forward then ran its kernel), gives the torch path's value and gradients."""
    unbuildable(broken)
    fn = getattr(fastmi, measure)
    a = torch.randn(160, 6, generator=gen, requires_grad=True)
    b = (torch.tanh(a.detach() @ torch.randn(6, 4, generator=gen)) + 0.3 * torch.randn(160, 4, generator=gen))
    b.requires_grad_()
    expected = fn(a, b, backend="torch")
    expected_grads = torch.autograd.grad(expected, (a, b))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fn(a, b, backend="triton")
        grads = torch.autograd.grad(value, (a, b))
    assert_one_clear_warning(caught, broken)
    torch.testing.assert_close(value, expected.to(value.dtype), rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("estimator, broken", [("binned", "_bin_hash_kernel"), ("ksg", "_eps_kernel")])
def test_histogram_and_ksg_fall_back(unbuildable, estimator, broken, gen):
    attempts = unbuildable(broken)
    a = torch.randn(400, 12, generator=gen)  # 12 + 12 dims: KSG takes its tiles, not the CPU tree
    b = a + 0.5 * torch.randn(400, 12, generator=gen)
    expected = fastmi.layer_mi(a, b, estimator=estimator, backend="torch")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fastmi.layer_mi(a, b, estimator=estimator, backend="triton")
    assert attempts == [broken]
    assert_one_clear_warning(caught, broken)
    torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-9)


def test_errors_that_are_not_compile_errors_still_raise(monkeypatch, gen):
    """A kernel that compiled but fails when it runs is a bug to report, not a reason to fall back."""
    def fails_at_run_time(kernel, grid, args, meta):
        raise RuntimeError("an illegal memory access was encountered")
    monkeypatch.setattr(launch_module, "_run", fails_at_run_time)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        fastmi.layer_mi(torch.randn(50, 3, generator=gen), torch.randn(50, 3, generator=gen), backend="triton")


def test_triton_below_the_floor_runs_the_torch_paths(monkeypatch, gen):
    monkeypatch.setattr(launch_module, "_WARNED", set())
    monkeypatch.setattr(launch_module, "triton_version", lambda: (3, 2))
    a, b = torch.randn(120, 4, generator=gen), torch.randn(120, 4, generator=gen)
    expected = fastmi.layer_mi(a, b, backend="torch")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = [fastmi.layer_mi(a, b, backend="triton"), fastmi.unit_mi(a, b, backend="triton")]
    older = [str(w.message) for w in caught if "older than" in str(w.message)]
    assert len(older) == 1 and "3.4 to 3.9" in older[0] and "torch >= 2.8" in older[0]
    torch.testing.assert_close(values[0], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(values[1], fastmi.unit_mi(a, b, backend="torch"), rtol=0, atol=1e-12)


def test_triton_above_the_tested_range_warns_once_and_runs_the_kernels(monkeypatch, gen):
    monkeypatch.setattr(launch_module, "_WARNED", set())
    monkeypatch.setattr(launch_module, "triton_version", lambda: (3, 99))
    launched = []
    run = launch_module._run
    monkeypatch.setattr(launch_module, "_run", lambda *args: (launched.append(args[0].__name__), run(*args)))
    a, b = torch.randn(120, 4, generator=gen), torch.randn(120, 4, generator=gen)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fastmi.layer_mi(a, b, backend="triton")
        fastmi.layer_mi(a, b, backend="triton")
    assert len([w for w in caught if "newer than" in str(w.message)]) == 1
    assert "_kde_chain_fwd_kernel" in launched


def test_packaging_states_the_tested_range():
    """pyproject asks for the torch that pins the tested floor, not for triton (torch brings its own: CUDA's
    `triton` or ROCm's `pytorch-triton-rocm`); the dev extra's triton floor is the tested one; no upper cap;
    the docs say so."""
    (low, high) = launch_module.TESTED_TRITON
    pyproject = (ROOT / "pyproject.toml").read_text()
    block = pyproject.split("dependencies = [")[1].split("]")[0]
    dependencies = [name for line in block.splitlines() for name in re.findall(r'"([^"]+)"', line.split("#")[0])]
    assert "torch>=2.8" in dependencies and not any(name.startswith("triton") for name in dependencies)
    assert re.search(rf'"triton>={low[0]}\.{low[1]}(\.0)?;', pyproject.split("dev = [")[1])
    assert not re.search(r'"(torch|triton)[^"]*<', pyproject)  # a cap would make the next torch uninstallable
    docs = (ROOT / "docs" / "distributed.md").read_text()
    assert f"triton {low[0]}.{low[1]} to {high[0]}.{high[1]}" in docs
