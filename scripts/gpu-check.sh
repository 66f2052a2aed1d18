#!/usr/bin/env bash
# The one command for a lent GPU machine (docs/gpu.md, "Running the checks on
# a lent GPU"): builds the device configuration from the tree and the carried
# .gpu-bundle/ (scripts/gpu-bundle.sh), then runs every GPU check within a
# time budget (default 400 s, under the 7 minutes of a loan), each step
# printing PASS, FAIL or NOT RUN with its time:
#   env          nvidia-smi, nvcc, cmake, python/torch/transformers, wheel paths
#   configure    cmake with scripts/gpu/device_config.sh's arguments, Release
#   build        ninja, zerotrain and zt_gpu_tests
#   ldd          zerotrain and zt_gpu_tests need only the C runtime and CUDA
#   gpu_tests    zt_gpu_tests, every CUDA op against the CPU reference
#   memcheck     the same under compute-sanitizer (the real-size ones left out)
#   device_checks  bench/gpu/device_checks.sh: peer model, HF export round
#                trip, 50-step GPU-vs-CPU loss tracking
#   zero_parity  ZeRO stages 0-3 at 2 ranks on the one GPU against 1 rank
#                (--nproc 2 --comm tcp: no MPI needed)
#   bench        bench/gpu/run.sh, zerotrain against PyTorch, stopped by the
#                budget guard when the budget is near its end
# A step whose prerequisite failed is NOT RUN, with the reason. NOT RUN is never
# counted as passed; the exit status is 1 when any step failed.
#
# Results in $OUT (default ./gpu-check-out), at most 8 files: summary.txt,
# env.txt, build.log (configure, build, ldd), gpu_tests.log, memcheck.log,
# checks.log (device checks, parity, benchmark), details.tar.gz (every log
# and metrics file of the checks, without weights).
#   env: OUT, PYTHON (default python3), GPU_CHECK_BUDGET_S (400),
#        GPU_CHECK_JOBS (16), GPU_CHECK_WORK (build-gpu-check: build and scratch)
set -uo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.." || exit 2
root="$PWD"
out="${OUT:-$root/gpu-check-out}"
mkdir -p "$out" && out="$(cd "$out" && pwd)"
work="${GPU_CHECK_WORK:-$root/build-gpu-check}"
build="$work/build"
budget="${GPU_CHECK_BUDGET_S:-400}"
jobs="${GPU_CHECK_JOBS:-16}"
py="${PYTHON:-python3}"
nvcc="${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
sanitizer="${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}"
start=$SECONDS
summary="$out/summary.txt"
checks_log="$out/checks.log"
mkdir -p "$work"
: >"$summary"
: >"$checks_log"
passed=() failed=() not_run=()

say() { echo "$*" | tee -a "$summary"; }
left() { echo $((budget - (SECONDS - start))); }
record() {  # status name detail
    case "$1" in
        PASS) passed+=("$2") ;;
        FAIL) failed+=("$2") ;;
        *) not_run+=("$2") ;;
    esac
    say "$1 $2 ($3)"
}
not_run() { record "NOT RUN" "$1" "$2"; }
# Runs command into LOG (appended) with a limit of SECONDS; PASS or FAIL with its time.
step() {  # name log seconds command...
    local name="$1" log="$2" limit="$3"
    shift 3
    local t0=$SECONDS rc
    echo "== $name: $*" >>"$log"
    timeout -k 10 "$limit" "$@" >>"$log" 2>&1
    rc=$?
    if [[ $rc == 0 ]]; then
        record PASS "$name" "$((SECONDS - t0)) s"
    elif [[ $rc == 124 ]]; then
        record FAIL "$name" "stopped after its limit of $limit s; see $(basename "$log")"
    else
        record FAIL "$name" "exit $rc after $((SECONDS - t0)) s; see $(basename "$log")"
        tail -n 6 "$log" | sed 's/^/    /' | tee -a "$summary"
    fi
    return "$rc"
}

# ---- env
{
    echo "date: $(date -u)"
    echo "host: $(uname -a)"
    echo "cores: $(nproc)"
    echo "--- nvidia-smi"
    nvidia-smi 2>&1 || echo "(nvidia-smi failed)"
    echo "--- $nvcc --version"
    "$nvcc" --version 2>&1 || echo "(no nvcc)"
    echo "--- cmake, ninja, g++"
    cmake --version 2>&1 | head -n 1
    echo "ninja $(ninja --version 2>&1)"
    g++ --version 2>&1 | head -n 1
    echo "--- compute-sanitizer"
    "$sanitizer" --version 2>&1 | tail -n 1
    echo "--- mpiexec: $(command -v mpiexec mpirun 2>&1 | head -n 1)"
    echo "--- $py"
    "$py" - <<'PY' 2>&1
import sys, os
print("python", sys.version.split()[0], sys.executable)
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda,
          torch.cuda.get_device_name() if torch.cuda.is_available() else "no cuda device")
