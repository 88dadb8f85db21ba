#!/usr/bin/env bash
# A rehearsal of bench/gpu_check.sh on what the GPU host has: torch, triton 3.6, numpy, pytest and
# setuptools, and no package registry (no scipy, scikit-learn, hypothesis, matplotlib, dcor). In a venv
# of only those (numpy < 2.4: triton 3.6's interpreter needs it), fastmi installs as the script installs
# it, the GPU tests collect, every module the script runs imports, and `python -m bench gpu --quick`
# runs its code (in the interpreter: no GPU here).
#   usage: .ci/gpu_host.sh CACHE_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
cache=$1
venv="$cache/gpu-host-venv"
python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0 "numpy<2.4" pytest setuptools
python -m pip install -q --no-deps triton==3.6.0
python -m pip install -q --no-deps --no-build-isolation -e .
python - <<'PY'
import importlib.util
extra = [name for name in ("scipy", "sklearn", "hypothesis", "matplotlib", "dcor") if importlib.util.find_spec(name)]
assert not extra, f"the rehearsal venv has packages the GPU host lacks: {extra}"
import numpy, torch, triton
print("GPU-host rehearsal: torch", torch.__version__, "triton", triton.__version__, "numpy", numpy.__version__)
PY
python -m pytest --collect-only -q -m gpu -p no:cacheprovider tests/test_gpu.py | tail -n 1
python -c "import bench.gpu, bench.overhead, fastmi.kernels.compile_check"
python -m bench gpu --quick --out "$cache/gpu-quick"
