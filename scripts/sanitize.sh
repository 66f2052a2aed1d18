#!/usr/bin/env bash
# Runs a chosen part of the tests under the sanitizers, in two clang trees,
# each compiling only the layers and test files its tests need (the CMake
# cache lists ZT_SANITIZE_TESTS and ZT_SANITIZE_TESTS_LINK make the
# zt_sanitize_* binaries; see CMakeLists.txt). The set is chosen to keep the
# script near 6 minutes on 2 cores, build included; the Release ctest still
# runs every test.
#
# build-asan: AddressSanitizer with LeakSanitizer, and UndefinedBehaviorSanitizer
# (fatal: -fno-sanitize-recover), at -O0 except the kernels (zt_ops at -O1);
# the tree scripts/fuzz.sh builds its fuzzers in (scripts/asan-tree.sh
# configures it for both), so after fuzz.sh only the tests are left to compile:
#   unit    every test of the in-process test files: the CPU kernels (fp32 and
#           bf16, AdamW's scalar and AVX2 paths), the model, ZeRO's layout and
#           engine in one process, the communicators over threads (local,
#           simnet), the data loaders and prefetch thread, safetensors (and
#           its hostile files), the flight recorder and hang diagnosis. Not
#           ModelArch.OverfitsOneBatch (half a minute each under ASan; the
#           runs below train the same code) nor the golden tests against
#           PyTorch (test_golden*.cpp: they check numbers, which a sanitizer
#           does not, and take two minutes under ASan).
#   ranks   zerotrain itself, started the way users start it (--nproc,
#           mpirun): ZeRO stages 0-3 at 2 ranks with small reduction buckets
#           and stage 3's prefetch, traced (ZeroRanks.TraceShowsOverlap), the
#           trace of one process and the metrics at 1 and 2 ranks (Trace,
#           Metrics), the refusals on
#           every rank, a rank killed under --comm mpi, ring and tcp and an error
#           every rank finds (RankFaults); then ctest's mpi_comm_np3 (every
#           collective of local, mpi, ring and tcp at an odd world size, where the
#           ring's chunks are uneven), mpi_fault_* (mismatch, skip, hang,
#           kill) and mpi_launch_*. Left to the Release run: ZeroRanks' every
#           stage and world, its tcp runs, its memory and estimate formulas, Buckets
#           (minutes of 4-rank training under ASan for no code the others
#           miss), and RankFaults' SIGSTOP cases, whose 3 s watchdog a
#           sanitized, loaded machine can miss.
# build-tsan: ThreadSanitizer at -O1, the communication layer alone (core,
# prof, comm), where zerotrain shares memory between threads: the queue's
# communication thread and its watchdog, simnet's link, the callers that
# issue and wait:
#   comm    SimNet.* and CommDTypes.* (threads only); tests/mpi's collectives
#           and launch tests at 2 and 3 ranks under mpiexec (local, mpi, ring,
#           tcp: the MPI calls and the sockets' run on the communication
#           thread); the hang faults
#           (ring, and mpi without the signature check) and the mismatch
#           fault, where the watchdog fires while the communication thread is
#           stuck. Open MPI is not instrumented, so TSan sees the calls into
#           it, not its own threads; one lock-order report inside it, at
#           MPI_Init, is suppressed (tests/sanitizer/tsan.supp).
#
# Every process the tests start (zerotrain, its ranks under mpirun) inherits
# the options below and writes its report under <tree>/sanitizer-logs/ rather
# than to stderr, so a test that expects a process to fail cannot hide one:
# any report fails the script and is printed. LeakSanitizer's suppressions
# (tests/sanitizer/lsan.supp) name Open MPI's libraries and the OpenMP
# runtime's allocator, never a zerotrain frame.
#
#   SANITIZE_HALVES  "asan tsan" (default), or one of them
#   SANITIZE_JOBS    parallel compile jobs (default: nproc)
#
# Without clang++ it says so and exits 0, as fuzz.sh does; install-deps.sh
# installs clang.
set -euo pipefail
cd "$(dirname "$0")/.."
HALVES=${SANITIZE_HALVES:-asan tsan}
JOBS=${SANITIZE_JOBS:-$(nproc)}
SUPP=$PWD/tests/sanitizer
MPIRUN=(mpiexec --allow-run-as-root --oversubscribe --bind-to none)
# shellcheck source=scripts/asan-tree.sh
source scripts/asan-tree.sh

