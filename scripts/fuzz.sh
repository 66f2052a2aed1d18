#!/usr/bin/env bash
# Fuzzes every parser of outside input (fuzz/fuzz_*.cpp) with libFuzzer,
# AddressSanitizer and UndefinedBehaviorSanitizer, for a fixed number of
# executions per target, starting from the seed corpus in tests/fuzz/corpus/.
#
# A crash, a sanitizer report, an exception other than zt::Error, an input
# that runs longer than FUZZ_TIMEOUT_S or grows past FUZZ_RSS_MB fails the
# script; the input is kept in build-fuzz/crashes/ and the command that
# replays it is printed. Inputs the fuzzer finds interesting accumulate in
# build-fuzz/corpus/ (not in the source tree), so later runs start further.
#
#   FUZZ_RUNS       executions per target (default 3000)
#   FUZZ_TARGETS    space-separated subset of the targets (default: all)
#   FUZZ_BUILD_DIR  the clang build tree (default: build-fuzz)
#
# Without clang++ it says so and exits 0, as check-cuda-build.sh does without
# nvcc; scripts/install-deps.sh installs clang.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${FUZZ_RUNS:-3000}
TIMEOUT_S=${FUZZ_TIMEOUT_S:-20}
RSS_MB=${FUZZ_RSS_MB:-3072}
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
ALL="safetensors token_shard data_meta manifest hf_config train_config jsonl sentencepiece"
TARGETS=${FUZZ_TARGETS:-$ALL}

if ! command -v clang++ >/dev/null; then
  echo "fuzz: clang++ is not installed; the libFuzzer targets were not built or run"
  exit 0
fi
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DZT_CUDA=OFF -DZT_TESTS=OFF -DZT_FUZZ=ON >/dev/null
fi
echo "fuzz: building the targets in $BUILD (clang, libFuzzer + ASan + UBSan)"
cmake --build "$BUILD" -j"$(nproc)" --target fuzz_targets >/dev/null

mkdir -p "$BUILD/crashes"
failed=""
for t in $TARGETS; do
  seeds="tests/fuzz/corpus/$t"
  work="$BUILD/corpus/$t"
  [ -d "$seeds" ] || { echo "fuzz: no seed corpus $seeds for target '$t'"; exit 2; }
  mkdir -p "$work"
  log="$BUILD/fuzz_$t.log"
  if ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
     "$BUILD/fuzz/fuzz_$t" -runs="$RUNS" -timeout="$TIMEOUT_S" -rss_limit_mb="$RSS_MB" \
       -artifact_prefix="$BUILD/crashes/$t-" -print_final_stats=1 \
       "$work" "$seeds" >"$log" 2>&1; then
    done_line=$(grep -E '^Done [0-9]+ runs' "$log" | tail -1)
    echo "fuzz: $t: ${done_line:-finished} (corpus $(ls "$work" | wc -l) inputs)"
  else
    artifact=$(grep -oE "$BUILD/crashes/$t-[^ ]+" "$log" | tail -1 || true)
    echo "fuzz: $t FAILED; the fuzzer's report:"
    grep -E 'ERROR|SUMMARY|terminate|what\(\)|runtime error|Test unit written' "$log" | head -20
    echo "fuzz: replay with: $BUILD/fuzz/fuzz_$t ${artifact:-<the input in $BUILD/crashes>}"
    failed="$failed $t"
  fi
done
if [ -n "$failed" ]; then
  echo "fuzz: findings in:$failed (logs: $BUILD/fuzz_*.log)"
  exit 1
fi
echo "fuzz: every target ran $RUNS executions without a finding"
