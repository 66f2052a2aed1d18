#!/usr/bin/env bash
# End-to-end CPU training throughput: zerotrain against PyTorch eager (Debian's
# python3-torch), same model, batch, sequence length, AdamW, clipping and
# thread count, run one after the other in this invocation. Prints tokens/s of
# each and the ratio zerotrain / PyTorch.
#
# Usage: bench/e2e_cpu.sh [BUILD_DIR]    (env: THREADS, STEPS)
set -euo pipefail
export LC_ALL=C
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
threads="${THREADS:-$(nproc)}"
steps="${STEPS:-30}"
warm=3
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Writes test-tiny's shape as a config.json so both sides read one file.
cat > "$tmp/test-tiny.json" <<'JSON'
{"model_type": "llama", "hidden_size": 96, "intermediate_size": 256, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
 "max_position_embeddings": 256, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
 "tie_word_embeddings": false}
JSON

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), threads $threads"
printf '%-14s %5s %5s %12s %12s %8s\n' model B T zerotrain_tps pytorch_tps ratio
run_case() {  # name config B T
  local name="$1" cfg="$2" B="$3" T="$4"
  OMP_NUM_THREADS="$threads" "$build/zerotrain" train --model "$cfg" --data synthetic \
    --micro-batch "$B" --seq-len "$T" --steps $((steps + warm)) --warmup 0 --lr 1e-3 \
    --eval-every 0 --eval-tokens $((B * T)) --threads "$threads" --out "$tmp/run-$name" > "$tmp/zt-$name.log"
  # Throughput over the steps after warm-up, from the step lines' own timings.
  local zt_tps
  zt_tps=$(/usr/bin/python3 - "$tmp/run-$name/metrics.jsonl" "$warm" <<'PY'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"kind":"step"' in l][int(sys.argv[2]):]
print(sum(s["tokens"] for s in steps) / sum(s["step_s"] for s in steps))
PY
)
  local pt_tps
  pt_tps=$(/usr/bin/python3 "$root/bench/torch_peer.py" --config "$cfg" --micro-batch "$B" \
    --seq-len "$T" --steps "$steps" --warmup-steps "$warm" --threads "$threads" |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_s"])')
  printf '%-14s %5d %5d %12.0f %12.0f %7.2fx\n' "$name" "$B" "$T" "$zt_tps" "$pt_tps" \
    "$(/usr/bin/python3 -c "print($zt_tps / $pt_tps)")"
}
run_case test-tiny "$tmp/test-tiny.json" 16 128
run_case llama-10m "$root/bench/llama-10m.json" 8 256
