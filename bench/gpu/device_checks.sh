#!/usr/bin/env bash
# Every GPU-side check of bench/gpu and scripts/gpu in one invocation, the
# quick ones first, so one short loan of a GPU machine runs them all:
#   1. bench/gpu/check_peer_model.py: the peer's model against the golden
#      reference, with the SDPA paths this torch has (CPU, float64)
#   2. export round trip: zerotrain trains test-tiny and test-tiny-gpt2 on
#      the CPU for 20 steps, exports each to HF, and
#      scripts/gpu/hf_logits_check.py compares transformers (on cuda), the
#      independent reading and `zerotrain eval --hf`
#   3. scripts/gpu/loss_track.py: test-tiny bf16, 50 steps, --device cuda
#      against --device cpu (fails with zerotrain's own message where the
#      GPU run does)
#   4. bench/gpu/run.sh: zerotrain against PyTorch at gpt2-124m and llama-1b
# Each check's output goes to OUT_DIR/NAME.log; a line per check says PASS
# or FAIL, and the script exits 1 when any failed.
#
# Usage: bench/gpu/device_checks.sh ZEROTRAIN_BIN OUT_DIR
#   env: PYTHON (default python3); SKIP_RUN=1 leaves out check 4;
#        CASES, WARMUP, STEPS are passed on to run.sh
set -uo pipefail
export LC_ALL=C
root="$(cd "$(dirname "$0")/../.." && pwd)"
[[ $# -eq 2 ]] || { echo "usage: bench/gpu/device_checks.sh ZEROTRAIN_BIN OUT_DIR" >&2; exit 2; }
zt="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
[[ -x "$zt" ]] || { echo "device_checks.sh: no executable zerotrain at '$1'" >&2; exit 2; }
mkdir -p "$2" && out="$(cd "$2" && pwd)"
py="${PYTHON:-python3}"
failed=0

# Runs one check, its output to OUT_DIR/NAME.log; prints PASS or FAIL with the log's tail.
check() {  # name command...
  local name="$1"; shift
  local t0=$SECONDS
  if "$@" > "$out/$name.log" 2>&1; then
    echo "PASS $name ($((SECONDS - t0)) s)"
  else
    echo "FAIL $name ($((SECONDS - t0)) s, exit $?): last lines of $out/$name.log:"
    tail -n 8 "$out/$name.log" | sed 's/^/    /'
    failed=1
  fi
}

# The functions below run through check(), which shellcheck cannot follow.
# shellcheck disable=SC2317
# Trains PRESET on the CPU for 20 steps and exports it to HF in OUT_DIR/hf-PRESET.
export_round_trip() {  # preset
  local d="$out/export-$1"
  rm -rf "$d" "$out/hf-$1"
  "$zt" train --model "$1" --data synthetic --steps 20 --seq-len 64 --micro-batch 4 \
    --eval-every 0 --eval-tokens 256 --sample-tokens 0 --out "$d" \
    && "$zt" export --checkpoint "$d" --format hf --out "$out/hf-$1" \
    && "$py" "$root/scripts/gpu/hf_logits_check.py" "$out/hf-$1" --zerotrain "$zt" \
         --device cuda --batch 2 --seq-len 64
}

# shellcheck disable=SC2317
# test-tiny bf16, 50 steps, on DEVICE into OUT_DIR/track-DEVICE.
track_run() {  # device
  rm -rf "$out/track-$1"
  "$zt" train --model test-tiny --data synthetic --steps 50 --seq-len 64 --micro-batch 4 \
    --eval-every 0 --eval-tokens 256 --sample-tokens 0 --no-save --precision bf16 \
    --device "$1" --out "$out/track-$1"
}
# shellcheck disable=SC2317
loss_track_check() {
  track_run cpu && track_run cuda \
    && "$py" "$root/scripts/gpu/loss_track.py" "$out/track-cuda" "$out/track-cpu"
}

echo "device_checks.sh: $zt, $("$py" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "no cuda")' 2>&1)"
check check_peer_model "$py" "$root/bench/gpu/check_peer_model.py"
check hf_test-tiny export_round_trip test-tiny
check hf_test-tiny-gpt2 export_round_trip test-tiny-gpt2
check loss_track loss_track_check
if [[ "${SKIP_RUN:-0}" != 1 ]]; then
  rm -rf "$out/run"
  check run_sh env PYTHON="$py" "$root/bench/gpu/run.sh" "$zt" "$out/run"
  [[ -f "$out/run/table.txt" ]] && cat "$out/run/table.txt"
fi
exit "$failed"
