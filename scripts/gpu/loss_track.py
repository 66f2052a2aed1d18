#!/usr/bin/env python3
"""Compares the loss curves of two zerotrain runs of the same configuration
(a GPU run against a CPU run, or one precision against another), step by
step, from their metrics.jsonl, prints the per-step table and fails when a
step's losses differ by more than the tolerance.

    rel(s) = |loss_A(s) - loss_B(s)| / |loss_B(s)|   must be <= RTOL at every step s

B is the reference (the CPU run, or the fp32 one). The runs must agree on
everything that decides the math of a step: the model, data, sequence
length, global batch (world size x micro-batch x accumulation: what a step
sees, DESIGN.md "Data order is global"), learning-rate schedule, AdamW and
clipping settings, seed and starting weights. Device, precision, gradient
dtype, ZeRO stage, recompute, threads and the output directory may differ.
Both must hold the same steps with the same learning rate at each (the
schedule depends on --steps too), with finite losses; a step skipped (a
non-finite gradient) in one and not the other is a mismatch.

Default RTOL, from the runs' precisions (--rtol overrides):
  either run bf16: 2^-8 = 3.9e-3, one bf16 unit roundoff (8 significant
    bits). Every matrix product rounds its inputs and outputs to bf16, but
    the loss is the mean over B*T tokens of fp32 log-softmax terms whose
    rounding errors carry random signs, and both runs keep fp32 master
    weights and moments, so the curves stay well inside one unit roundoff
    over tens of steps. Measured on test-tiny, 50 steps, micro-batch 4 x
    64: CPU bf16 against CPU fp32 differ by at most 4.6e-4; a 10% higher
    learning rate, or another seed, leaves the tolerance within 4 to 6
    steps. What it cannot see: AdamW normalises the gradient's scale, so
    a defect that only rescales the whole gradient (a clipping threshold:
    0.5 against 1 stays inside, 4.8e-4) barely moves the curve.
  both fp32: 1e-4. DESIGN.md holds reorderings on one device (ZeRO stages)
    to 1e-5 after 50 steps; another device reorders every reduction and
    uses its own exp and rsqrt, so ten times that. (On one CPU, 1 against 2
    threads differs by 3e-8 over the same 50 steps.)
Tolerances are for short runs (tens to a few hundred steps): two float
trajectories separate over many steps, and a long run is compared on its
first steps with --steps N.

Usage: python3 scripts/gpu/loss_track.py RUN_A RUN_B [--rtol X] [--steps N] [--ignore KEY ...]
  RUN_A, RUN_B: run directories or their metrics.jsonl files.
Exit status: 0 within tolerance, 1 a mismatch or an error.
"""
import argparse
import json
import math
import os
import sys

BF16_RTOL = 2.0 ** -8
FP32_RTOL = 1e-4
# The settings that decide what a step computes (besides the global batch).
SAME_KEYS = ["model_config", "data", "seq_len", "lr", "min_lr", "warmup", "lr_schedule",
             "warmup_type", "warmup_min_lr", "warmup_min_ratio", "cos_min_ratio",
             "lr_total_steps", "adam_eps", "weight_decay", "weight_decay_all", "grad_clip",
             "beta1", "beta2", "seed", "init_from", "on_nonfinite"]


def fail(msg):
    sys.stderr.write("loss_track.py: error: %s\n" % msg)
    sys.exit(1)


