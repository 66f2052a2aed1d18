#!/usr/bin/env bash
# Multi-rank scaling efficiency on CPU, zerotrain against PyTorch, in one
# invocation: zerotrain on 1 rank and on 2 ranks at each ZeRO stage in STAGES
# (--nproc 2, MPI), and PyTorch (Debian's python3-torch, bench/torch_ddp_peer.py)
# as 1 plain process and as 2 gloo processes training DistributedDataParallel +
# ZeroRedundancyOptimizer(AdamW), PyTorch's counterpart of ZeRO stage 1.
#
# Same ~12M LLaMA (bench/llama-12m.json), per-rank micro-batch, sequence length,
# AdamW (lr 1e-3, betas 0.9/0.95, weight decay 0.1 on matrices), clipping at 1.0
# and 1 thread per rank (--threads 1, torch.set_num_threads(1), OMP_NUM_THREADS=1)
# for all; the global batch grows with the ranks (weak scaling). zerotrain trains
# on --data synthetic and the peer on random tokens (speed only). The peer's
# model is written from the resolved model config in zerotrain's own
# metrics.jsonl, and the two parameter counts must agree.
#
# Prints global tokens/s of each run (median over the timed steps after the
# warm-up steps), the efficiency 2-rank / (2 x 1-rank) of each zerotrain stage
# (target >= 0.97, printed, not asserted) and of PyTorch, the ratio zerotrain
# stage 1 / PyTorch DDP+ZeRO on 2 ranks, the median per-step forward, backward,
# comm, comm_exposed and optimizer seconds of the zerotrain runs (rank 0's), the
# machine and the load average. Two ranks of one thread want two idle cores: on
# a busy machine the efficiencies measure the load as much as the engine.
#
# Usage: bench/zero_ranks.sh [BUILD_DIR]
#   env: STEPS WARMUP   timed / warm-up steps of every run   (default 10 / 2)
#        MICRO_BATCH    sequences per rank per step          (default 8)
#        SEQ_LEN        tokens per sequence                  (default 128)
#        STAGES         zerotrain ZeRO stages on 2 ranks     (default "1 2 0")
#        LOGS           keep every run's log and metrics in this directory
set -euo pipefail
export LC_ALL=C
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
zt="$build/zerotrain"
bench_name=zero_ranks.sh
# shellcheck source=bench/common.sh
source "$root/bench/common.sh"
[[ -x "$zt" ]] || { echo "zero_ranks.sh: no zerotrain binary at $zt; build it first or pass BUILD_DIR" >&2; exit 1; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

steps="${STEPS:-10}"
warm="${WARMUP:-2}"
B="${MICRO_BATCH:-8}"
T="${SEQ_LEN:-128}"
stages="${STAGES:-1 2 0}"
ranks=2
target=0.97
(( steps >= 1 )) || fail "STEPS: timed steps must be at least 1 (got $steps)"
(( warm >= 0 )) || fail "WARMUP: must be at least 0 (got $warm)"
for s in $stages; do
  [[ "$s" =~ ^[0-3]$ ]] || fail "STAGES: '$s' is not a ZeRO stage (0, 1, 2 or 3)"
done
[[ " $stages " == *" 1 "* ]] || fail "STAGES must include 1: the PyTorch ratio compares stage 1"
spec="$root/bench/llama-12m.json"

bench_scratch

# Runs zerotrain; prints nothing, leaves $tmp/zt-KEY.log and $tmp/zt-KEY/.
run_zerotrain() {  # key nproc stage
  local key="$1" n="$2" stage="$3"
  progress "$key: zerotrain, $n rank(s), ZeRO stage $stage, $((warm + steps)) steps"
  rm -rf "$tmp/zt-$key"
  # The end-of-run evaluation needs a batch per rank; it is outside the steps' times.
  if ! OMP_NUM_THREADS=1 "$zt" train --model "$spec" --data synthetic --micro-batch "$B" \
      --seq-len "$T" --steps $((warm + steps)) --warmup 0 --lr 1e-3 --eval-every 0 \
      --eval-tokens $((n * B * T)) --sample-tokens 0 --no-save --threads 1 --nproc "$n" \
      --zero-stage "$stage" --out "$tmp/zt-$key" > "$tmp/zt-$key.log" 2>&1; then
    tail -n 20 "$tmp/zt-$key.log" >&2
    fail "zerotrain failed ($key); its log is above"
  fi
}

# Medians over zerotrain's step lines after the first WARM, on one line:
# tokens/s, then seconds of step, forward, backward, comm, comm_exposed, optimizer.
zerotrain_medians() {  # metrics.jsonl
  "$py" - "$1" "$warm" "$ranks" <<'PY'
import json, statistics, sys
path, warm = sys.argv[1], int(sys.argv[2])
recs = list(map(json.loads, open(path)))
steps = [r for r in recs if r.get("kind") == "step"]
timed = steps[warm:]
if not timed:
    sys.exit(f"zero_ranks.sh: {path} has {len(steps)} step lines, none after the warm-up")
med = lambda f: statistics.median(f(r) for r in timed)
parts = ["forward", "backward", "comm", "comm_exposed", "optimizer"]
print(med(lambda r: r["tokens_per_s"]), med(lambda r: r["step_s"]),
      *(med(lambda r, k=k: r["time_s"][k]) for k in parts))
PY
}


# Runs the PyTorch peer; prints its median global tokens/s and step seconds,
# checks its parameter count.
run_peer() {  # key nproc config expected_params
  local key="$1" n="$2" cfg="$3" want="$4"
  progress "$key: pytorch, $n process(es), $((warm + steps)) steps"
  if ! OMP_NUM_THREADS=1 "$py" "$root/bench/torch_ddp_peer.py" --config "$cfg" --nproc "$n" \
      --micro-batch "$B" --seq-len "$T" --steps "$steps" --warmup-steps "$warm" --threads 1 \
      > "$tmp/pt-$key.json" 2> "$tmp/pt-$key.log"; then
    tail -n 20 "$tmp/pt-$key.log" >&2
    fail "torch_ddp_peer.py failed ($key); its stderr is above"
  fi
  "$py" - "$tmp/pt-$key.json" "$want" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
if r["parameters"] != int(sys.argv[2]):
    sys.exit(f"zero_ranks.sh: the PyTorch peer has {r['parameters']} parameters, zerotrain "
             f"{sys.argv[2]}: not the same model, so no fair ratio")
print(r["tokens_per_s"], r["step_s_median"])
PY
}

cores=$(( $(lscpu_field 'Core(s) per socket') * $(lscpu_field 'Socket(s)') ))
echo "machine: $(lscpu_field 'Model name'), $cores cores, nproc $(nproc)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min)"
echo "zerotrain: $build/zerotrain (built $built), ranks over MPI ($(mpirun --version 2>/dev/null | head -n 1))"
echo "pytorch: $("$py" -c 'import torch; print(torch.__version__)'), gloo, DDP + ZeroRedundancyOptimizer(AdamW)"
echo "model bench/llama-12m.json; $B x $T tokens per rank per step, 1 thread per rank;" \
  "$warm warm-up + $steps timed steps; tokens/s = global, median over the timed steps"
awk -v l="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN { exit !(l >= 0.5) }' &&
  echo "note: the machine is busy before the runs (1-min load >= 0.5): ranks compete with it for cores"
(( $(nproc) >= ranks )) || echo "note: $(nproc) CPU(s) for $ranks ranks: the ranks share cores, so the efficiency cannot reach 1"

start=$SECONDS
# Order: each pair a ratio compares runs adjacent in time where it can, so a
# change in the machine's load between runs skews as few ratios as possible.
run_zerotrain r1 1 0
cfg="$tmp/peer-config.json"
params="$(peer_config_from_zerotrain "$tmp/zt-r1/metrics.jsonl" "$cfg")"
# Command substitutions, not < <(...): a failing helper then stops the script.
out="$(zerotrain_medians "$tmp/zt-r1/metrics.jsonl")"
read -r zt1_tps zt1_step zt1_fwd zt1_bwd zt1_comm zt1_exp zt1_opt <<< "$out"
declare -A zt_tps zt_times
for s in $stages; do
  run_zerotrain "r$ranks-s$s" "$ranks" "$s"
  out="$(zerotrain_medians "$tmp/zt-r$ranks-s$s/metrics.jsonl")"
  read -r tps rest <<< "$out"
  zt_tps[$s]="$tps"
  zt_times[$s]="$rest"
  if [[ "$s" == 1 ]]; then
    out="$(run_peer "r$ranks" "$ranks" "$cfg" "$params")"
    read -r pt2_tps pt2_step <<< "$out"
    out="$(run_peer r1 1 "$cfg" "$params")"
    read -r pt1_tps pt1_step <<< "$out"
  fi
done

row() {  # name ranks stage tokens/s efficiency step fwd bwd comm exposed opt
  printf '%-24s %5s %5s %9.0f  %-16s %7s %7s %8s %7s %7s %7s\n' "$@"
}
secs() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.3f", v }'; }
times_cols() { for v in "$@"; do printf '%s ' "$(secs "$v")"; done; }

echo
printf '%-24s %5s %5s %9s  %-16s %7s %7s %8s %7s %7s %7s\n' run ranks stage tokens/s \
  "efficiency" step forward backward comm exposed optim
printf '%-24s %5s %5s %9s  %-16s %s\n' '' '' '' '' "target >= $target" \
  '  (median seconds per step, rank 0)'
# shellcheck disable=SC2046  # times_cols prints the columns, one word each
row zerotrain 1 - "$zt1_tps" - $(times_cols "$zt1_step" "$zt1_fwd" "$zt1_bwd" "$zt1_comm" "$zt1_exp" "$zt1_opt")
for s in $stages; do
  eff="$(ratio "${zt_tps[$s]}" "$(awk -v a="$zt1_tps" -v n="$ranks" 'BEGIN { print n * a }')")"
  # shellcheck disable=SC2046,SC2086
  row zerotrain "$ranks" "$s" "${zt_tps[$s]}" "$eff $(verdict "$eff" "$target")" $(times_cols ${zt_times[$s]})
done
pt_eff="$(ratio "$pt2_tps" "$(awk -v a="$pt1_tps" -v n="$ranks" 'BEGIN { print n * a }')")"
# shellcheck disable=SC2046
row "pytorch plain" 1 - "$pt1_tps" - $(times_cols "$pt1_step" - - - - -)
# shellcheck disable=SC2046
row "pytorch ddp+zero gloo" "$ranks" "~1" "$pt2_tps" "$pt_eff" $(times_cols "$pt2_step" - - - - -)
echo
echo "zerotrain stage 1 / pytorch ddp+zero, $ranks ranks: $(ratio "${zt_tps[1]}" "$pt2_tps")x" \
  "(1 rank: zerotrain / pytorch plain $(ratio "$zt1_tps" "$pt1_tps")x)"
echo "efficiency = $ranks-rank tokens/s / ($ranks x 1-rank tokens/s); comm is the time" \
  "collectives took, exposed the part of it not hidden behind compute"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); wall time $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
