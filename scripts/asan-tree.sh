# shellcheck shell=bash
# The AddressSanitizer tree that scripts/fuzz.sh and scripts/sanitize.sh
# share (sourced by both, never run). One clang tree serves both: the layers
# are compiled once with ASan, LSan and UBSan, and the parser layers also carry
# libFuzzer's coverage instrumentation (-fsanitize=fuzzer-no-link, which the
# ASan runtime satisfies in binaries that are not fuzzers), so fuzz.sh links
# its fuzz_* targets and sanitize.sh its test binaries against the same
# objects. Both scripts configure it with the arguments below; a tree
# configured otherwise would be rebuilt from scratch by the other script.
#
# Debug at -O0 with line tables, except the kernels (zt_ops at -O1, see
# CMakeLists.txt): -O0 compiles in half the time of -O1, and the sanitizers
# check what the code does, not how fast.
ASAN_TREE=${ASAN_TREE:-build-asan}

# The test files of zt_sanitize_tests (sanitize.sh says which of their tests
# run and why).
asan_tree_test_files() {
  local files="test_adamw.cpp;test_comm_dtypes.cpp;test_data.cpp;test_model.cpp;test_ops.cpp"
  files+=";test_ops_bf16_attention.cpp;test_ops_bf16_elementwise.cpp;test_ops_bf16_matmul.cpp"
  files+=";test_prefetch.cpp;test_safetensors.cpp;test_simnet.cpp;test_zero.cpp"
  files+=";test_zero_ranks.cpp;test_rank_faults.cpp;test_trace.cpp"
  echo "$files"
}

# asan_tree_configure: configures $ASAN_TREE (again on every run, so that the
# lists here apply to a tree an earlier run left); its output goes to
# $ASAN_TREE/configure.log, printed when it fails.
asan_tree_configure() {
  mkdir -p "$ASAN_TREE"
  CC=clang CXX=clang++ cmake -S . -B "$ASAN_TREE" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS_DEBUG="-O0 -gline-tables-only" -DZT_CUDA=OFF -DZT_NATIVE=OFF \
    -DZT_SANITIZE=ON -DZT_FUZZ=ON -DZT_SANITIZE_TESTS="$(asan_tree_test_files)" \
    -DZT_SANITIZE_TESTS_LINK=zt >"$ASAN_TREE/configure.log" 2>&1 ||
    { cat "$ASAN_TREE/configure.log"; return 1; }
}
