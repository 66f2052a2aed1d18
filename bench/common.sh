# Helpers shared by the benchmark scripts (sourced; `bench_name` names the
# script in messages). Python with PyTorch is Debian's /usr/bin/python3.
py=/usr/bin/python3

fail() { echo "$bench_name: $*" >&2; exit 1; }
progress() { echo "$bench_name: $*" >&2; }
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { print (r >= t ? "met" : "below") }'; }
# Sets tmp (LOGS, kept; else a fresh directory, removed at exit; mktemp's
# arguments may be given) and runs a snapshot of $zt from it, so a rebuild of
# BUILD_DIR during the benchmark (a shared tree) cannot mix two binaries in
# one table; `built` is the binary's build time.
bench_scratch() {
  if [[ -n "${LOGS:-}" ]]; then
    mkdir -p "$LOGS"
    tmp="$(cd "$LOGS" && pwd)"
  else
    tmp="$(mktemp -d "$@")"
    trap 'rm -rf "$tmp"' EXIT
  fi
  cp "$zt" "$tmp/zerotrain"
  built="$(date -r "$zt" '+%Y-%m-%d %H:%M')"
  zt="$tmp/zerotrain"
}
lscpu_field() { lscpu | sed -n "s/^$1:[[:space:]]*//p" | head -n 1; }

# Writes zerotrain's resolved model as a Hugging Face config.json for the peer;
# prints zerotrain's parameter count.
peer_config_from_zerotrain() {  # metrics.jsonl out.json
  "$py" - "$1" "$2" <<'PY'
import json, sys
run = next(r for r in map(json.loads, open(sys.argv[1])) if r.get("kind") == "run")
m = run["config"]["model_config"]
if m["arch"] != "llama":
    sys.exit(f"model {m['name']} is {m['arch']}; the PyTorch peers train LLaMA only")
json.dump({"model_type": "llama", "hidden_size": m["d_model"], "intermediate_size": m["d_ff"],
           "num_hidden_layers": m["n_layer"], "num_attention_heads": m["n_head"],
           "num_key_value_heads": m["n_kv_head"], "vocab_size": m["vocab_size"],
           "max_position_embeddings": m["max_seq"], "rms_norm_eps": m["norm_eps"],
           "rope_theta": m["rope_theta"], "tie_word_embeddings": m["tie_embeddings"]},
          open(sys.argv[2], "w"), indent=1)
print(run["n_params"])
PY
}