except Exception as e:
    print("torch: not importable:", e)
try:
    import transformers
    print("transformers", transformers.__version__)
except Exception as e:
    print("transformers: not importable:", e)
try:
    import nvidia
    for base in nvidia.__path__:
        print("nvidia wheels:", base)
        for name in sorted(os.listdir(base)):
            lib = os.path.join(base, name, "lib")
            if os.path.isdir(lib):
                print("   ", name + "/lib:", " ".join(sorted(f for f in os.listdir(lib) if ".so" in f)))
except Exception as e:
    print("nvidia wheels: none (", e, ")")
PY
} >"$out/env.txt" 2>&1
gpu_name="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
say "gpu-check: $(date -u +%FT%TZ), GPU: ${gpu_name:-none visible}, budget $budget s, results in $out"
record PASS env "env.txt"

# ---- build
have_build=0
wheels="$("$py" -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null)"
if [[ ! -f "$root/.gpu-bundle/nlohmann/json.hpp" ]]; then
    record FAIL build "no .gpu-bundle/ in the tree: run scripts/gpu-bundle.sh where the Debian packages are, and carry .gpu-bundle"
elif [[ ! -x "$nvcc" ]]; then
    record FAIL build "no nvcc (set CUDACXX)"
else
    # shellcheck source=scripts/gpu/device_config.sh
    source "$root/scripts/gpu/device_config.sh"
    mapfile -t args < <(zt_device_cmake_args "$root/.gpu-bundle")
    [[ -n "$wheels" ]] && args+=("-DZT_CUDA_WHEELS_DIR=$wheels")
    if step configure "$out/build.log" 120 cmake -S "$root" -B "$build" -G Ninja \
            -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$nvcc" "${args[@]}" &&
        step build "$out/build.log" "$(left)" cmake --build "$build" -j "$jobs" \
            --target "${ZT_DEVICE_TARGETS[@]}"; then
        have_build=1
        step ldd "$out/build.log" 60 bash "$root/scripts/gpu/check_ldd.sh" \
            "$build/zerotrain" "$build/tests/gpu/zt_gpu_tests"
        "$build/zerotrain" --version 2>&1 | tee -a "$summary"
    fi
fi
zt="$build/zerotrain"
gpu_tests="$build/tests/gpu/zt_gpu_tests"

# ---- GPU steps
# GoogleTest's closing count, "[  SKIPPED ] N tests, listed below:".
skipped_tests() {
    local n
    n="$(grep -oE '^\[  SKIPPED \] [0-9]+ tests?,' "$out/gpu_tests.log" | grep -oE '[0-9]+')"
    echo "${n:-0}"
}
no_gpu=""
if ! nvidia-smi -L >/dev/null 2>&1; then no_gpu="no GPU visible (nvidia-smi fails)"; fi
if [[ $have_build == 0 ]]; then
    for s in gpu_tests memcheck device_checks zero_parity bench; do not_run "$s" "the build failed"; done
