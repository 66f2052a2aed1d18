#!/usr/bin/env bash
# End-to-end CPU training throughput, four peers in one invocation: zerotrain
# fp32, zerotrain bf16 (--precision bf16), PyTorch fp32 eager and PyTorch bf16
# autocast (Debian's python3-torch, bench/torch_peer.py). Same model, batch,
# sequence length, AdamW, clipping and thread count for all four; zerotrain
# trains on --data synthetic and the peer on random tokens (speed only).
#
# Models: the ~12M LLaMA of bench/llama-12m.json and the `tiny` preset. The
# peer's model is written from the resolved model config in zerotrain's own
# metrics.jsonl, and the two parameter counts must agree, so both sides train
# the same shape. Each model runs at every thread count in THREADS (zerotrain
# --threads N, torch.set_num_threads(N), OMP_NUM_THREADS=N for both).
#
# Prints, per model and thread count, tokens/s of each peer (median over the
# timed steps after the warm-up steps) and the ratios zerotrain bf16 / zerotrain
# fp32, zerotrain bf16 / PyTorch bf16 and zerotrain fp32 / PyTorch fp32, with
# the targets of the first two (printed, not asserted), the machine, the load
# average and the bf16 matrix-product path each side used.
#
# `tiny` (46.8M parameters, vocab 32000) runs one warm-up and one timed step by
# default: on 2 cores a PyTorch fp32 step of it takes half a minute to a minute.
#
# Usage: bench/e2e_cpu.sh [BUILD_DIR]
#   env: THREADS      thread counts to run        (default "1 $(nproc)")
#        MODELS       llama-12m and/or tiny       (default "llama-12m tiny")
#        STEPS WARMUP timed / warm-up steps of llama-12m (default 3 / 1)
#        TINY_STEPS TINY_WARMUP                   the same for tiny (default 1 / 1)
#        GRAD_ACCUM_DTYPE  zerotrain bf16's --grad-accum-dtype (default auto)
#        LOGS         keep every run's log and metrics in this directory
set -euo pipefail
export LC_ALL=C
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
zt="$build/zerotrain"
bench_name=e2e_cpu.sh
# shellcheck source=bench/common.sh
source "$root/bench/common.sh"
[[ -x "$zt" ]] || { echo "e2e_cpu.sh: no zerotrain binary at $zt; build it first or pass BUILD_DIR" >&2; exit 1; }

threads_list="${THREADS:-$( [[ $(nproc) -gt 1 ]] && echo "1 $(nproc)" || echo 1)}"
models="${MODELS:-llama-12m tiny}"
grad_dtype="${GRAD_ACCUM_DTYPE:-auto}"
B=8
T=256
bench_scratch

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# Runs zerotrain; prints nothing, leaves $tmp/zt-KEY.log and $tmp/zt-KEY/.
run_zerotrain() {  # key model precision threads warm steps
  local key="$1" model="$2" precision="$3" n="$4" warm="$5" steps="$6"
  local extra=()
  [[ "$precision" == bf16 ]] && extra=(--grad-accum-dtype "$grad_dtype")
  progress "$key: zerotrain $precision, $n thread(s), $((warm + steps)) steps"
  rm -rf "$tmp/zt-$key"
  if ! OMP_NUM_THREADS="$n" "$zt" train --model "$model" --data synthetic --micro-batch "$B" \
      --seq-len "$T" --steps $((warm + steps)) --warmup 0 --lr 1e-3 --eval-every 0 \
      --eval-tokens $((B * T)) --sample-tokens 0 --no-save --threads "$n" --precision "$precision" \
      "${extra[@]}" --out "$tmp/zt-$key" > "$tmp/zt-$key.log" 2>&1; then
    tail -n 20 "$tmp/zt-$key.log" >&2
    fail "zerotrain failed ($key); its log is above"
  fi
}

# Median tokens/s of zerotrain's step lines after the first WARM.
zerotrain_tps() {  # metrics.jsonl warm
  "$py" - "$1" "$2" <<'PY'
import json, statistics, sys
steps = [r for r in map(json.loads, open(sys.argv[1])) if r.get("kind") == "step"]
timed = steps[int(sys.argv[2]):]
if not timed:
    sys.exit(f"e2e_cpu.sh: {sys.argv[1]} has {len(steps)} step lines, none after the warm-up")
print(statistics.median(r["tokens_per_s"] for r in timed))
PY
}


# Runs the PyTorch peer; prints its median tokens/s, checks its parameter count.
run_peer() {  # key config precision threads warm steps expected_params
  local key="$1" cfg="$2" precision="$3" n="$4" warm="$5" steps="$6" want="$7"
  progress "$key: pytorch $precision, $n thread(s), $((warm + steps)) steps"
  if ! OMP_NUM_THREADS="$n" "$py" "$root/bench/torch_peer.py" --config "$cfg" --micro-batch "$B" \
      --seq-len "$T" --steps "$steps" --warmup-steps "$warm" --threads "$n" \
      --precision "$precision" > "$tmp/pt-$key.json" 2> "$tmp/pt-$key.log"; then
    tail -n 20 "$tmp/pt-$key.log" >&2
    fail "torch_peer.py failed ($key); its stderr is above"
  fi
  "$py" - "$tmp/pt-$key.json" "$want" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
if r["parameters"] != int(sys.argv[2]):
    sys.exit(f"e2e_cpu.sh: the PyTorch peer has {r['parameters']} parameters, zerotrain "
             f"{sys.argv[2]}: not the same model, so no fair ratio")
print(r["tokens_per_s"])
PY
}

