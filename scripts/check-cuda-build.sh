#!/usr/bin/env bash
# Builds the CUDA backend (-DZT_CUDA=ON) and runs its GPU tests, so the CUDA
# code keeps compiling against the same op and engine interfaces as the CPU
# build. Without a GPU every GPU test skips and says why (ctest counts them as
# skipped); without a CUDA toolkit nothing can be checked and this says so.
#   scripts/check-cuda-build.sh [BUILD_DIR]     (default build-cuda)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${1:-build-cuda}"
nvcc="${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
if [[ ! -x "$nvcc" ]]; then
    echo "check-cuda-build: no CUDA toolkit (nvcc not on PATH or at /usr/local/cuda/bin): the CUDA build was NOT checked"
    exit 0
fi
echo "check-cuda-build: building with $nvcc into $build_dir"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DZT_CUDA=ON \
      -DCMAKE_CUDA_COMPILER="$nvcc" >/dev/null
cmake --build "$build_dir" -j2 --target zerotrain zt_gpu_tests
ctest --test-dir "$build_dir" -L gpu --output-on-failure
