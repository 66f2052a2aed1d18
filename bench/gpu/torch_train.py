#!/usr/bin/env python3
"""PyTorch peer for bench/gpu/run.sh: trains the model of a zerotrain preset
the way a PyTorch user would on one GPU, and prints one JSON line of what it
measured.

The recipe: torch.compile of the model, F.scaled_dot_product_attention
(is_causal=True), torch.optim.AdamW(fused=True), torch.autocast(bf16) around
forward and loss with fp32 parameters, gradients and AdamW state, global
gradient-norm clipping, a fresh batch of tokens every step. The AdamW
hyperparameters and the weight-decay split (matrices only; not norms,
biases, embeddings) are zerotrain's defaults.

The model: LLaMA (RMSNorm, RoPE with optional llama3 frequency scaling,
grouped-query attention, SwiGLU) or GPT-2 (learned positions, LayerNorm,
tanh GELU), with Hugging Face tensor names, written as the golden reference
(tests/golden/reference.py) defines them; bench/gpu/check_peer_model.py
checks that this module's logits equal the reference's. The presets mirror
src/model/config.cpp; --expect-params makes the run fail when the parameter
count differs from zerotrain's.

Measured and printed: tokens/s (median over the timed steps), step time
(median), peak memory (torch.cuda.max_memory_allocated over the whole run;
on CPU the process's peak RSS instead, named as such), the bf16 (or fp32)
GEMM peak measured in this process (an N x N x N matmul of random normal
data, median of several, CUDA events on GPU), and MFU = FLOPs/token x
tokens/s / that peak. FLOPs/token use zerotrain's formula
(src/model/config.cpp train_flops_per_token):
    6 * N_matmul + 12 * n_layer * seq_len * d_model
where N_matmul is the parameter count less the embedding lookup tables that
are no matrix product (the untied input embedding; GPT-2's position table),
and 12 * L * T * C is attention's QK^T and AV in forward and backward
counted over the full T x T square (the PaLM/nanoGPT convention; a causal
kernel does about half of it).

On a machine whose torch lacks a piece of the recipe (Debian's torch 1.13:
no torch.compile, no scaled_dot_product_attention, no fused AdamW) the
device cpu run uses what exists and names it in the JSON ("compile",
"attention", "adamw"); on cuda a missing piece is an error.

Usage:
  python3 bench/gpu/torch_train.py --preset gpt2-124m --seq-len 1024 --micro-batch 16 \
      --warmup-steps 3 --steps 10 [--device cuda] [--precision bf16] [--compile auto]
      [--data FILE.bin] [--expect-params N]
  /usr/bin/python3 bench/gpu/torch_train.py --device cpu --preset test-tiny --seq-len 64 \
      --micro-batch 4 --warmup-steps 1 --steps 3
"""
import argparse
import contextlib
import json
import math
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# The presets of src/model/config.cpp that this peer trains (norm_eps 1e-5 for all).
PRESETS = {
    "test-tiny": dict(arch="llama", vocab_size=256, d_model=96, n_layer=2, n_head=4, n_kv_head=2,
                      d_ff=256, max_seq=256, rope_theta=10000.0, rope_scaling=None,
                      tie_embeddings=False),
    "test-tiny-gpt2": dict(arch="gpt2", vocab_size=256, d_model=96, n_layer=2, n_head=4,
                           n_kv_head=4, d_ff=384, max_seq=256, tie_embeddings=True),
    "tiny": dict(arch="llama", vocab_size=32000, d_model=512, n_layer=8, n_head=8, n_kv_head=8,
                 d_ff=1792, max_seq=2048, rope_theta=10000.0, rope_scaling=None,
                 tie_embeddings=True),
    "gpt2-124m": dict(arch="gpt2", vocab_size=50257, d_model=768, n_layer=12, n_head=12,
                      n_kv_head=12, d_ff=3072, max_seq=1024, tie_embeddings=True),
    "llama-1b": dict(arch="llama", vocab_size=128256, d_model=2048, n_layer=16, n_head=32,
                     n_kv_head=8, d_ff=8192, max_seq=131072, rope_theta=500000.0,
                     rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 8192},
                     tie_embeddings=True),
}


def fail(msg):
    sys.stderr.write("torch_train.py: error: %s\n" % msg)
    sys.exit(1)


