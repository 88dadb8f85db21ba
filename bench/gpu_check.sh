#!/usr/bin/env bash
# The GPU check, on a machine with a CUDA GPU (torch, triton, numpy and pytest already installed; no
# registry needed): first the compiled Triton kernels against the float64 reference and the torch paths
# (tests/test_gpu.py), then timings against the dense baseline (bench/gpu.py) and the Regularizer's cost
# (bench/overhead.py). JSON goes to $FASTMI_RESULTS (default bench/output/); exits non-zero on a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
pip install --no-deps --no-build-isolation -e . >/dev/null || exit 1
export TRITON_INTERPRET=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" || exit 1
status=0
python -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py || status=$?
python -m bench gpu "$@" || status=$?
python -m bench overhead || status=$?
exit $status