def read_run(arg):
    path = os.path.join(arg, "metrics.jsonl") if os.path.isdir(arg) else arg
    if not os.path.isfile(path):
        fail("%s: no metrics.jsonl there" % arg)
    run, steps = None, {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except ValueError as e:
                fail("%s:%d: not JSON (%s)" % (path, n, e))
            if r.get("kind") == "run" and run is None:
                run = r
            elif r.get("kind") == "step":
                steps[int(r["step"])] = r  # a resumed run's later line for a step wins
    if run is None:
        fail("%s: no run line" % path)
    if not steps:
        fail("%s: no step lines" % path)
    return path, run, steps


def main():
    ap = argparse.ArgumentParser(description="compare two zerotrain loss curves step by step")
    ap.add_argument("run_a", help="the run under test (e.g. the GPU run)")
    ap.add_argument("run_b", help="the reference run (e.g. the CPU run)")
    ap.add_argument("--rtol", type=float, help="per-step relative tolerance (default: by precision)")
    ap.add_argument("--steps", type=int, help="compare only steps 1..N")
    ap.add_argument("--ignore", action="append", default=[],
                    help="a config key allowed to differ (e.g. data, when the paths differ)")
    a = ap.parse_args()
    pa, ra, sa = read_run(a.run_a)
    pb, rb, sb = read_run(a.run_b)
    ca, cb = ra["config"], rb["config"]

    differ = ["%s: %s vs %s" % (k, json.dumps(ca.get(k)), json.dumps(cb.get(k)))
              for k in SAME_KEYS if k not in a.ignore and ca.get(k) != cb.get(k)]
    ga = ra["world_size"] * ca["micro_batch"] * ca["grad_accum"]
    gb = rb["world_size"] * cb["micro_batch"] * cb["grad_accum"]
    if ga != gb and "global_batch" not in a.ignore:
        differ.append("global batch (world x micro-batch x accumulation): %d vs %d" % (ga, gb))
    if differ:
        fail("the runs are not the same configuration; they differ in %s" % "; ".join(differ))

    prec = (ca.get("precision"), cb.get("precision"))
    if a.rtol is not None:
        rtol, why = a.rtol, "--rtol"
    elif "bf16" in prec:
        rtol, why = BF16_RTOL, "one bf16 unit roundoff, 2^-8 (a run is bf16)"
    else:
        rtol, why = FP32_RTOL, "fp32 on both sides"
    if not rtol > 0:
        fail("--rtol must be positive, got %r" % rtol)

    want = sorted(sa) if a.steps is None else list(range(1, a.steps + 1))
    missing = ["%s lacks step %d" % (p, s) for s in want for p, st in ((pa, sa), (pb, sb))
               if s not in st]
    if a.steps is None and sorted(sa) != sorted(sb):
        only = sorted(set(sa) ^ set(sb))
        missing.append("the runs hold different steps (%d vs %d lines; first unmatched: %d)"
                       % (len(sa), len(sb), only[0]))
    if missing:
        fail("; ".join(missing[:5]))

    # The learning rate each step used: a schedule that differs (another --steps changes the
    # cosine's length) is a different configuration, not a numerical difference.
    lr_differ = [s for s in want if not math.isclose(sa[s]["lr"], sb[s]["lr"], rel_tol=1e-9)]
    if lr_differ and "lr" not in a.ignore:
        s = lr_differ[0]
        fail("the learning-rate schedules differ: step %d used lr %r in A and %r in B"
             % (s, sa[s]["lr"], sb[s]["lr"]))

    print("A: %s (device %s, precision %s, %d ranks, stage %s)"
          % (pa, ca.get("device"), ca.get("precision"), ra["world_size"], ca.get("zero_stage")))
    print("B: %s (device %s, precision %s, %d ranks, stage %s)"
          % (pb, cb.get("device"), cb.get("precision"), rb["world_size"], cb.get("zero_stage")))
    print("tolerance: |A - B| / |B| <= %.3g at every step (%s)" % (rtol, why))
    print("%6s %12s %12s %11s  %s" % ("step", "loss A", "loss B", "rel diff", ""))
    bad, worst, total = [], (0.0, 0), 0.0
    for s in want:
        la, lb = sa[s]["loss"], sb[s]["loss"]
        skip_a, skip_b = bool(sa[s].get("skipped")), bool(sb[s].get("skipped"))
        finite = la is not None and lb is not None and math.isfinite(la) and math.isfinite(lb)
        rel = abs(la - lb) / abs(lb) if finite and lb != 0 else float("nan")
        ok = rel <= rtol and skip_a == skip_b  # a NaN rel fails
        if not ok:
            bad.append(s)
        if rel == rel:
            total += rel
            worst = max(worst, (rel, s))
        note = "" if ok else ("MISMATCH" + (" (skipped in one run)" if skip_a != skip_b else ""))
        print("%6d %12.6f %12.6f %11.3e  %s" % (s, la if la is not None else float("nan"),
                                               lb if lb is not None else float("nan"), rel, note))
    print("largest rel diff %.3e at step %d, mean %.3e over %d steps, tolerance %.3g"
          % (worst[0], worst[1], total / len(want), len(want), rtol))
    if bad:
        print("loss_track.py: FAIL: %d of %d steps outside the tolerance (first: step %d)"
              % (len(bad), len(want), bad[0]))
        return 1
    print("loss_track.py: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
