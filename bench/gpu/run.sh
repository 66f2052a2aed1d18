#!/usr/bin/env bash
# One-GPU training throughput, zerotrain against PyTorch, in one invocation:
# for each case (preset, sequence length T, micro-batch B) it runs
#   zerotrain train --device cuda --precision bf16 --model P --data synthetic
#                   --seq-len T --micro-batch B --steps WARMUP+STEPS ...
# and then bench/gpu/torch_train.py (torch.compile, SDPA, fused AdamW, bf16
# autocast) on the same preset, T and B with random tokens, and prints a
# table of both sides and the ratio zerotrain / PyTorch.
#
# zerotrain's numbers come from its RUN_DIR/metrics.jsonl (DESIGN.md, "Run
# directory"): tokens/s and step time are the medians of the "step" lines
# after the first WARMUP steps (tokens_per_s, step_s), MFU is the median of
# their "mfu" (against zerotrain's own measured peak, the run line's
# peak_flops), peak memory is the summary line's mem_bytes.peak (the engine's
# ledger). The peer's are its JSON line (torch_train.py's docstring): median
# tokens/s and step time over its timed steps, torch.cuda.max_memory_allocated,
# MFU against the bf16 GEMM peak it measures. The column "zt MFU@pt" puts
# zerotrain's tokens/s over the peer's measured peak with the same FLOPs per
# token, so both MFUs share one denominator.
#
# A side that fails (for example zerotrain refusing --device cuda) is shown as
# FAILED with its own message and gets no number; the script then exits 1.
# The peer's parameter count must equal `zerotrain estimate`'s for the preset.
#
# Usage: bench/gpu/run.sh ZEROTRAIN_BIN OUT_DIR
#   OUT_DIR must not exist or be empty; it receives per case CASE/zt/ (the run
#   directory), CASE/zt.log, CASE/pt.json, CASE/pt.log, and results.jsonl
#   (one line per case: both sides' raw numbers) and table.txt.
#   env: CASES   "preset:T:B ..." (default "gpt2-124m:1024:16 llama-1b:2048:4")
#        WARMUP  untimed steps first on both sides (default 3)
#        STEPS   timed steps (default 10)
#        DEVICE  cuda (default) or cpu: cpu runs both sides on the CPU, for
#                checking this script at a tiny preset (CASES=test-tiny:64:4)
#        PYTHON  the interpreter with torch (default python3)
#        ZT_ARGS extra arguments for zerotrain train
#        PT_ARGS extra arguments for torch_train.py
set -uo pipefail
export LC_ALL=C
here="$(cd "$(dirname "$0")" && pwd)"
name=run.sh
die() { echo "$name: error: $*" >&2; exit 2; }
note() { echo "$name: $*" >&2; }

