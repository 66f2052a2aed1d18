#!/usr/bin/env bash
# Fills a folder (default .gpu-bundle/, ignored by git) with the third-party
# sources the device build takes from -DZT_THIRD_PARTY_DIR, copied from this
# machine's Debian packages: nlohmann/ (nlohmann-json3-dev), CLI/
# (libcli11-dev) and googletest/ (googletest, the source tree). A GPU machine
# without those packages builds from the copy that travels with the tree
# (scripts/gpu-check.sh); nothing of it is committed.
#   scripts/gpu-bundle.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-.gpu-bundle}"
need() {  # path debian-package
    [[ -e "$1" ]] || { echo "gpu-bundle: $1 is missing (Debian: apt-get install $2)" >&2; exit 1; }
}
need /usr/include/nlohmann/json.hpp nlohmann-json3-dev
need /usr/include/CLI/CLI.hpp libcli11-dev
need /usr/src/googletest/CMakeLists.txt googletest
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp"
cp -r /usr/include/nlohmann /usr/include/CLI "$dest.tmp/"
cp -r /usr/src/googletest "$dest.tmp/googletest"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "gpu-bundle: $dest ($(du -sh "$dest" | cut -f1)): nlohmann/, CLI/, googletest/"