if ! command -v clang++ >/dev/null; then
  echo "sanitize: clang++ is not installed; the sanitizer trees were not built or run"
  exit 0
fi
if command -v llvm-symbolizer >/dev/null; then
  ASAN_SYMBOLIZER_PATH=$(command -v llvm-symbolizer)
  export ASAN_SYMBOLIZER_PATH TSAN_SYMBOLIZER_PATH=$ASAN_SYMBOLIZER_PATH
fi

# configure TREE CMAKE_ARGS...: a clang Debug tree, configured again on every
# run so that the lists here apply to a tree an earlier run left.
configure() {
  local tree=$1
  shift
  mkdir -p "$tree"
  CC=clang CXX=clang++ cmake -S . -B "$tree" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
    -DZT_CUDA=OFF -DZT_NATIVE=OFF "$@" >"$tree/configure.log" 2>&1 ||
    { cat "$tree/configure.log"; return 1; }
}

# compile TREE TARGETS...
compile() {
  local tree=$1
  shift
  cmake --build "$tree" -j"$JOBS" --target "$@" >"$tree/build.log" 2>&1 ||
    { tail -40 "$tree/build.log"; return 1; }
}

# phase NAME COMMAND...: runs a step with its output in $PHASES, printed when
# it fails. The script goes on after a failure, so one run shows every
# finding, and fails at the end.
failed=""
nphase=0
phase() {
  local name=$1 t0=$SECONDS out
  shift
  nphase=$((nphase + 1))
  out=$PHASES/$nphase.log
  if "$@" >"$out" 2>&1; then
    echo "sanitize: $name: passed ($((SECONDS - t0)) s)"
  else
    echo "sanitize: $name: FAILED ($((SECONDS - t0)) s); the end of its output ($out):"
    tail -80 "$out"
    failed="$failed; $name"
  fi
}

# start_logs TREE: empties the tree's report and phase log folders.
start_logs() {
  REPORTS=$PWD/$1/sanitizer-logs
  PHASES=$PWD/$1/sanitize-phases
  rm -rf "$REPORTS" "$PHASES"
  mkdir -p "$REPORTS" "$PHASES"
}

