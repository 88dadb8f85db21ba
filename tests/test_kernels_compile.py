"""Every Triton kernel compiles for Hopper and Ampere GPUs (cubin), checked on a machine without one.

The CPU tests run the kernels in the interpreter, which never invokes Triton's compiler."""
import os
import subprocess
import sys
from pathlib import Path


def test_every_kernel_compiles_for_cuda_targets():
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_DEFAULT_FP_FUSION="1")
    run = subprocess.run([sys.executable, "-m", "fastmi.kernels.compile_check"], cwd=Path(__file__).parents[1], env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert " 0 failed" in run.stdout and "_eps_kernel" in run.stdout and "_kde_bwd_kernel" in run.stdout