# The kernel oneDNN runs for an autocast linear and bmm in this PyTorch.
torch_bf16_path() {
  DNNL_VERBOSE=1 ONEDNN_VERBOSE=1 OMP_NUM_THREADS=1 "$py" - <<'PY' 2>&1 | awk -F, '
    $1 ~ /verbose$/ && $2 == "exec" { path[$4 " " $5] = 1 }
    END { n = 0; for (p in path) { printf "%soneDNN %s", (n++ ? ", " : ""), p }
          if (!n) printf "no oneDNN call seen (ATen kernels)"; print "" }'
import torch
torch.set_num_threads(1)
a = torch.randn(64, 64)
with torch.autocast("cpu", dtype=torch.bfloat16):
    torch.nn.functional.linear(a, a)
    a.view(4, 16, 64) @ a.view(4, 64, 16)
PY
}

cores=$(( $(lscpu_field 'Core(s) per socket') * $(lscpu_field 'Socket(s)') ))
bf16_flags="$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx512_bf16|amx_bf16)$' | paste -sd' ')"
echo "machine: $(lscpu_field 'Model name'), $cores cores ($(lscpu_field 'CPU(s)') CPUs), bf16 ISA: ${bf16_flags:-none}"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min)"
echo "zerotrain: $build/zerotrain (built $built)"
echo "pytorch: $("$py" -c 'import torch; print(torch.__version__)'), bf16 autocast matrix products: $(torch_bf16_path)"
echo "batch $B x $T tokens; zerotrain --data synthetic, PyTorch random tokens; tokens/s = median over timed steps"

start=$SECONDS
declare -A bf16_lines
rows=()
header="$(printf '%-10s %7s %2s %4s %9s %9s %9s %9s  %-17s %-17s %s' model threads B T \
  zt-fp32 zt-bf16 pt-fp32 pt-bf16 zt-bf16/zt-fp32 zt-bf16/pt-bf16 zt-fp32/pt-fp32)"
units="$(printf '%-10s %7s %2s %4s %9s %9s %9s %9s  %-17s %-17s %s' '' '' '' '' \
  tokens/s tokens/s tokens/s tokens/s 'target >= 1.60x' 'target >= 1.50x' '' | sed 's/ *$//')"
for model in $models; do
  case "$model" in
    llama-12m) spec="$root/bench/llama-12m.json"; warm="${WARMUP:-1}"; steps="${STEPS:-3}" ;;
    tiny) spec=tiny; warm="${TINY_WARMUP:-1}"; steps="${TINY_STEPS:-1}" ;;
    *) fail "MODELS: unknown model '$model' (expected llama-12m and/or tiny)" ;;
  esac
  (( steps >= 1 )) || fail "$model: timed steps must be at least 1 (got $steps)"
  echo "$model: $warm warm-up + $steps timed step(s) per peer"
  cfg="$tmp/peer-$model.json"
  params=""
  for n in $threads_list; do
    key="$model-t$n"
    # This order keeps each pair the targets compare adjacent in time.
    run_zerotrain "$key-fp32" "$spec" fp32 "$n" "$warm" "$steps"
    [[ -n "$params" ]] || params="$(peer_config_from_zerotrain "$tmp/zt-$key-fp32/metrics.jsonl" "$cfg")"
    zt_fp32="$(zerotrain_tps "$tmp/zt-$key-fp32/metrics.jsonl" "$warm")"
    run_zerotrain "$key-bf16" "$spec" bf16 "$n" "$warm" "$steps"
    zt_bf16="$(zerotrain_tps "$tmp/zt-$key-bf16/metrics.jsonl" "$warm")"
    line="$(sed -n 's/^zerotrain: precision bf16 (\(.*\))$/\1/p' "$tmp/zt-$key-bf16.log")"
    [[ -n "$line" ]] || fail "zerotrain --precision bf16 did not report 'precision bf16 (...)' ($key)"
    bf16_lines["$line"]+="${bf16_lines["$line"]:+, }$model/$n"
    pt_bf16="$(run_peer "$key-bf16" "$cfg" bf16 "$n" "$warm" "$steps" "$params")"
    pt_fp32="$(run_peer "$key-fp32" "$cfg" fp32 "$n" "$warm" "$steps" "$params")"
    r_prec="$(ratio "$zt_bf16" "$zt_fp32")"
    r_bf16="$(ratio "$zt_bf16" "$pt_bf16")"
    r_fp32="$(ratio "$zt_fp32" "$pt_fp32")"
    row="$(printf '%-10s %7d %2d %4d %9.0f %9.0f %9.0f %9.0f  %-17s %-17s %s' "$model" "$n" "$B" \
      "$T" "$zt_fp32" "$zt_bf16" "$pt_fp32" "$pt_bf16" "${r_prec}x $(verdict "$r_prec" 1.6)" \
      "${r_bf16}x $(verdict "$r_bf16" 1.5)" "${r_fp32}x")"
    rows+=("$row")
    progress "$row"
  done
done

echo
echo "$header"
echo "$units"
printf '%s\n' "${rows[@]}"
echo
for line in "${!bf16_lines[@]}"; do
  echo "zerotrain bf16 (${bf16_lines[$line]}): $line"
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); wall time $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