def model_config(args):
    """The model config (zerotrain's model_config field names) of --preset or --model-config."""
    if args.model_config:
        with open(args.model_config) as f:
            j = json.load(f)
        # A run directory's config.json holds the model under "model_config".
        c = dict(j.get("model_config", j))
        missing = [k for k in ("arch", "vocab_size", "d_model", "n_layer", "n_head", "n_kv_head",
                               "d_ff", "max_seq", "tie_embeddings") if k not in c]
        if missing:
            fail("%s: not a zerotrain model_config (missing %s)"
                 % (args.model_config, ", ".join(missing)))
        c.setdefault("name", os.path.basename(args.model_config))
    else:
        c = dict(PRESETS[args.preset], name=args.preset)
    c.setdefault("norm_eps", 1e-5)
    c.setdefault("rope_theta", 10000.0)
    c.setdefault("rope_scaling", None)
    if c["arch"] not in ("llama", "gpt2"):
        fail("arch %r: expected llama or gpt2" % (c["arch"],))
    if c["d_model"] % c["n_head"] or c["n_head"] % c["n_kv_head"]:
        fail("d_model %d, n_head %d, n_kv_head %d do not divide"
             % (c["d_model"], c["n_head"], c["n_kv_head"]))
    return c


# ---- the model --------------------------------------------------------------------


def rope_cos_sin(T, D, theta, rope_scaling, dtype=torch.float32):
    """(T, D) cos and sin of RoPE's angles, computed in float64 and returned in dtype; llama3
    scaling as reference.py applies it."""
    inv = theta ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    if rope_scaling is not None:
        rs = rope_scaling
        if rs.get("rope_type", rs.get("type")) != "llama3":
            fail("rope_scaling %r: only rope_type llama3 is supported" % (rs,))
        L, low, high, factor = (float(rs["original_max_position_embeddings"]),
                                float(rs["low_freq_factor"]), float(rs["high_freq_factor"]),
                                float(rs["factor"]))
        wavelen = 2 * math.pi / inv
        s = (L / wavelen - low) / (high - low)
        blended = (1 - s) * inv / factor + s * inv
        inv = torch.where(wavelen < L / high, inv,
                          torch.where(wavelen > L / low, inv / factor, blended))
    ang = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    ang = torch.cat((ang, ang), dim=-1)
    return ang.cos().to(dtype), ang.sin().to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    """Causal attention over (B, n_head, T, hd) queries and (B, n_kv_head, T, hd) keys/values."""

    def __init__(self, use_sdpa, gqa):
        super().__init__()
        self.use_sdpa = use_sdpa
        self.gqa = gqa  # "repeat": k, v expanded to n_head first; "native": enable_gqa=True

    def forward(self, q, k, v):
        group = q.shape[1] // k.shape[1]
        if group > 1 and self.gqa == "repeat":
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        if self.use_sdpa:
            if group > 1 and self.gqa == "native":
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        T = q.shape[2]
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
        mask = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        return att @ v


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight).to(x.dtype)


class LlamaAttention(nn.Module):
    def __init__(self, c, attn):
        super().__init__()
        C, self.nh, self.nkv = c["d_model"], c["n_head"], c["n_kv_head"]
        self.hd = C // self.nh
        self.q_proj = nn.Linear(C, self.nh * self.hd, bias=False)
        self.k_proj = nn.Linear(C, self.nkv * self.hd, bias=False)
        self.v_proj = nn.Linear(C, self.nkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hd, C, bias=False)
        self.attn = attn

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hd).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)  # (B, nkv, T, hd)
        v = self.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)  # (B, nkv, T, hd)
        q = (q * cos + rotate_half(q) * sin).to(v.dtype)
        k = (k * cos + rotate_half(k) * sin).to(v.dtype)
        y = self.attn(q, k, v).transpose(1, 2).reshape(B, T, self.nh * self.hd)
        return self.o_proj(y)


class LlamaMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        C, H = c["d_model"], c["d_ff"]
        self.gate_proj = nn.Linear(C, H, bias=False)
        self.up_proj = nn.Linear(C, H, bias=False)
        self.down_proj = nn.Linear(H, C, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaLayer(nn.Module):
    def __init__(self, c, attn):
        super().__init__()
        self.input_layernorm = RMSNorm(c["d_model"], c["norm_eps"])
        self.self_attn = LlamaAttention(c, attn)
        self.post_attention_layernorm = RMSNorm(c["d_model"], c["norm_eps"])
        self.mlp = LlamaMLP(c)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaBody(nn.Module):
    def __init__(self, c, attn):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["d_model"])
        self.layers = nn.ModuleList(LlamaLayer(c, attn) for _ in range(c["n_layer"]))
        self.norm = RMSNorm(c["d_model"], c["norm_eps"])


