#!/usr/bin/env bash
# The tritons GPU users get with their torch (docs/distributed.md, "Supported torch and triton"), checked on this CPU machine:
# every kernel variant compiles for sm_80 and sm_90, without spills, on the tested floor (3.4.0, which
# torch 2.8 pins), the GPU host's (3.6.0, torch 2.10-2.11) and README's torch's (3.7.1, torch 2.13); the
# newest (3.9, the venv's own) is checked by the test suite. Then the Triton-kernel tests (marker
# `kernels`) in the interpreter on 3.7.1. Each triton goes into a cache folder with pip --target and is
# chosen with PYTHONPATH, in the activated test venv.
#   usage: .ci/triton_matrix.sh CACHE_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
cache=$1
mkdir -p "$cache"

install_triton() {  # prints the folder that holds triton $1
  local target="$cache/triton-$1"
  [ -d "$target/triton" ] || python -m pip install -q --no-deps --target "$target" "triton==$1" >&2
  echo "$target"
}

for version in 3.4.0 3.6.0 3.7.1; do
  target=$(install_triton "$version")
  log="$cache/compile-check-$version.log"
  start=$SECONDS
  if ! TRITON_INTERPRET=0 TRITON_DEFAULT_FP_FUSION=1 PYTHONPATH="$target" \
      python -m fastmi.kernels.compile_check --report "$cache/static-$version.json" --strict >"$log" 2>&1; then
    grep -v '^ok \|^|' "$log" >&2
    echo "the compile check failed on triton $version (log: $log)" >&2
    exit 1
  fi
  echo "$(grep 'compiled, ' "$log"), no spills: $((SECONDS - start)) s"
done

start=$SECONDS
PYTHONPATH="$(install_triton 3.7.1)" python -m pytest -q -m kernels -p no:cacheprovider tests
echo "kernel tests in the interpreter on triton 3.7.1: $((SECONDS - start)) s"
