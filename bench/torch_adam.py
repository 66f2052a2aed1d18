#!/usr/bin/python3
"""torch.optim.AdamW peer for bench/cpu_adam.cpp: the same update (fp32
params, grads and moments, weight decay on) over N parameters, timed in the
steady state, one JSON line per implementation tried:
  {"impl": "torch.optim.AdamW(foreach=False)", "params": N, "params_per_s": ...}

The parameters are split into tensors of at most K elements, for each K of
--tensor-numel: a model's layers hold 0.5M-50M each, and smaller tensors let
the single-tensor path run its several passes over each tensor in cache, so
the sweep finds torch at its best. foreach=True builds its temporaries for all
tensors at once, so it is skipped, with a line saying so, when they would not
fit in the available memory. fused=True is tried where this torch has it.

Usage: /usr/bin/python3 bench/torch_adam.py --params N --threads T
           [--steps S] [--tensor-numel K1,K2,...]
"""
import argparse
import ctypes
import gc
import inspect
import json
import statistics
import time

import torch


def available_bytes():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def release_memory():
    """Frees what the previous run left: the optimizer's profiling hook holds a
    cycle that keeps its moments alive, and glibc keeps freed small tensors'
    pages unless trimmed (MemAvailable would then not see them)."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def time_adamw(params, steps, **kind):
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1,
                            **kind)
    opt.step()  # warm-up: allocates the moments
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t0)
    del opt
    release_memory()
    return statistics.median(times), min(times)


def make_params(total, tensor_numel):
    sizes = [tensor_numel] * (total // tensor_numel)
    if total % tensor_numel:
        sizes.append(total % tensor_numel)
    params = []
    for n in sizes:
        p = torch.nn.Parameter(torch.randn(n))
        p.grad = torch.randn(n) * 0.5
        params.append(p)
    return params


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--tensor-numel", default="65536,1048576,16777216")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    kinds = [("foreach=False", {"foreach": False}), ("foreach=True", {"foreach": True})]
    if "fused" in inspect.signature(torch.optim.AdamW.__init__).parameters:
        kinds.append(("fused=True", {"fused": True}))
    for tensor_numel in [int(k) for k in a.tensor_numel.split(",")]:
        params = make_params(a.params, tensor_numel)
        base = {"params": a.params, "threads": a.threads, "tensor_numel": tensor_numel,
                "tensors": len(params), "torch": torch.__version__}
        for name, kind in kinds:
            impl = f"torch.optim.AdamW({name}), tensors of {tensor_numel}"
            # Moments (8 B/param) plus, for foreach, about three full-size temporaries.
            need = 8 * a.params + (12 * a.params if kind.get("foreach") else 0)
            if need > available_bytes():
                print(json.dumps({"impl": impl, **base,
                                  "skipped": "needs %.1f GB, %.1f GB available"
                                  % (need / 1e9, available_bytes() / 1e9)}), flush=True)
                continue
            try:
                median, best = time_adamw(params, a.steps, **kind)
            except (RuntimeError, ValueError) as e:  # e.g. fused=True for CUDA tensors only
                print(json.dumps({"impl": impl, **base, "skipped": str(e).splitlines()[0]}),
                      flush=True)
                continue
            print(json.dumps({"impl": impl, **base, "seconds_median": median,
                              "seconds_best": best, "params_per_s": a.params / median,
                              "params_per_s_best": a.params / best}), flush=True)
        del params
        release_memory()


if __name__ == "__main__":
    main()
