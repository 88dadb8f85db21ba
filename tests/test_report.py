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
