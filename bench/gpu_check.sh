#!/usr/bin/env bash
# The GPU check: compiled Triton kernels vs the float64 reference, then fastmi vs the dense torch
# baseline. Run on a machine with a CUDA GPU (torch and triton already installed; no registry needed).
# Writes bench/results/gpu_check_<device>.json (or under $FASTMI_RESULTS) and
# bench/results/overhead_cuda.json (Regularizer cost); exits non-zero on a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
pip install --no-deps --no-build-isolation -e . >/dev/null
export TRITON_INTERPRET=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
status=0
python -m bench gpu "$@" || status=$?
python -m bench overhead || status=$?
exit $status