class Llama(nn.Module):
    def __init__(self, c, T, attn):
        super().__init__()
        self.model = LlamaBody(c, attn)
        self.lm_head = None
        if not c["tie_embeddings"]:
            self.lm_head = nn.Linear(c["d_model"], c["vocab_size"], bias=False)
        cos, sin = rope_cos_sin(T, c["d_model"] // c["n_head"], float(c["rope_theta"]),
                                c["rope_scaling"])
        self.register_buffer("cos", cos, persistent=False)  # (T, hd)
        self.register_buffer("sin", sin, persistent=False)  # (T, hd)

    def embedding_tables(self):
        return [self.model.embed_tokens.weight]

    def forward(self, idx, targets=None):
        T = idx.shape[1]
        x = self.model.embed_tokens(idx)
        cos, sin = self.cos[:T], self.sin[:T]
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        x = self.model.norm(x)
        head = self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        return logits_or_loss(F.linear(x, head), targets)


class GPT2Attention(nn.Module):
    def __init__(self, c, attn):
        super().__init__()
        C = c["d_model"]
        self.nh = c["n_head"]
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.attn = attn

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=-1)
        q, k, v = (t.view(B, T, self.nh, C // self.nh).transpose(1, 2) for t in (q, k, v))
        return self.c_proj(self.attn(q, k, v).transpose(1, 2).reshape(B, T, C))


class GPT2MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_fc = nn.Linear(c["d_model"], c["d_ff"])
        self.c_proj = nn.Linear(c["d_ff"], c["d_model"])

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class GPT2Block(nn.Module):
    def __init__(self, c, attn):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c["d_model"], eps=c["norm_eps"])
        self.attn = GPT2Attention(c, attn)
        self.ln_2 = nn.LayerNorm(c["d_model"], eps=c["norm_eps"])
        self.mlp = GPT2MLP(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2Body(nn.Module):
    def __init__(self, c, attn):
        super().__init__()
        self.wte = nn.Embedding(c["vocab_size"], c["d_model"])
        self.wpe = nn.Embedding(c["max_seq"], c["d_model"])
        self.h = nn.ModuleList(GPT2Block(c, attn) for _ in range(c["n_layer"]))
        self.ln_f = nn.LayerNorm(c["d_model"], eps=c["norm_eps"])


class GPT2(nn.Module):
    def __init__(self, c, attn):
        super().__init__()
        self.transformer = GPT2Body(c, attn)
        self.lm_head = None
        if not c["tie_embeddings"]:
            self.lm_head = nn.Linear(c["d_model"], c["vocab_size"], bias=False)

    def embedding_tables(self):
        return [self.transformer.wte.weight, self.transformer.wpe.weight]

    def forward(self, idx, targets=None):
        m = self.transformer
        T = idx.shape[1]
        x = m.wte(idx) + m.wpe(torch.arange(T, device=idx.device))
        for block in m.h:
            x = block(x)
        x = m.ln_f(x)
        head = m.wte.weight if self.lm_head is None else self.lm_head.weight
        return logits_or_loss(F.linear(x, head), targets)


def logits_or_loss(logits, targets):
    """(B, T, V) logits, or with targets the mean cross-entropy, computed in fp32 or wider."""
    if targets is None:
        return logits
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def build_model(c, T, use_sdpa, gqa):
    attn = Attention(use_sdpa, gqa)
    model = Llama(c, T, attn) if c["arch"] == "llama" else GPT2(c, attn)
    # GPT-2-style init: N(0, 0.02) matrices and tables, residual projections
    # scaled by 1/sqrt(2 L), zero biases, unit norms.
    for name, p in model.named_parameters():
        if p.dim() == 2:
            std = 0.02
            if name.endswith(("o_proj.weight", "down_proj.weight", "c_proj.weight")):
                std /= math.sqrt(2 * c["n_layer"])
            nn.init.normal_(p, std=std)
        elif name.endswith("bias"):
            nn.init.zeros_(p)
    return model


def flops_per_token(c, n_params, T):
    """zerotrain's train_flops_per_token: (value, N_matmul)."""
    n = n_params
    if not c["tie_embeddings"]:
        n -= c["vocab_size"] * c["d_model"]
    if c["arch"] == "gpt2":
        n -= c["max_seq"] * c["d_model"]
    return 6.0 * n + 12.0 * c["n_layer"] * T * c["d_model"], n


# ---- measurement ------------------------------------------------------------------


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure_gemm_peak(device, dtype, n, reps):
    """Median FLOP/s of an (n, n) x (n, n) matmul of random normal data in dtype."""
    g = torch.Generator(device="cpu").manual_seed(1)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    for _ in range(3):
        c = a @ b
    sync(device)
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            c = a @ b
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            c = a @ b
            times.append(time.perf_counter() - t0)
    if not torch.isfinite(c.float()).all():
        fail("the GEMM peak measurement produced non-finite values")
    del a, b, c
    med = statistics.median(times)
    return 2.0 * n ** 3 / med, med


class TokenSource:
    """Batches of (B, T + 1) tokens: uniform random ids, or an llm.c shard's sequences in order
    (sequence k = tokens [k T, k T + T], as zerotrain reads a shard)."""

    def __init__(self, path, vocab, B, T, device, seed):
        self.vocab, self.B, self.T, self.device = vocab, B, T, device
        self.gen = torch.Generator(device=device.type).manual_seed(seed)
        self.tokens = None
        self.next_seq = 0
        if path:
            header = np.fromfile(path, dtype="<i4", count=256)
            if header.size < 256 or header[0] not in (20240520, 20240801):
                fail("%s: not an llm.c token shard (magic %s)"
                     % (path, header[0] if header.size else "missing"))
            dt = "<u2" if header[0] == 20240520 else "<u4"
            self.tokens = np.memmap(path, dtype=dt, mode="r", offset=1024, shape=(int(header[2]),))
            self.n_seq = (self.tokens.size - 1) // T
            if self.n_seq < 1:
                fail("%s: %d tokens hold no sequence of %d + 1" % (path, self.tokens.size, T))
            top = int(self.tokens.max())
            if top >= vocab:
                fail("%s: token id %d outside the model's vocabulary of %d" % (path, top, vocab))

    def batch(self):
        if self.tokens is None:
            return torch.randint(0, self.vocab, (self.B, self.T + 1), generator=self.gen,
                                 device=self.device)
        rows = []
        for _ in range(self.B):
            k = self.next_seq % self.n_seq
            self.next_seq += 1
            rows.append(np.asarray(self.tokens[k * self.T:k * self.T + self.T + 1], dtype=np.int64))
        return torch.from_numpy(np.stack(rows)).to(self.device)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), help="zerotrain preset to mirror")
    ap.add_argument("--model-config", help="zerotrain model_config JSON (or a run's config.json)")
    ap.add_argument("--seq-len", type=int, required=True)
    ap.add_argument("--micro-batch", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True, help="timed steps")
    ap.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first (compile)")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    ap.add_argument("--compile", default="auto", choices=("auto", "on", "off"),
                    help="torch.compile the model (auto: on for cuda, off for cpu)")
    ap.add_argument("--gqa", default="repeat", choices=("repeat", "native"),
                    help="grouped-query attention: expand k, v to every head, or SDPA's enable_gqa")
    ap.add_argument("--data", help="an llm.c .bin token shard (default: uniform random tokens)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--gemm-n", type=int, help="GEMM peak size (default 8192 cuda, 512 cpu)")
    ap.add_argument("--gemm-reps", type=int, default=20)
    ap.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--expect-params", type=int,
                    help="fail unless the model has exactly this many parameters")
    a = ap.parse_args()
    if (a.preset is None) == (a.model_config is None):
        fail("give exactly one of --preset and --model-config")
    if a.steps < 1 or a.warmup_steps < 0 or a.seq_len < 1 or a.micro_batch < 1:
        fail("--steps, --seq-len and --micro-batch must be >= 1 and --warmup-steps >= 0")
    c = model_config(a)
    if a.seq_len > c["max_seq"]:
        fail("--seq-len %d exceeds the model's max_seq %d" % (a.seq_len, c["max_seq"]))
    if a.threads:
        torch.set_num_threads(a.threads)

    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: torch %s sees no CUDA device" % torch.__version__)
    has_sdpa = hasattr(F, "scaled_dot_product_attention")
    has_compile = hasattr(torch, "compile")
    use_compile = a.compile == "on" or (a.compile == "auto" and device.type == "cuda")
    if use_compile and not has_compile:
        fail("torch %s has no torch.compile (use --compile off on cpu)" % torch.__version__)
    if device.type == "cuda" and not has_sdpa:
        fail("torch %s has no F.scaled_dot_product_attention" % torch.__version__)
    if a.gqa == "native" and not has_sdpa:
        fail("--gqa native needs F.scaled_dot_product_attention")
    try:
        import inspect
        has_fused = "fused" in inspect.signature(torch.optim.AdamW).parameters
    except (TypeError, ValueError):
        has_fused = False
    if device.type == "cuda" and not has_fused:
        fail("torch %s's AdamW has no fused=True" % torch.__version__)
    dtype = torch.bfloat16 if a.precision == "bf16" else torch.float32
    if device.type == "cuda":
        # fp32 matrix products stay fp32 (no TF32), as zerotrain's fp32 does.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    gemm_n = a.gemm_n or (8192 if device.type == "cuda" else 512)
    peak, gemm_s = measure_gemm_peak(device, dtype, gemm_n, a.gemm_reps)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    torch.manual_seed(a.seed)
    # On cuda the parameters are created and initialised on the device (torch >= 2.0's
    # device context), not on the host first.
    with device if device.type == "cuda" else contextlib.nullcontext():
        model = build_model(c, a.seq_len, has_sdpa, a.gqa)
    model.to(device)
    n_params = sum(p.numel() for p in model.parameters())  # a tied weight counts once
    if a.expect_params is not None and n_params != a.expect_params:
        fail("the model has %d parameters, zerotrain's %s has %d: not the same model"
             % (n_params, c["name"], a.expect_params))
    fpt, n_matmul = flops_per_token(c, n_params, a.seq_len)
    print("torch_train.py: %s (%s), %d parameters (%d in matrix products), %.4g FLOPs/token at "
          "T %d" % (c["name"], c["arch"], n_params, n_matmul, fpt, a.seq_len), file=sys.stderr)

    tables = {id(t) for t in model.embedding_tables()}
    decay = [p for p in model.parameters() if p.dim() == 2 and id(p) not in tables]
    no_decay = [p for p in model.parameters() if p.dim() != 2 or id(p) in tables]
    opt_kw = {"fused": True} if device.type == "cuda" else {}
    adamw = "fused" if device.type == "cuda" else "default (non-fused) for cpu"
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, **opt_kw)
    run_model = torch.compile(model) if use_compile else model
    params = list(model.parameters())
    data = TokenSource(a.data, c["vocab_size"], a.micro_batch, a.seq_len, device, a.seed)

    def precision_scope():
        if a.precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    step_s, losses = [], []
    for _ in range(a.warmup_steps + a.steps):
        batch = data.batch()
        x, y = batch[:, :-1], batch[:, 1:]
        sync(device)
        t0 = time.perf_counter()
        with precision_scope():
            loss = run_model(x, y)
        loss.backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, a.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        step_s.append(time.perf_counter() - t0)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            fail("step %d: loss is %s" % (len(losses), losses[-1]))

    tokens = a.micro_batch * a.seq_len
    timed = step_s[a.warmup_steps:]
    tps = statistics.median(tokens / t for t in timed)
    if device.type == "cuda":
        mem = {"peak_mem_bytes": torch.cuda.max_memory_allocated(),
               "peak_mem_reserved_bytes": torch.cuda.max_memory_reserved(),
               "peak_mem_source": "torch.cuda.max_memory_allocated over the whole run"}
        device_name = torch.cuda.get_device_name()
    else:
        mem = {"peak_mem_bytes": None, "peak_rss_bytes":
               resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
               "peak_mem_source": "cpu: no allocator statistics; peak_rss_bytes is the process's"}
        device_name = "cpu"
    print(json.dumps({
        "peer": "pytorch", "torch": torch.__version__, "device": device_name,
        "model": c["name"], "arch": c["arch"], "parameters": n_params,
        "seq_len": a.seq_len, "micro_batch": a.micro_batch, "tokens_per_step": tokens,
        "precision": "bf16 autocast, fp32 master" if a.precision == "bf16" else "fp32",
        "compile": use_compile,
        "attention": ("sdpa is_causal" + (", enable_gqa" if a.gqa == "native" else "")
                      if has_sdpa else "explicit masked softmax (no sdpa in this torch)"),
        "gqa": a.gqa, "adamw": adamw,
        "data": a.data or "uniform random tokens",
        "warmup_steps": a.warmup_steps, "steps_timed": len(timed),
        "tokens_per_s": tps, "step_s_median": statistics.median(timed), "step_s": step_s,
        **mem,
        "gemm_peak_flops": peak,
        "gemm": {"n": gemm_n, "dtype": a.precision, "reps": a.gemm_reps, "median_s": gemm_s,
                 "data": "random normal"},
        "flops_per_token": fpt,
        "flops_per_token_formula": "6*N_matmul + 12*n_layer*seq_len*d_model; N_matmul = %d "
                                   "(parameters less embedding lookup tables)" % n_matmul,
        "mfu": fpt * tps / peak,
        "first_loss": losses[0], "final_loss": losses[-1], "losses": losses,
    }))


if __name__ == "__main__":
    main()
