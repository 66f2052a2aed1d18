# shellcheck shell=bash
# The CMake configuration of the GPU machine's build, sourced by
# scripts/check-cuda-build.sh (CI) and scripts/gpu-check.sh (the device), so
# the configuration CI proves to build and link is the one that travels.
# It needs none of the Debian packages: the portable GEMM instead of
# OpenBLAS, no SentencePiece, no MPI, no oneDNN, the header-only libraries and
# GoogleTest from the bundle (scripts/gpu-bundle.sh), no zt_tests (zlib).
# cuDNN and NCCL come from the toolkit or the pip wheels (CMakeLists.txt).
#   zt_device_cmake_args BUNDLE_DIR   prints one argument a line
zt_device_cmake_args() {
    printf '%s\n' -DZT_CUDA=ON -DZT_BLAS=OFF -DZT_SENTENCEPIECE=OFF -DZT_MPI=OFF -DZT_DNNL=OFF \
        -DZT_TESTS=ON -DZT_CPU_TESTS=OFF "-DZT_THIRD_PARTY_DIR=$1"
}

# The device build's targets: the binary and the GPU op tests.
# shellcheck disable=SC2034  # used by the scripts that source this file
ZT_DEVICE_TARGETS=(zerotrain zt_gpu_tests)
