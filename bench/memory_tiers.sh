#!/usr/bin/env bash
# What memory-saving costs in time, on one model, in one invocation:
#   --offload-optimizer none | nvme   (step time, optimizer time, the NVMe
#                                      tier's achieved read/write GB/s)
#   --recompute none | attn | full    (tokens/s, activation bytes)
# against the disk's own sequential O_DIRECT bandwidth, measured here with dd
# on the same file system as the offload directory.
#
# Prints one row per configuration: tokens/s, median step and optimizer
# seconds after the warm-up, the ledger's optimizer and activation bytes, peak
# RSS, and the ratio of tokens/s to the plain run (none / none). Nothing is
# asserted: this is a measurement.
#
# Usage: bench/memory_tiers.sh [BUILD_DIR]
#   env: MODEL (default tiny), MICRO_BATCH (4), SEQ_LEN (256), STEPS (3 timed),
#        WARMUP (1), THREADS ($(nproc)), PRECISION (fp32),
#        OFFLOAD_DIR (a directory on the disk to measure; default a temporary
#        one under the run's scratch), LOGS (keep the run directories here)
set -euo pipefail
export LC_ALL=C
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
zt="$build/zerotrain"
bench_name=memory_tiers.sh
# shellcheck source=bench/common.sh
source "$root/bench/common.sh"
[[ -x "$zt" ]] || { echo "memory_tiers.sh: no zerotrain binary at $zt; build it first" >&2; exit 1; }

model="${MODEL:-tiny}"
B="${MICRO_BATCH:-4}"
T="${SEQ_LEN:-256}"
steps="${STEPS:-3}"
warm="${WARMUP:-1}"
threads="${THREADS:-$(nproc)}"
precision="${PRECISION:-fp32}"
bench_scratch -p "${TMPDIR:-/var/tmp}"
offload_dir="${OFFLOAD_DIR:-$tmp/offload}"
mkdir -p "$offload_dir"

# The disk's own bandwidth: 1 GiB written and read back with O_DIRECT.
dd_rate() {  # if of extra...
  dd "$@" bs=4M count=256 2>&1 | awk '/copied/ { print $(NF-1), $NF }'
}
progress "measuring the disk under $offload_dir with dd (1 GiB, O_DIRECT)"
disk_write="$(dd_rate if=/dev/zero of="$offload_dir/dd.bin" oflag=direct conv=fsync)"
disk_read="$(dd_rate if="$offload_dir/dd.bin" of=/dev/null iflag=direct)"
rm -f "$offload_dir/dd.bin"

run() {  # key extra-args...
  local key="$1"
  shift
  progress "$key: $model, $precision, B $B, T $T, $((warm + steps)) steps, $threads thread(s)"
  if ! OMP_NUM_THREADS="$threads" "$zt" train --model "$model" --data synthetic --micro-batch "$B" \
      --seq-len "$T" --steps $((warm + steps)) --warmup 0 --lr 1e-3 --eval-every 0 \
      --eval-tokens $((B * T)) --sample-tokens 0 --no-save --threads "$threads" --precision "$precision" \
      "$@" --out "$tmp/run-$key" > "$tmp/run-$key.log" 2>&1; then
    tail -n 20 "$tmp/run-$key.log" >&2
    fail "zerotrain failed ($key); its log is above"
  fi
}

configs=(
  "none|"
  "nvme|--offload-optimizer nvme --offload-dir $offload_dir"
  "attn|--recompute attn"
  "full|--recompute full"
  "nvme+full|--offload-optimizer nvme --offload-dir $offload_dir --recompute full"
)
for c in "${configs[@]}"; do
  key="${c%%|*}"
  # shellcheck disable=SC2086
  run "$key" ${c#*|}
done

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); disk: write $disk_write, read $disk_read (dd, O_DIRECT)"
/usr/bin/env python3 - "$tmp" "$warm" "${configs[@]}" <<'PY'
import json, statistics, sys
tmp, warm, configs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rows = []
for c in configs:
    key = c.split("|")[0]
    lines = [json.loads(l) for l in open(f"{tmp}/run-{key}/metrics.jsonl")]
    steps = [l for l in lines if l.get("kind") == "step"][warm:]
    summary = [l for l in lines if l.get("kind") == "summary"][-1]
    rank0 = summary["ranks"][0]
    med = lambda f: statistics.median(f(s) for s in steps)
    rows.append({
        "config": key,
        "tokens_per_s": med(lambda s: s["tokens_per_s"]),
        "step_s": med(lambda s: s["step_s"]),
        "optimizer_s": med(lambda s: s["time_s"]["optimizer"]),
        "optimizer_bytes": rank0["mem_bytes"]["optimizer"],
        "activation_bytes": rank0["mem_bytes"]["activations"],
        "peak_rss_bytes": rank0["peak_rss_bytes"],
        "offload": summary.get("offload"),
    })
base = rows[0]["tokens_per_s"]
print(f"{'config':<10} {'tok/s':>9} {'ratio':>6} {'step s':>8} {'optim s':>8} "
      f"{'optim MiB':>10} {'activ MiB':>10} {'RSS MiB':>9}  nvme read/write GB/s")
for r in rows:
    off = r["offload"]
    io = f"{off['read_gb_per_s']:.2f} / {off['write_gb_per_s']:.2f}" if off else ""
    print(f"{r['config']:<10} {r['tokens_per_s']:9.0f} {r['tokens_per_s'] / base:6.2f} "
          f"{r['step_s']:8.3f} {r['optimizer_s']:8.3f} {r['optimizer_bytes'] / 2**20:10.1f} "
          f"{r['activation_bytes'] / 2**20:10.1f} {r['peak_rss_bytes'] / 2**20:9.0f}  {io}")
PY
