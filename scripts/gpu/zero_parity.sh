#!/usr/bin/env bash
# ZeRO stages 0-3 at 2 ranks on the GPU against 1 rank with the same global
# batch (2 x 4 against 1 x 8 sequences a step): DESIGN.md holds every stage at
# any world size to the one-process loss curve, relative difference under
# 1e-5 in fp32. 20 steps of test-tiny. The ranks share the one GPU; --nproc
# starts them itself and --comm tcp joins them (no MPI needed, none on the
# lent machine).
#   scripts/gpu/zero_parity.sh ZEROTRAIN WORK_DIR
#   env: PYTHON (python3), DEVICE (cuda; cpu rehearses the script anywhere)
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: scripts/gpu/zero_parity.sh ZEROTRAIN WORK_DIR" >&2; exit 2; }
zt="$1" work="$2" py="${PYTHON:-python3}" device="${DEVICE:-cuda}"
rm -rf "$work" && mkdir -p "$work"
common=(--model test-tiny --data synthetic --steps 20 --seq-len 64 --eval-every 0
        --sample-tokens 0 --no-save --precision fp32 --device "$device")
"$zt" train "${common[@]}" --micro-batch 8 --out "$work/ref"
for s in 0 1 2 3; do
    "$zt" train "${common[@]}" --micro-batch 4 --nproc 2 --comm tcp --zero-stage "$s" --out "$work/stage$s"
done
"$py" - "$work" <<'PY'
import json, sys
def losses(d):
    return [r["loss"] for r in map(json.loads, open(d + "/metrics.jsonl")) if r.get("kind") == "step"]
ref = losses(sys.argv[1] + "/ref")
bad = 0
for s in range(4):
    got = losses(sys.argv[1] + "/stage%d" % s)
    rel = max((abs(a - b) / max(abs(b), 1e-12) for a, b in zip(got, ref)), default=float("nan"))
    ok = len(got) == len(ref) > 0 and rel <= 1e-5
    print("stage %d at 2 ranks: max relative loss difference %.3g over %d steps: %s"
          % (s, rel, len(got), "ok" if ok else "TOO LARGE"))
    bad += not ok
sys.exit(1 if bad else 0)
PY
