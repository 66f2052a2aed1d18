#!/usr/bin/env bash
# Runs the GPU op tests under compute-sanitizer's memcheck (out-of-bounds and
# misaligned accesses, leaks at exit). Needs a CUDA device.
#   tests/gpu/run_memcheck.sh [BUILD_DIR] [gtest filter]
# BUILD_DIR defaults to /tmp/build-cuda; exit status is non-zero on any error.
set -euo pipefail
build_dir="${1:-/tmp/build-cuda}"
filter="${2:-*}"
bin="$build_dir/tests/gpu/zt_gpu_tests"
sanitizer="${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}"
[[ -x "$bin" ]] || { echo "run_memcheck: $bin not built (cmake --build $build_dir --target zt_gpu_tests)" >&2; exit 2; }
[[ -x "$sanitizer" ]] || { echo "run_memcheck: compute-sanitizer not found (set COMPUTE_SANITIZER)" >&2; exit 2; }
exec "$sanitizer" --tool memcheck --leak-check full --error-exitcode 1 \
    "$bin" --gtest_filter="$filter"