# check_reports WHAT: fails, printing them, when a sanitizer wrote a report.
check_reports() {
  if compgen -G "$REPORTS/*" >/dev/null; then
    echo "sanitize: $1: sanitizer reports in $REPORTS:"
    local f
    for f in "$REPORTS"/*; do
      echo "---- $f"
      head -100 "$f"
    done
    failed="$failed; $1 reports"
  else
    echo "sanitize: $1: no sanitizer reports"
  fi
}

asan_half() {
  local tree=$ASAN_TREE t0=$SECONDS
  echo "sanitize: building $tree (clang, ASan + LSan + UBSan)"
  asan_tree_configure || return 1
  compile "$tree" zerotrain zt_sanitize_tests zt_mpi_tests zt_comm_fault || return 1
  echo "sanitize: built $tree ($((SECONDS - t0)) s)"

  start_logs "$tree"
  # fast_unwind_on_malloc=0: the frame-pointer unwinder stops at the first
  # frame inside Open MPI, above the libraries lsan.supp names.
  export ASAN_OPTIONS="detect_leaks=1:fast_unwind_on_malloc=0:detect_stack_use_after_return=1"
  ASAN_OPTIONS+=":check_initialization_order=1:strict_string_checks=1:log_path=$REPORTS/asan"
  export LSAN_OPTIONS="suppressions=$SUPP/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$REPORTS/ubsan"
  local runs="ZeroRanks.*:RankFaults.*:Trace.*:Metrics.*"
  local skip="ZeroRanks.EveryStageAndWorldMatchesOneProcess:ZeroRanks.EstimatePredictsMeasuredPeak"
  skip+=":ZeroRanks.MemoryAndWireBytesFollowTheFormulas:RankFaults.StoppedRankIsNamed*"
  skip+=":ZeroRanks.TcpMatchesOneProcessWithoutMpirun"
  phase "asan: unit" "$tree"/zt_sanitize_tests --gtest_brief=1 \
    --gtest_filter="-$runs:Presets/ModelArch.OverfitsOneBatch/*"
  phase "asan: ranks (ZeroRanks, RankFaults, Trace, Metrics)" "$tree"/zt_sanitize_tests \
    --gtest_brief=1 --gtest_filter="$runs-$skip"
  phase "asan: ranks (mpi_comm_np3, mpi_fault_*, mpi_launch_*)" \
    ctest --test-dir "$tree" --output-on-failure -R '^mpi_(comm_np3|fault_.*|launch_.*)$'
  check_reports asan
  unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS
  echo "sanitize: the asan half took $((SECONDS - t0)) s"
}

tsan_half() {
  local tree=build-tsan t0=$SECONDS
  local targets=(zt_sanitize_tests) mpi=0
  echo "sanitize: building $tree (clang, TSan, the communication layer)"
  configure $tree -DCMAKE_CXX_FLAGS_DEBUG="-O1 -gline-tables-only" -DZT_TSAN=ON \
    -DZT_SANITIZE_TESTS="test_simnet.cpp;test_comm_dtypes.cpp" \
    -DZT_SANITIZE_TESTS_LINK="zt_comm;zt_prof" || return 1
  if grep -q '^build zt_sanitize_mpi_tests:' $tree/build.ninja; then  # the tree has MPI
    targets+=(zt_sanitize_mpi_tests zt_sanitize_comm_fault)
    mpi=1
  fi
  compile $tree "${targets[@]}" || return 1
  echo "sanitize: built $tree ($((SECONDS - t0)) s)"

  start_logs $tree
  export TSAN_OPTIONS="suppressions=$SUPP/tsan.supp:halt_on_error=1:second_deadlock_stack=1"
  TSAN_OPTIONS+=":log_path=$REPORTS/tsan"
  phase "tsan: SimNet, CommDTypes" $tree/zt_sanitize_tests --gtest_brief=1
  if [ $mpi = 1 ]; then
    local np
    for np in 2 3; do
      phase "tsan: tests/mpi at $np ranks" "${MPIRUN[@]}" -x MASTER_ADDR=127.0.0.1 \
        -x MASTER_PORT=$((29420 + np)) -np $np $tree/zt_sanitize_mpi_tests --gtest_brief=1
    done
    # Three of tests/mpi/CMakeLists.txt's faults, with its patterns.
    local fault=(bash tests/mpi/check_fault.sh mpiexec "$tree/zt_sanitize_comm_fault")
    phase "tsan: fault hang ring" "${fault[@]}" 4 30 \
      "rank [0-9]+: watchdog: all_reduce #4 .* has waited [0-9.]+ s" hang ring --timeout 3
    phase "tsan: fault hang mpi (unchecked)" env ZT_COMM_CHECK=0 "${fault[@]}" 3 30 \
      "rank [0-9]+: watchdog: all_reduce #4 .* has waited" hang mpi --timeout 3
    phase "tsan: fault mismatch ring" "${fault[@]}" 4 20 \
      "rank [0-9]+: collective mismatch on the [a-z]+ communicator: this rank issued (all_reduce|all_gather) #2" \
      mismatch ring --timeout 5
  fi
  check_reports tsan
  unset TSAN_OPTIONS
  echo "sanitize: the tsan half took $((SECONDS - t0)) s"
}

for half in $HALVES; do
  case $half in
    asan) asan_half || failed="$failed; asan build" ;;
    tsan) tsan_half || failed="$failed; tsan build" ;;
    *)
      echo "sanitize: SANITIZE_HALVES: unknown half '$half' (asan, tsan)"
      exit 2
      ;;
  esac
done
if [ -n "$failed" ]; then
  echo "sanitize: FAILED: ${failed#; }"
  exit 1
fi
echo "sanitize: every sanitized test passed without a report"
