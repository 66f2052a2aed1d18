#!/usr/bin/env bash
# Fuzzes every parser of outside input (fuzz/fuzz_*.cpp) with libFuzzer,
# AddressSanitizer and UndefinedBehaviorSanitizer, for a fixed number of
# executions per target, starting from the seed corpus in tests/fuzz/corpus/.
#
# A crash, a sanitizer report, an exception other than zt::Error, an input
# that runs longer than FUZZ_TIMEOUT_S or grows past FUZZ_RSS_MB fails the
# script; the input is kept in build-asan/crashes/ and the command that
# replays it is printed. Inputs the fuzzer finds interesting accumulate in
# build-asan/corpus/ (not in the source tree), so later runs start further.
#
#   FUZZ_RUNS       executions per target (default 3000)
#   FUZZ_TARGETS    space-separated subset of the targets (default: all)
#   FUZZ_BUILD_DIR  the clang build tree (default: build-asan, the tree
#                   scripts/sanitize.sh builds its tests in; see
#                   scripts/asan-tree.sh)
#
# Without clang++ it says so and exits 0, as check-cuda-build.sh does without
# nvcc; scripts/install-deps.sh installs clang.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${FUZZ_RUNS:-3000}
TIMEOUT_S=${FUZZ_TIMEOUT_S:-20}
RSS_MB=${FUZZ_RSS_MB:-3072}
ASAN_TREE=${FUZZ_BUILD_DIR:-build-asan}
# shellcheck source=scripts/asan-tree.sh
source scripts/asan-tree.sh
BUILD=$ASAN_TREE
ALL="safetensors token_shard data_meta manifest hf_config train_config jsonl sentencepiece"
TARGETS=${FUZZ_TARGETS:-$ALL}

if ! command -v clang++ >/dev/null; then
  echo "fuzz: clang++ is not installed; the libFuzzer targets were not built or run"
  exit 0
fi
asan_tree_configure
echo "fuzz: building the targets in $BUILD (clang, libFuzzer + ASan + UBSan)"
t0=$SECONDS
cmake --build "$BUILD" -j"$(nproc)" --target fuzz_targets >"$BUILD/build-fuzz.log" 2>&1 ||
  { tail -40 "$BUILD/build-fuzz.log"; exit 1; }
echo "fuzz: built the targets ($((SECONDS - t0)) s)"

mkdir -p "$BUILD/crashes"
for t in $TARGETS; do
  [ -d "tests/fuzz/corpus/$t" ] || { echo "fuzz: no seed corpus tests/fuzz/corpus/$t for target '$t'"; exit 2; }
done

# fuzz_one TARGET: runs one target into $BUILD/fuzz_TARGET.log; exits as the
# fuzzer does.
fuzz_one() {
  local t=$1 work="$BUILD/corpus/$1"
  mkdir -p "$work"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
    "$BUILD/fuzz/fuzz_$t" -runs="$RUNS" -timeout="$TIMEOUT_S" -rss_limit_mb="$RSS_MB" \
    -artifact_prefix="$BUILD/crashes/$t-" -print_final_stats=1 \
    "$work" "tests/fuzz/corpus/$t" >"$BUILD/fuzz_$t.log" 2>&1
}

# The targets run side by side, one a core (each fuzzer is one thread with a
# scratch directory of its own); the results print in the order of TARGETS.
JOBS=$(nproc)
declare -A pid_of
for t in $TARGETS; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  fuzz_one "$t" &
  pid_of[$t]=$!
done
failed=""
for t in $TARGETS; do
  log="$BUILD/fuzz_$t.log"
  if wait "${pid_of[$t]}"; then
    done_line=$(grep -E '^Done [0-9]+ runs' "$log" | tail -1)
    echo "fuzz: $t: ${done_line:-finished} (corpus $(find "$BUILD/corpus/$t" -type f | wc -l) inputs)"
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
