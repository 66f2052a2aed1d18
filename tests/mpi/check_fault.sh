#!/usr/bin/env bash
# Runs zt_comm_fault under mpiexec and asserts that the job ends with a
# non-zero exit status within MAX_S seconds and that its output matches
# PATTERN (an extended regex naming the rank and the op).
#
# usage: check_fault.sh MPIEXEC FAULT_BIN NP MAX_S PATTERN [fault args...]
set -u
mpiexec=$1 bin=$2 np=$3 max_s=$4 pattern=$5
shift 5
start_ms=$(($(date +%s%N) / 1000000))
out=$(timeout --kill-after=5 $((max_s + 30)) "$mpiexec" --allow-run-as-root --oversubscribe \
      --bind-to none -np "$np" "$bin" "$@" 2>&1)
rc=$?
elapsed_ms=$(($(date +%s%N) / 1000000 - start_ms))
printf '%s\n' "$out" | head -40
echo "--- exit status $rc after ${elapsed_ms} ms"
fail() { echo "FAIL: $*"; exit 1; }
[ "$rc" -ne 0 ] || fail "the job exited 0; a fault must end it non-zero"
[ "$elapsed_ms" -lt $((max_s * 1000)) ] || fail "took ${elapsed_ms} ms, limit ${max_s} s"
printf '%s\n' "$out" | grep -Eq -- "$pattern" || fail "output does not match /$pattern/"
echo "PASS"
