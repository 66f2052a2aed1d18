#!/usr/bin/env bash
# Builds the GPU machine's configuration (scripts/gpu/device_config.sh: CUDA
# on; no OpenBLAS, SentencePiece, MPI, oneDNN; the header-only libraries and
# GoogleTest from the bundle of scripts/gpu-bundle.sh), so CI proves that what
# travels to a lent GPU builds and links there, and runs its GPU tests:
#   - only the device's targets (zerotrain, zt_gpu_tests);
#   - the headers it compiled against came from the bundle, not from the
#     Debian packages this machine also has (ninja's dependency records);
#   - `ldd` of both binaries names nothing outside the C runtime and the
#     CUDA libraries (scripts/gpu/check_ldd.sh);
#   - the GPU op tests: without a GPU every one skips and says why (ctest
#     counts them as skipped);
#   - the communication layer once more with MPI beside CUDA (the device
#     build has no MPI, a cluster's build has both: NCCL bootstrapped over
#     MPI, the factory's MPI+CUDA branches), into BUILD_DIR-mpi, zt_comm only.
# Without a working nvidia-smi the GPU tests only skip, so nothing built here
# runs but the test binary's skip: the host C++ is compiled unoptimised
# (-DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O0, no -g), which halves
# the build; with a GPU present it is a Release build, whose tests measure
# the real kernels. Without a CUDA toolkit nothing can be checked and this
# says so.
#   scripts/check-cuda-build.sh [BUILD_DIR]     (default build-cuda)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${1:-build-cuda}"
nvcc="${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
if [[ ! -x "$nvcc" ]]; then
    echo "check-cuda-build: no CUDA toolkit (nvcc not on PATH or at /usr/local/cuda/bin): the CUDA build was NOT checked"
    exit 0
fi
# shellcheck source=scripts/gpu/device_config.sh
source scripts/gpu/device_config.sh
bash scripts/gpu-bundle.sh .gpu-bundle
if nvidia-smi -L >/dev/null 2>&1; then
    build_type=(-DCMAKE_BUILD_TYPE=Release)
    why="a GPU is visible: Release"
else
    build_type=(-DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O0 -DCMAKE_CUDA_FLAGS_DEBUG=)
    why="no GPU visible, the GPU tests only skip: host C++ at -O0"
fi
mapfile -t device_args < <(zt_device_cmake_args "$PWD/.gpu-bundle")
echo "check-cuda-build: building the device configuration with $nvcc into $build_dir ($why)"
cmake -S . -B "$build_dir" -G Ninja "${build_type[@]}" "${device_args[@]}" \
      -DCMAKE_CUDA_COMPILER="$nvcc" >/dev/null
cmake --build "$build_dir" -j2 --target "${ZT_DEVICE_TARGETS[@]}"

# Headers from the Debian packages the GPU machine lacks (the bundle's copies
# live under .gpu-bundle/, so a hit here means the build reached past it).
forbidden='^ +/usr/(include|lib/x86_64-linux-gnu)/(nlohmann|CLI|gtest|gmock|sentencepiece|x86_64-linux-gnu/openblas|openblas|cblas|mpi|openmpi|oneapi|dnnl|zlib)'
if leaked="$(ninja -C "$build_dir" -t deps | grep -E "$forbidden" | sort -u)" && [[ -n "$leaked" ]]; then
    echo "check-cuda-build: FAIL: the device build compiled against headers of packages the GPU machine lacks:" >&2
    head -n 20 <<<"$leaked" >&2
    exit 1
fi
echo "check-cuda-build: no header from OpenBLAS, SentencePiece, MPI, oneDNN, zlib or the system's json/CLI11/gtest"
bash scripts/gpu/check_ldd.sh "$build_dir/zerotrain" "$build_dir/tests/gpu/zt_gpu_tests"
"$build_dir/zerotrain" --version
ctest --test-dir "$build_dir" -L gpu --output-on-failure

if [[ -n "$(command -v mpicxx || true)" ]]; then
    echo "check-cuda-build: zt_comm with CUDA and MPI into $build_dir-mpi"
    cmake -S . -B "$build_dir-mpi" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O0 \
          -DZT_CUDA=ON -DZT_MPI=ON -DZT_TESTS=OFF -DCMAKE_CUDA_COMPILER="$nvcc" >/dev/null
    cmake --build "$build_dir-mpi" -j2 --target zt_comm
else
    echo "check-cuda-build: no mpicxx: the CUDA+MPI communication layer was NOT checked"
fi
