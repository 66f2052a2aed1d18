#!/usr/bin/env bash
# Fails when a binary needs a shared library the GPU machine does not have:
# everything outside the C runtime (glibc's libraries, libstdc++, libgcc_s,
# libgomp) and the CUDA family (cudart, cuBLAS/cuBLASLt, cuDNN, NCCL, the
# driver) is refused by name, and so is any library ldd cannot find.
#   scripts/gpu/check_ldd.sh BINARY...
set -euo pipefail
allowed='^(linux-vdso|ld-linux-x86-64|libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|libgomp|libcudart|libcublas|libcublasLt|libcudnn[a-z_]*|libnccl|libcuda)\.so'
bad=0
for bin in "$@"; do
    [[ -x "$bin" ]] || { echo "check_ldd: $bin is not an executable" >&2; exit 2; }
    echo "ldd $bin:"
    out="$(ldd "$bin")"
    while IFS= read -r line; do echo "    $line"; done <<<"$out"
    while read -r name rest; do
        [[ -z "$name" ]] && continue
        lib="$(basename "$name")"
        if [[ "$rest" == *"not found"* ]]; then
            echo "check_ldd: $bin needs $lib, which is not found" >&2
            bad=1
        elif ! [[ "$lib" =~ $allowed ]]; then
            echo "check_ldd: $bin needs $lib, outside the C runtime and the CUDA libraries" >&2
            bad=1
        fi
    done <<<"$out"
done
if [[ $bad == 0 ]]; then echo "check_ldd: PASS (only the C runtime and CUDA libraries)"; fi
exit "$bad"