else
    if [[ -n "$no_gpu" ]]; then
        timeout 120 "$gpu_tests" >"$out/gpu_tests.log" 2>&1
        not_run gpu_tests "$no_gpu; zt_gpu_tests ran: $(skipped_tests) of its tests skipped"
    else
        t0=$SECONDS
        timeout 180 "$gpu_tests" >"$out/gpu_tests.log" 2>&1
        rc=$?
        skipped=$(skipped_tests)
        ran_ok=$(grep -c '^\[       OK \]' "$out/gpu_tests.log")
        if [[ $rc == 0 && $skipped != 0 ]]; then
            # With a GPU listed every test should run: a skip means the GPU
            # was not usable (driver, architecture), which is no pass.
            record FAIL gpu_tests "$skipped of the tests skipped on a visible GPU ($ran_ok passed): $(grep -m1 -A1 ': Skipped$' "$out/gpu_tests.log" | tail -n 1)"
        elif [[ $rc == 0 ]]; then
            record PASS gpu_tests "$((SECONDS - t0)) s, $ran_ok passed, $skipped skipped"
        else
            record FAIL gpu_tests "exit $rc after $((SECONDS - t0)) s; see gpu_tests.log"
            grep -E '^\[  FAILED  \] [A-Za-z]' "$out/gpu_tests.log" | head -n 10 | sed 's/^/    /' | tee -a "$summary"
        fi
    fi

    # memcheck: the real-size and long-sequence tests take minutes under it.
    mc_filter='-*Gpt2Size*:*Gpt2MlpSize*:*T16384*:*T1024*'
    if [[ -n "$no_gpu" ]]; then
        not_run memcheck "$no_gpu"
    elif [[ ! -x "$sanitizer" ]]; then
        not_run memcheck "no compute-sanitizer (not on PATH, not at $sanitizer)"
    elif (($(left) < 150)); then
        not_run memcheck "time budget: $(left) s left"
    else
        t0=$SECONDS
        COMPUTE_SANITIZER="$sanitizer" timeout 120 bash "$root/tests/gpu/run_memcheck.sh" "$build" \
            "$mc_filter" >"$out/memcheck.log" 2>&1
        rc=$?
        if grep -qi "device not supported\|not supported on this device\|unsupported device" "$out/memcheck.log"; then
            not_run memcheck "compute-sanitizer does not support this device here: $(grep -i -m1 'not supported\|unsupported' "$out/memcheck.log")"
        elif [[ $rc == 0 ]]; then
            record PASS memcheck "$((SECONDS - t0)) s, filter $mc_filter"
        elif [[ $rc == 124 ]]; then
            record FAIL memcheck "stopped after its limit of 120 s"
        else
            record FAIL memcheck "exit $rc after $((SECONDS - t0)) s; see memcheck.log"
            grep -m 5 "=========" "$out/memcheck.log" | sed 's/^/    /' | tee -a "$summary"
        fi
    fi

    if [[ -n "$no_gpu" ]]; then
        not_run device_checks "$no_gpu"
    else
        limit=$(($(left) - 120))
        if ((limit < 60)); then
            not_run device_checks "time budget: $(left) s left"
        else
            rm -rf "$work/checks"
            step device_checks "$checks_log" "$((limit < 200 ? limit : 200))" \
                env SKIP_RUN=1 PYTHON="$py" bash "$root/bench/gpu/device_checks.sh" "$zt" "$work/checks"
            grep -E '^(PASS|FAIL) ' "$checks_log" | sed 's/^/    /' | tee -a "$summary"
        fi
    fi

    # ZeRO parity: 2 ranks on the one GPU, started by --nproc itself and
    # joined by the tcp backend (the device configuration has no MPI).
    if [[ -n "$no_gpu" ]]; then
        not_run zero_parity "$no_gpu"
    else
        step zero_parity "$checks_log" 150 env PYTHON="$py" bash "$root/scripts/gpu/zero_parity.sh" "$zt" "$work/parity"
    fi

    # Budget guard: the benchmark gets what is left, less a margin for packing.
    if [[ -n "$no_gpu" ]]; then
        not_run bench "$no_gpu"
    else
        limit=$(($(left) - 25))
        if ((limit < 60)); then
            not_run bench "time budget: $(left) s left of $budget"
        else
            rm -rf "$work/run"
            t0=$SECONDS
            echo "== bench: bench/gpu/run.sh (limit $limit s)" >>"$checks_log"
            timeout -k 10 "$limit" env PYTHON="$py" bash "$root/bench/gpu/run.sh" "$zt" "$work/run" >>"$checks_log" 2>&1
            rc=$?
            if [[ $rc == 0 ]]; then
                record PASS bench "$((SECONDS - t0)) s"
            elif [[ $rc == 124 ]]; then
                not_run bench "stopped by the time budget guard after $((SECONDS - t0)) s; finished cases are in details.tar.gz"
            else
                record FAIL bench "exit $rc after $((SECONDS - t0)) s; see checks.log"
            fi
            [[ -f "$work/run/table.txt" ]] && sed 's/^/    /' "$work/run/table.txt" | tee -a "$summary"
        fi
    fi
fi

# ---- results
# Only the text the checks wrote (logs, metrics, tables), not weights or the build.
(cd "$work" && find . -path ./build -prune -o -type f \( -name '*.log' -o -name '*.jsonl' \
    -o -name '*.txt' -o -name '*.json' \) -print0 | tar -czf "$out/details.tar.gz" --null -T -)
for f in "$out"/*; do  # the transfer takes files up to 16 MiB
    if (($(stat -c %s "$f") > 15000000)); then
        tail -c 15000000 "$f" >"$f.tail" && mv "$f.tail" "$f"
    fi
done
say "gpu-check: $((SECONDS - start)) s in all"
say "passed: ${passed[*]:-none}"
say "failed: ${failed[*]:-none}"
say "not run: ${not_run[*]:-none}"
[[ ${#failed[@]} == 0 ]]
