#!/usr/bin/env bash
# Installs zerotrain's build and test dependencies from Debian's packages.
# python3-torch is the golden-test reference and the CPU benchmark's peer,
# never a runtime dependency of the binary; clang and libomp-dev build the
# libFuzzer targets (scripts/fuzz.sh); gnuplot draws `zerotrain plot`'s
# figures (zlib1g-dev lets the tests inflate them) and iproute2 (ip, tc)
# shapes the links of a sweep's netns mode.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  g++ cmake ninja-build pkg-config \
  libopenblas-openmp-dev libdnnl-dev nlohmann-json3-dev libcli11-dev libgtest-dev \
  libopenmpi-dev openmpi-bin \
  libsentencepiece-dev sentencepiece fortunes \
  python3-torch python3-numpy \
  clang libclang-rt-14-dev libomp-dev \
  gnuplot-nox iproute2 zlib1g-dev >/dev/null
echo "install-deps: done"
