#!/usr/bin/python3
"""PyTorch eager peer for bench/e2e_cpu.sh: trains the same LLaMA shape with the
same batch, sequence length, AdamW and clipping on random tokens, and prints
the median tokens/s over the timed steps as JSON.

--precision fp32 is plain eager; --precision bf16 wraps forward and loss in
torch.autocast("cpu", dtype=torch.bfloat16), the usual mixed-precision recipe:
parameters, gradients and AdamW state stay fp32.

Usage: /usr/bin/python3 bench/torch_peer.py --config F.json --micro-batch B
           --seq-len T --steps S --warmup-steps W --threads N [--precision bf16]
"""
import argparse
import contextlib
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        C, self.nh, self.nkv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
        self.hd = C // self.nh
        H = c["intermediate_size"]
        self.ln1 = RMSNorm(C, c["rms_norm_eps"])
        self.q = nn.Linear(C, self.nh * self.hd, bias=False)
        self.k = nn.Linear(C, self.nkv * self.hd, bias=False)
        self.v = nn.Linear(C, self.nkv * self.hd, bias=False)
        self.o = nn.Linear(self.nh * self.hd, C, bias=False)
        self.ln2 = RMSNorm(C, c["rms_norm_eps"])
        self.gate = nn.Linear(C, H, bias=False)
        self.up = nn.Linear(C, H, bias=False)
        self.down = nn.Linear(H, C, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, C = x.shape
        h = self.ln1(x)
        q = self.q(h).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k(h).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v(h).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.nh // self.nkv
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.hd)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.o(y)
        h = self.ln2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, c, T):
        super().__init__()
        C, V = c["hidden_size"], c["vocab_size"]
        self.embed = nn.Embedding(V, C)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(C, c["rms_norm_eps"])
        self.head = nn.Linear(C, V, bias=False)
        if c.get("tie_word_embeddings", False):
            self.head.weight = self.embed.weight
        hd = C // c["num_attention_heads"]
        inv = c.get("rope_theta", 10000.0) ** (-torch.arange(0, hd, 2).float() / hd)
        ang = torch.arange(T).float()[:, None] * inv[None, :]
        ang = torch.cat((ang, ang), dim=-1)
        self.register_buffer("cos", ang.cos())
        self.register_buffer("sin", ang.sin())
        self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), 1))
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx, targets):
        x = self.embed(idx)
        for b in self.blocks:
            x = b(x, self.cos, self.sin, self.mask)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--micro-batch", type=int, required=True)
    ap.add_argument("--seq-len", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--warmup-steps", type=int, default=3)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    a = ap.parse_args()
    if a.steps < 1:
        sys.exit("torch_peer.py: --steps must be at least 1 (the timed steps)")
    with open(a.config) as f:
        c = json.load(f)
    if c.get("model_type", "llama") != "llama":
        sys.exit("torch_peer.py: only LLaMA configs are supported")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Llama(c, a.seq_len)
    decay = [p for p in model.parameters() if p.dim() == 2 and p is not model.embed.weight]
    no_decay = [p for p in model.parameters() if not any(p is d for d in decay)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    V = c["vocab_size"]
    data = torch.randint(0, V, (a.micro_batch, a.seq_len + 1))
    x, y = data[:, :-1].contiguous(), data[:, 1:].contiguous()
    # parameters() lists a tied weight once, as zerotrain counts it.
    n_params = sum(p.numel() for p in model.parameters())
    def forward_precision():
        if a.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    step_s = []
    for _ in range(a.warmup_steps + a.steps):
        t0 = time.perf_counter()
        with forward_precision():
            loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step_s.append(time.perf_counter() - t0)
    tokens = a.micro_batch * a.seq_len
    timed = step_s[a.warmup_steps:]
    peer = "pytorch-eager" if a.precision == "fp32" else "pytorch-autocast-bf16"
    print(json.dumps({"peer": peer, "torch": torch.__version__, "threads": a.threads,
                      "parameters": n_params, "steps_timed": len(timed),
                      "tokens_per_s": statistics.median(tokens / t for t in timed),
                      "step_s": step_s, "final_loss": loss.item()}))


if __name__ == "__main__":
    main()
