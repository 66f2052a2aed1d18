#!/usr/bin/python3
"""An independent PyTorch reading of a Hugging Face model folder (no transformers).

Usage: /usr/bin/python3 tests/hf/reference_model.py HF_DIR TOKENS_BIN BATCH OUT_BIN

HF_DIR holds config.json (LlamaConfig or GPT2Config fields) and model.safetensors.
TOKENS_BIN is int32 little-endian tokens of shape (BATCH, T). OUT_BIN receives
the logits (BATCH, T, vocab_size) as float32 little-endian.

The model is written from the Hugging Face definitions, not from zerotrain's
code, and reads the checkpoint the way transformers would:
  LLaMA (LlamaForCausalLM): RMSNorm, RoPE by rotate_half on the halves of each
    head with rope_theta (inv_freq and angles in float32, as HF computes them;
    rope_scaling of rope_type llama3 rescales inv_freq as Llama 3.1/3.2 do),
    grouped-query attention (kv head j serves query heads j*g .. j*g+g-1, HF's
    repeat_kv), SwiGLU MLP, lm_head or the tied embedding.
  GPT-2 (GPT2LMHeadModel): learned positions, LayerNorm, Conv1D weights stored
    (in, out) and applied as x @ W + b, tanh-approximated GELU (gelu_new),
    lm_head or the tied wte. Names with or without the "transformer." prefix.
Everything after loading runs in float64, so the reference's own rounding is
far below the fp32 engine's.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None}


def read_safetensors(path):
    """Returns {name: float64 torch tensor}. Parses the header with json."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        begin, end = e["data_offsets"]
        raw = data[begin:end]
        if e["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        elif e["dtype"] in DTYPES:
            arr = np.frombuffer(raw, dtype=np.dtype(DTYPES[e["dtype"]]).newbyteorder("<"))
        else:
            raise SystemExit("%s: tensor %s has dtype %s" % (path, name, e["dtype"]))
        out[name] = torch.from_numpy(arr.astype(np.float64).reshape(e["shape"]))
    return out


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def layer_norm(x, w, b, eps):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps)


def causal_attention(q, k, v):
    """q (B, NH, T, D), k and v (B, NH, T, D): softmax(q k^T / sqrt(D)) v, causal."""
    T, D = q.shape[2], q.shape[3]
    scores = q @ k.transpose(-1, -2) / math.sqrt(D)
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    scores = scores.masked_fill(mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def llama_logits(cfg, W, tokens):
    C = cfg["hidden_size"]
    NH = cfg["num_attention_heads"]
    NKV = cfg.get("num_key_value_heads", NH)
    D = C // NH
    L = cfg["num_hidden_layers"]
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = cfg.get("rope_theta", 10000.0)
    B, T = tokens.shape

    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    rs = cfg.get("rope_scaling")
    if rs is not None:
        # Llama 3.1/3.2 (transformers' _compute_llama3_parameters), in float32.
        if rs.get("rope_type", rs.get("type")) != "llama3":
            raise SystemExit("rope_scaling %r not supported" % (rs,))
        factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > old / low, inv_freq / factor, inv_freq)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < old / high) * ~(wavelen > old / low)
        inv_freq = torch.where(medium, smoothed, scaled)
    angles = torch.arange(T, dtype=torch.float32)[:, None] * inv_freq[None, :]  # (T, D/2) float32
    emb = torch.cat((angles, angles), dim=-1).double()
    cos, sin = emb.cos(), emb.sin()

    x = W["model.embed_tokens.weight"][tokens]
    for i in range(L):
        p = "model.layers.%d." % i
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(B, T, NH, D).transpose(1, 2)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(B, T, NKV, D).transpose(1, 2)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(B, T, NKV, D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(NH // NKV, dim=1)
        v = v.repeat_interleave(NH // NKV, dim=1)
        y = causal_attention(q, k, v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ W[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        gate = h @ W[p + "mlp.gate_proj.weight"].T
        up = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ W[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, W["model.norm.weight"], eps)
    tied = cfg.get("tie_word_embeddings", False)
    head = W["model.embed_tokens.weight"] if tied else W["lm_head.weight"]
    return x @ head.T


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def gpt2_logits(cfg, W, tokens):
    # Accept state dicts with and without the "transformer." prefix.
    W = {(k[len("transformer."):] if k.startswith("transformer.") else k): v for k, v in W.items()}
    C = cfg["n_embd"]
    NH = cfg["n_head"]
    D = C // NH
    L = cfg["n_layer"]
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    if cfg.get("activation_function", "gelu_new") != "gelu_new":
        raise SystemExit("activation_function %r not supported" % cfg["activation_function"])
    B, T = tokens.shape

    x = W["wte.weight"][tokens] + W["wpe.weight"][torch.arange(T)]
    for i in range(L):
        p = "h.%d." % i
        h = layer_norm(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"], eps)
        qkv = h @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]  # Conv1D: (C, 3C)
        q, k, v = (t.view(B, T, NH, D).transpose(1, 2) for t in qkv.split(C, dim=-1))
        y = causal_attention(q, k, v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        h = layer_norm(x, W[p + "ln_2.weight"], W[p + "ln_2.bias"], eps)
        h = gelu_new(h @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"])
        x = x + h @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
    x = layer_norm(x, W["ln_f.weight"], W["ln_f.bias"], eps)
    tied = cfg.get("tie_word_embeddings", True)
    head = W["wte.weight"] if tied else W["lm_head.weight"]
    return x @ head.T


def main(argv):
    if len(argv) != 5:
        raise SystemExit(__doc__)
    hf_dir, tokens_path, batch, out_path = argv[1], argv[2], int(argv[3]), argv[4]
    with open(os.path.join(hf_dir, "config.json")) as f:
        cfg = json.load(f)
    W = read_safetensors(os.path.join(hf_dir, "model.safetensors"))
    tokens = torch.from_numpy(np.fromfile(tokens_path, dtype="<i4").astype(np.int64))
    tokens = tokens.view(batch, -1)
    with torch.no_grad():
        if cfg["model_type"] == "llama":
            logits = llama_logits(cfg, W, tokens)
        elif cfg["model_type"] == "gpt2":
            logits = gpt2_logits(cfg, W, tokens)
        else:
            raise SystemExit("model_type %r not supported" % cfg["model_type"])
    logits.numpy().astype("<f4").tofile(out_path)


if __name__ == "__main__":
    main(sys.argv)