[[ $# -eq 2 ]] || die "usage: bench/gpu/run.sh ZEROTRAIN_BIN OUT_DIR"
zt="$1"
out="$2"
[[ -x "$zt" && -f "$zt" ]] || die "no executable zerotrain at '$zt'"
zt="$(cd "$(dirname "$zt")" && pwd)/$(basename "$zt")"
if [[ -e "$out" ]] && [[ -n "$(ls -A "$out" 2>/dev/null)" ]]; then
  die "OUT_DIR '$out' is not empty; give a new directory"
fi
mkdir -p "$out" || die "cannot create '$out'"
out="$(cd "$out" && pwd)"
py="${PYTHON:-python3}"
cases="${CASES:-gpt2-124m:1024:16 llama-1b:2048:4}"
warm="${WARMUP:-3}"
steps="${STEPS:-10}"
device="${DEVICE:-cuda}"
[[ "$device" == cuda || "$device" == cpu ]] || die "DEVICE '$device': expected cuda or cpu"
[[ "$warm" =~ ^[0-9]+$ && "$steps" =~ ^[1-9][0-9]*$ ]] || die "WARMUP >= 0 and STEPS >= 1 (got '$warm', '$steps')"
read -r -a zt_extra <<< "${ZT_ARGS:-}"
read -r -a pt_extra <<< "${PT_ARGS:-}"
"$py" -c 'import torch' 2>/dev/null || die "'$py' cannot import torch; set PYTHON"

# The first line of a log that reads as an error, else its last line.
failure_message() {  # log
  local m
  m="$(grep -m1 -iE 'error|refused|not wired|fatal|abort|what\(\)' "$1" || true)"
  [[ -n "$m" ]] || m="$(grep -v '^[[:space:]]*$' "$1" | tail -n 1)"
  echo "${m:-no output}"
}

# zerotrain's numbers from a run directory, as one JSON line, or exit 1 with why.
zerotrain_numbers() {  # run_dir warm device
  "$py" - "$1" "$2" "$3" <<'PY'
import json, os, statistics, sys
run_dir, warm, device = sys.argv[1], int(sys.argv[2]), sys.argv[3]
path = os.path.join(run_dir, "metrics.jsonl")
if not os.path.isfile(path):
    sys.exit("no %s" % path)
lines = [json.loads(l) for l in open(path) if l.strip()]
run = next((r for r in lines if r.get("kind") == "run"), None)
summary = next((r for r in lines if r.get("kind") == "summary"), None)
steps = [r for r in lines if r.get("kind") == "step" and r["step"] > warm]
if run is None or summary is None:
    sys.exit("metrics.jsonl has no run or no summary line")
cfg = run["config"]
if cfg.get("device") != device or cfg.get("precision") != "bf16":
    sys.exit("the run line says device %r precision %r, not %s bf16"
             % (cfg.get("device"), cfg.get("precision"), device))
if not steps:
    sys.exit("no step line after the %d warm-up steps" % warm)
med = lambda k: statistics.median(float(r[k]) for r in steps)
tps, mfu = med("tokens_per_s"), med("mfu")
peak = float(run.get("peak_flops", 0))
print(json.dumps({
    "tokens_per_s": tps, "step_s_median": med("step_s"), "mfu": mfu,
    "peak_flops": peak, "peak_flops_source": run.get("peak_flops_source"),
    "flops_per_token": mfu * peak / tps if peak > 0 else None,
    "peak_mem_bytes": summary["mem_bytes"]["peak"], "mem_bytes": summary["mem_bytes"],
    "n_params": run["n_params"], "steps_timed": len(steps),
    "first_loss": summary.get("first_loss"), "final_loss": summary.get("final_loss")}))
PY
}

# One case: both sides, then one results.jsonl line.
run_case() {  # preset T B
  local preset="$1" T="$2" B="$3" key="$1-T$2-B$3" dir zt_json="" zt_err="" pt_err="" params
  dir="$out/$key"
  mkdir -p "$dir"
  params="$("$zt" estimate --model "$preset" --world-size 1 --zero-stage 0 --json 2>"$dir/estimate.log" \
    | "$py" -c 'import json,sys; print(json.loads(sys.stdin.readline())["n_params"])' 2>>"$dir/estimate.log")" \
    || params=""
  note "$key: zerotrain train --device $device --precision bf16, $((warm + steps)) steps"
  if "$zt" train --device "$device" --precision bf16 --model "$preset" --data synthetic \
      --seq-len "$T" --micro-batch "$B" --steps $((warm + steps)) --warmup 0 --lr 3e-4 \
      --eval-every 0 --eval-tokens $((B * T)) --sample-tokens 0 --no-save \
      "${zt_extra[@]}" --out "$dir/zt" > "$dir/zt.log" 2>&1; then
    zt_json="$(zerotrain_numbers "$dir/zt" "$warm" "$device" 2>&1)" || { zt_err="$zt_json"; zt_json=""; }
  else
    zt_err="exit $?: $(failure_message "$dir/zt.log")"
  fi
  [[ -z "$zt_err" ]] || note "$key: zerotrain FAILED: $zt_err (log: $dir/zt.log)"

  local expect=()
  if [[ -n "$params" ]]; then
    expect=(--expect-params "$params")
  else
    pt_err="zerotrain estimate gave no parameter count to check the peer against: $(failure_message "$dir/estimate.log")"
  fi
  if [[ -z "$pt_err" ]]; then
    note "$key: torch_train.py --device $device, $warm warm-up + $steps timed steps"
    if ! "$py" "$here/torch_train.py" --device "$device" --preset "$preset" --seq-len "$T" \
        --micro-batch "$B" --warmup-steps "$warm" --steps "$steps" "${expect[@]}" \
        "${pt_extra[@]}" > "$dir/pt.json" 2> "$dir/pt.log"; then
      pt_err="$(failure_message "$dir/pt.log")"
    fi
  fi
  [[ -z "$pt_err" ]] || note "$key: PyTorch FAILED: $pt_err (log: $dir/pt.log)"

  "$py" - "$preset" "$T" "$B" "$zt_json" "$zt_err" "$dir/pt.json" "$pt_err" >> "$out/results.jsonl" <<'PY'
import json, sys
preset, T, B, zt_json, zt_err, pt_path, pt_err = sys.argv[1:]
pt = None
if not pt_err:
    text = open(pt_path).read().strip()
    try:
        pt = json.loads(text.splitlines()[-1])
    except (IndexError, ValueError):
        pt_err = "torch_train.py exited 0 without a JSON line (%s)" % pt_path
print(json.dumps({"model": preset, "seq_len": int(T), "micro_batch": int(B),
                  "zerotrain": json.loads(zt_json) if zt_json else None,
                  "zerotrain_error": zt_err or None,
                  "pytorch": pt, "pytorch_error": pt_err or None}))
PY
}

{
  echo "machine: $(hostname), $(nproc) CPU cores"
  if command -v nvidia-smi > /dev/null; then
    echo "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -n 1)"
  else
    echo "gpu: no nvidia-smi on this machine"
  fi
  echo "torch: $("$py" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)' 2>&1)"
  echo "zerotrain: $zt ($("$zt" --version 2>&1 | head -n 1))"
  echo "device $device; zerotrain --data synthetic, PyTorch uniform random tokens; $warm warm-up + $steps timed steps each"
} > "$out/header.txt"
cat "$out/header.txt"

for c in $cases; do
  IFS=: read -r preset T B <<< "$c"
  [[ -n "$preset" && "$T" =~ ^[1-9][0-9]*$ && "$B" =~ ^[1-9][0-9]*$ ]] \
    || die "CASES entry '$c': expected preset:T:B"
  run_case "$preset" "$T" "$B"
done

"$py" - "$out/results.jsonl" > "$out/table.txt" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
GiB = 2.0 ** 30
def num(d, k, fmt, scale=1.0):
    v = d.get(k) if d else None
    return "-" if v is None else fmt % (v / scale)
hdr = ("%-14s %5s %3s | %11s %11s %7s | %8s %8s | %8s %8s | %7s %7s %9s"
       % ("model", "T", "B", "zt tok/s", "pt tok/s", "zt/pt", "zt s", "pt s",
          "zt GiB", "pt GiB", "zt MFU", "pt MFU", "zt MFU@pt"))
print(hdr)
notes = []
for r in rows:
    zt, pt = r["zerotrain"], r["pytorch"]
    ratio = "-"
    if zt and pt:
        ratio = "%.2fx" % (zt["tokens_per_s"] / pt["tokens_per_s"])
    mfu_at_pt = "-"
    if zt and pt:
        mfu_at_pt = "%.1f%%" % (100 * zt["tokens_per_s"] * pt["flops_per_token"] / pt["gemm_peak_flops"])
        z = zt.get("flops_per_token")
        if z is None:
            notes.append("%s: zerotrain reports no peak_flops, so its FLOPs/token are unknown"
                         % r["model"])
        elif abs(z - pt["flops_per_token"]) > 1e-6 * pt["flops_per_token"]:
            notes.append("%s: zerotrain's FLOPs/token (%.6g, from mfu x peak / tokens/s) differ "
                         "from the peer's (%.6g)" % (r["model"], z, pt["flops_per_token"]))
        else:
            notes.append("%s: FLOPs/token agree: zerotrain's mfu x peak / tokens/s = %.6g"
                         % (r["model"], z))
    print("%-14s %5d %3d | %11s %11s %7s | %8s %8s | %8s %8s | %7s %7s %9s" % (
        r["model"], r["seq_len"], r["micro_batch"],
        num(zt, "tokens_per_s", "%.0f"), num(pt, "tokens_per_s", "%.0f"), ratio,
        num(zt, "step_s_median", "%.4f"), num(pt, "step_s_median", "%.4f"),
        num(zt, "peak_mem_bytes", "%.2f", GiB), num(pt, "peak_mem_bytes", "%.2f", GiB),
        "-" if not zt else "%.1f%%" % (100 * zt["mfu"]),
        "-" if not pt else "%.1f%%" % (100 * pt["mfu"]), mfu_at_pt))
    if r["zerotrain_error"]:
        notes.append("%s: zerotrain FAILED: %s" % (r["model"], r["zerotrain_error"]))
    if r["pytorch_error"]:
        notes.append("%s: PyTorch FAILED: %s" % (r["model"], r["pytorch_error"]))
print()
print("zt GiB: zerotrain's ledger peak (summary mem_bytes.peak); pt GiB: "
      "torch.cuda.max_memory_allocated (none on cpu)")
for r in rows:
    zt, pt = r["zerotrain"], r["pytorch"]
    if zt:
        print("%s: zerotrain peak %.4g FLOP/s (%s)" % (r["model"], zt["peak_flops"],
                                                     zt["peak_flops_source"]))
    if pt:
        g = pt["gemm"]
        print("%s: PyTorch peak %.4g FLOP/s (%s GEMM %d^3, median of %d, %s on %s); "
              "FLOPs/token %.6g = %s; %s, compile %s, attention %s, AdamW %s"
              % (r["model"], pt["gemm_peak_flops"], g["dtype"], g["n"], g["reps"], g["data"],
                 pt["device"], pt["flops_per_token"], pt["flops_per_token_formula"],
                 pt["precision"], pt["compile"], pt["attention"], pt["adamw"]))
for n in notes:
    print(n)
PY
cat "$out/table.txt"
if grep -q '"zerotrain_error": "\|"pytorch_error": "' "$out/results.jsonl"; then
  note "at least one side failed (see above); raw lines in $out/results.jsonl"
  exit 1
fi
note "raw lines in $out/results.jsonl, table in $out/table.txt"
