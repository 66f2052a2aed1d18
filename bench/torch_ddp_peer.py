#!/usr/bin/python3
"""Multi-process PyTorch peer for bench/zero_ranks.sh: trains the LLaMA of
bench/torch_peer.py (imported, not copied) on random tokens with the same
per-rank batch, sequence length, AdamW and clipping, and prints the median
global tokens/s over the timed steps as JSON.

--nproc N > 1 spawns N processes (torch.multiprocessing.spawn) that meet over
gloo on 127.0.0.1 and a free port, and trains DistributedDataParallel with
torch.distributed.optim.ZeroRedundancyOptimizer(optimizer_class=AdamW): the
usual PyTorch equivalent of ZeRO stage 1 (gradients all-reduced by DDP, AdamW
state sharded, updated parameters broadcast from their owner). --nproc 1 is the
same loop without a process group, DDP or sharding (plain AdamW), the baseline
of the peer's own scaling ratio.

A step's time is the slowest rank's time for that step (the ranks meet in every
step's collectives, so they differ by little); global tokens/s of a step is
N x B x T over that time.

Usage: /usr/bin/python3 bench/torch_ddp_peer.py --config F.json --nproc N
           --micro-batch B --seq-len T --steps S --warmup-steps W --threads 1
"""
import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_peer import Llama  # noqa: E402  (the model bench/e2e_cpu.sh's peer trains)


def param_groups(model):
    # torch_peer.py's split: decay on matrices, not on norms or the embedding.
    decay = [p for p in model.parameters() if p.dim() == 2 and p is not model.embed.weight]
    no_decay = [p for p in model.parameters() if not any(p is d for d in decay)]
    return [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]


def train(rank, a, c, result_path):
    world = a.nproc
    torch.set_num_threads(a.threads)
    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)  # the same initial weights on every rank (DDP broadcasts rank 0's anyway)
    model = Llama(c, a.seq_len)
    n_params = sum(p.numel() for p in model.parameters())  # a tied weight counts once
    hyper = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    if world > 1:
        opt = ZeroRedundancyOptimizer(param_groups(model), optimizer_class=torch.optim.AdamW, **hyper)
        # The RoPE tables and the causal mask are constants every rank builds
        # alike; gloo cannot broadcast the bool mask, and re-broadcasting them
        # every forward (DDP's broadcast_buffers) would only add traffic.
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            model, [name for name, _ in model.named_buffers()])
        trained = DistributedDataParallel(model, broadcast_buffers=False)
    else:
        opt = torch.optim.AdamW(param_groups(model), **hyper)
        trained = model
    gen = torch.Generator().manual_seed(1 + rank)  # each rank its own slice of the global batch
    data = torch.randint(0, c["vocab_size"], (a.micro_batch, a.seq_len + 1), generator=gen)
    x, y = data[:, :-1].contiguous(), data[:, 1:].contiguous()

    step_s = []
    for _ in range(a.warmup_steps + a.steps):
        t0 = time.perf_counter()
        loss = trained(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # DDP all-reduces (averages) gradients in buckets during backward
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # full gradients on every rank
        opt.step()  # ZeRO: each rank updates its shard, then broadcasts it
        step_s.append(time.perf_counter() - t0)

    per_rank = [step_s]
    if world > 1:
        per_rank = [None] * world
        dist.all_gather_object(per_rank, step_s)
    if rank == 0:
        slowest = [max(r[i] for r in per_rank) for i in range(len(step_s))]
        timed = slowest[a.warmup_steps:]
        tokens = world * a.micro_batch * a.seq_len
        peer = "pytorch-ddp-zero-gloo" if world > 1 else "pytorch-plain"
        with open(result_path, "w") as f:
            json.dump({"peer": peer, "torch": torch.__version__, "nproc": world,
                       "threads": a.threads, "parameters": n_params, "steps_timed": len(timed),
                       "tokens_per_step": tokens,
                       "tokens_per_s": statistics.median(tokens / t for t in timed),
                       "step_s_median": statistics.median(timed), "step_s": slowest,
                       "final_loss_rank0": loss.item()}, f)
    if world > 1:
        # Leave without tearing down: this PyTorch (1.13) can deadlock in
        # ~ProcessGroupGloo, joining a gloo worker thread that waits for the
        # GIL the exiting main thread holds. The result is on disk already.
        dist.barrier()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--nproc", type=int, required=True)
    ap.add_argument("--micro-batch", type=int, required=True)
    ap.add_argument("--seq-len", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--warmup-steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.steps < 1:
        sys.exit("torch_ddp_peer.py: --steps must be at least 1 (the timed steps)")
    if a.nproc < 1:
        sys.exit(f"torch_ddp_peer.py: --nproc must be at least 1 (got {a.nproc})")
    with open(a.config) as f:
        c = json.load(f)
    if c.get("model_type", "llama") != "llama":
        sys.exit("torch_ddp_peer.py: only LLaMA configs are supported")
    with tempfile.TemporaryDirectory() as tmp:
        result_path = os.path.join(tmp, "result.json")
        if a.nproc == 1:
            train(0, a, c, result_path)
        else:
            os.environ["MASTER_ADDR"] = "127.0.0.1"
            os.environ["MASTER_PORT"] = str(free_port())
            mp.spawn(train, args=(a, c, result_path), nprocs=a.nproc, join=True)
        with open(result_path) as f:
            print(f.read())


if __name__ == "__main__":
    main()
