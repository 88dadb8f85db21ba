"""python -m fastmi: the environment report a user pastes into a bug report."""
import os
import subprocess
import sys

import fastmi
from fastmi import __main__ as report_module


def test_the_report_runs_as_a_module_and_lists_every_registry_entry():
    env = dict(os.environ, TRITON_INTERPRET="0")
    run = subprocess.run([sys.executable, "-m", "fastmi"], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    text = run.stdout
    assert text.startswith(f"fastmi {fastmi.__version__}") and "torch " in text and "numpy " in text
    assert "backend='auto' for float32 on cpu: torch" in text
    for name in [*fastmi.ESTIMATORS, *fastmi.MEASURES]:
        assert f"\n  {name} " in text
    assert "gcmi                   torch (no Triton kernels)" in text


def test_the_report_says_where_the_kernels_would_run_and_whether_triton_is_tested(monkeypatch):
    lines = report_module.report()  # tests run with TRITON_INTERPRET=1: the kernels "run" here
    assert any(line.startswith("backend='auto' for float32 on cpu: triton") for line in lines)
    assert "  kde                    Triton kernels" in lines
    if fastmi.kernels.AVAILABLE:
        assert any("in fastmi's tested range" in line for line in lines)
        monkeypatch.setattr(fastmi.kernels.launch, "TESTED_TRITON", ((9, 0), (9, 1)))
        assert any("below fastmi's tested range: the kernels are not used" in line for line in report_module.report())
    monkeypatch.setattr(fastmi.kernels, "AVAILABLE", False)
    assert any(line.startswith("triton: not installed") for line in report_module.report())


def test_the_report_names_the_distributions_that_install_triton_and_warns_on_a_clash():
    import triton
    found = report_module.triton_distributions()
    assert f"triton {triton.__version__}" in found  # this venv's CUDA wheel
    line = report_module._triton_packages_line(["triton 3.9.0"], None)
    assert line == "triton packages: triton 3.9.0"
    rocm = report_module._triton_packages_line(["triton 3.9.0"], "7.1")  # a ROCm torch beside the CUDA wheel
    assert "WARNING" in rocm and "pytorch-triton-rocm" in rocm
    both = report_module._triton_packages_line(["pytorch-triton-rocm 3.5.1", "triton 3.9.0"], "7.1")
    assert "more than one distribution" in both
    assert "WARNING" not in report_module._triton_packages_line(["pytorch-triton-rocm 3.5.1"], "7.1")
