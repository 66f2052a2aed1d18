#!/usr/bin/python3
"""PyTorch reference for zerotrain's golden tests.

Usage: /usr/bin/python3 tests/golden/reference.py IN_DIR OUT_DIR

(Debian's torch is only importable from /usr/bin/python3.)

IN_DIR (written by the C++ test) must contain:
  config.json   model/training config (see REQUIRED_KEYS below; "dtype" optional,
                "float64" (default) or "float32"; "autocast" optional, default
                false: true runs every forward and loss under
                torch.autocast("cpu", dtype=torch.bfloat16) with float32
                params, grads and AdamW state (PyTorch's mixed precision;
                needs "dtype" "float32", its default when autocast is on))
  params.json   list of {"name", "shape", "offset" (in floats), "decay"}
  params.bin    float32 little-endian parameters at those offsets
  tokens.bin    int32 little-endian tokens, shape (batch, seq_len + 1)

OUT_DIR receives (all float32 little-endian raw):
  logits.bin    (B, T, V) logits of the initial params
  loss.bin      1 float: mean cross-entropy over all B*T positions
  grads.bin     gradient of that loss, in exactly the params.bin layout
  losses.bin    S floats: loss before each of `steps` AdamW updates
                (grad clipping by global norm first when grad_clip > 0)

Model math: Hugging Face tensor names, every weight matrix stored as
(out_features, in_features), y = x @ W^T + b (GPT-2 included, no Conv1D
transpose).
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

REQUIRED_KEYS = [
    "arch", "vocab_size", "hidden_size", "num_hidden_layers",
    "num_attention_heads", "intermediate_size", "max_position_embeddings",
    "norm_eps", "tie_word_embeddings", "batch", "seq_len", "steps", "lr",
    "beta1", "beta2", "adam_eps", "weight_decay", "grad_clip",
]


class InputError(Exception):
    pass


# ----------------------------------------------------------------------------
# Input loading / validation

def _read_json(path):
    if not os.path.isfile(path):
        raise InputError("missing file: %s" % path)
    try:
        with open(path, "r") as f:
            return json.load(f)
    except ValueError as e:
        raise InputError("invalid JSON in %s: %s" % (path, e))


def load_config(in_dir):
    cfg = _read_json(os.path.join(in_dir, "config.json"))
    if not isinstance(cfg, dict):
        raise InputError("config.json: expected a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    if missing:
        raise InputError("config.json: missing keys: %s" % ", ".join(missing))
    arch = cfg["arch"]
    if arch not in ("llama", "gpt2"):
        raise InputError("config.json: arch must be 'llama' or 'gpt2', got %r" % (arch,))
    if arch == "llama":
        for k in ("rope_theta",):
            if k not in cfg:
                raise InputError("config.json: missing key %s (required for llama)" % k)
        rs = cfg.get("rope_scaling")
        if rs is not None and rs.get("rope_type") != "llama3":
            raise InputError("config.json: rope_scaling must be null or rope_type llama3, got %r" % (rs,))
    cfg.setdefault("num_key_value_heads", cfg["num_attention_heads"])
    if arch == "gpt2" and cfg["num_key_value_heads"] != cfg["num_attention_heads"]:
        raise InputError("config.json: gpt2 requires num_key_value_heads == num_attention_heads")
    autocast = cfg.get("autocast", False)
    if not isinstance(autocast, bool):
        raise InputError("config.json: autocast must be true or false, got %r" % (autocast,))
    cfg["autocast"] = autocast
    dtype = cfg.get("dtype", "float32" if autocast else "float64")
    if dtype not in ("float64", "float32"):
        raise InputError("config.json: dtype must be 'float64' or 'float32', got %r" % (dtype,))
    if autocast and dtype != "float32":
        # CPU autocast leaves float64 tensors alone: the run would not be mixed precision.
        raise InputError("config.json: autocast needs dtype 'float32' (the master params), got %r"
                         % (dtype,))
    cfg["dtype"] = dtype
    C, NH, NKV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "intermediate_size", "batch", "seq_len"):
        if not isinstance(cfg[k], int) or cfg[k] <= 0:
            raise InputError("config.json: %s must be a positive integer, got %r" % (k, cfg[k]))
    if not isinstance(cfg["steps"], int) or cfg["steps"] < 0:
        raise InputError("config.json: steps must be a non-negative integer, got %r" % (cfg["steps"],))
    if C % NH != 0:
        raise InputError("config.json: hidden_size %d not divisible by num_attention_heads %d" % (C, NH))
    if NH % NKV != 0:
        raise InputError("config.json: num_attention_heads %d not divisible by num_key_value_heads %d" % (NH, NKV))
    if arch == "llama" and (C // NH) % 2 != 0:
        raise InputError("config.json: head dim %d must be even for RoPE" % (C // NH))
    if cfg["seq_len"] > cfg["max_position_embeddings"]:
        raise InputError("config.json: seq_len %d > max_position_embeddings %d"
                         % (cfg["seq_len"], cfg["max_position_embeddings"]))
    return cfg


def expected_shapes(cfg):
    """Ordered dict name -> (shape, default decay) of the parameters the model needs."""
    V, C, L = cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"]
    NH, NKV, H = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["intermediate_size"]
    D = C // NH
    tie = bool(cfg["tie_word_embeddings"])
    shapes = {}
    if cfg["arch"] == "llama":
        shapes["model.embed_tokens.weight"] = [V, C]
        for i in range(L):
            p = "model.layers.%d." % i
            shapes[p + "input_layernorm.weight"] = [C]
            shapes[p + "self_attn.q_proj.weight"] = [NH * D, C]
            shapes[p + "self_attn.k_proj.weight"] = [NKV * D, C]
            shapes[p + "self_attn.v_proj.weight"] = [NKV * D, C]
            shapes[p + "self_attn.o_proj.weight"] = [C, NH * D]
            shapes[p + "post_attention_layernorm.weight"] = [C]
            shapes[p + "mlp.gate_proj.weight"] = [H, C]
            shapes[p + "mlp.up_proj.weight"] = [H, C]
            shapes[p + "mlp.down_proj.weight"] = [C, H]
        shapes["model.norm.weight"] = [C]
    else:
        shapes["transformer.wte.weight"] = [V, C]
        shapes["transformer.wpe.weight"] = [cfg["max_position_embeddings"], C]
        for i in range(L):
            p = "transformer.h.%d." % i
            shapes[p + "ln_1.weight"] = [C]
            shapes[p + "ln_1.bias"] = [C]
            shapes[p + "attn.c_attn.weight"] = [3 * C, C]
            shapes[p + "attn.c_attn.bias"] = [3 * C]
            shapes[p + "attn.c_proj.weight"] = [C, C]
            shapes[p + "attn.c_proj.bias"] = [C]
            shapes[p + "ln_2.weight"] = [C]
            shapes[p + "ln_2.bias"] = [C]
            shapes[p + "mlp.c_fc.weight"] = [H, C]
            shapes[p + "mlp.c_fc.bias"] = [H]
            shapes[p + "mlp.c_proj.weight"] = [C, H]
            shapes[p + "mlp.c_proj.bias"] = [C]
        shapes["transformer.ln_f.weight"] = [C]
        shapes["transformer.ln_f.bias"] = [C]
    if not tie:
        shapes["lm_head.weight"] = [V, C]
    return shapes


def load_params(in_dir, cfg):
    """Returns (meta list, dict name -> float32 numpy array, total float count)."""
    meta = _read_json(os.path.join(in_dir, "params.json"))
    if not isinstance(meta, list):
        raise InputError("params.json: expected a JSON list")
    bin_path = os.path.join(in_dir, "params.bin")
    if not os.path.isfile(bin_path):
        raise InputError("missing file: %s" % bin_path)
    nbytes = os.path.getsize(bin_path)
    if nbytes % 4 != 0:
        raise InputError("params.bin: size %d is not a multiple of 4" % nbytes)
    flat = np.fromfile(bin_path, dtype="<f4")
    n_total = flat.size

    expected = expected_shapes(cfg)
    seen = {}
    for idx, e in enumerate(meta):
        if not isinstance(e, dict):
            raise InputError("params.json[%d]: expected an object" % idx)
        for k in ("name", "shape", "offset", "decay"):
            if k not in e:
                raise InputError("params.json[%d]: missing key %r" % (idx, k))
        name, shape, off = e["name"], list(e["shape"]), e["offset"]
        if name in seen:
            raise InputError("params.json: duplicate parameter %s" % name)
        if name not in expected:
            raise InputError("params.json: unexpected parameter %s for arch=%s tie_word_embeddings=%s"
                             % (name, cfg["arch"], cfg["tie_word_embeddings"]))
        if shape != expected[name]:
            raise InputError("params.json: %s has shape %s, expected %s" % (name, shape, expected[name]))
        numel = int(np.prod(shape)) if shape else 1
        if not isinstance(off, int) or off < 0 or off + numel > n_total:
            raise InputError("params.json: %s offset %r + %d floats exceeds params.bin (%d floats)"
                             % (name, off, numel, n_total))
        seen[name] = flat[off:off + numel].reshape(shape).copy()
    absent = [n for n in expected if n not in seen]
    if absent:
        raise InputError("params.json: missing parameters: %s" % ", ".join(absent))
    # Overlap check (the layout must be a set of disjoint ranges for grads.bin).
    ranges = sorted((e["offset"], e["offset"] + int(np.prod(e["shape"]) if e["shape"] else 1), e["name"])
                    for e in meta)
    for (a0, a1, an), (b0, b1, bn) in zip(ranges, ranges[1:]):
        if b0 < a1:
            raise InputError("params.json: %s and %s overlap in params.bin" % (an, bn))
    for n, a in seen.items():
        if not np.all(np.isfinite(a)):
            raise InputError("params.bin: non-finite values in %s" % n)
    return meta, seen, n_total


def load_tokens(in_dir, cfg):
    path = os.path.join(in_dir, "tokens.bin")
    if not os.path.isfile(path):
        raise InputError("missing file: %s" % path)
    B, T, V = cfg["batch"], cfg["seq_len"], cfg["vocab_size"]
    want = B * (T + 1) * 4
    got = os.path.getsize(path)
    if got != want:
        raise InputError("tokens.bin: size %d bytes, expected %d (int32 batch=%d x (seq_len+1)=%d)"
                         % (got, want, B, T + 1))
    tok = np.fromfile(path, dtype="<i4").reshape(B, T + 1)
    if tok.min() < 0 or tok.max() >= V:
        raise InputError("tokens.bin: token ids must be in [0, %d), got range [%d, %d]"
                         % (V, tok.min(), tok.max()))
    return torch.from_numpy(tok.astype(np.int64))


# ----------------------------------------------------------------------------
# Model building blocks (plain torch ops)

def linear(x, w, b=None):
    """y = x @ W^T + b, W stored (out_features, in_features)."""
    y = x @ w.t()
    if b is not None:
        y = y + b
    return y


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * w


def layer_norm(x, w, b, eps):
    mu = x.mean(dim=-1, keepdim=True)
    xc = x - mu
    var = xc.pow(2).mean(dim=-1, keepdim=True)  # biased variance
    return xc * torch.rsqrt(var + eps) * w + b


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def silu(x):
    return x * torch.sigmoid(x)


def llama3_scaled(inv_freq, rs):
    """Llama 3's rope_scaling (rope_type "llama3"), Meta's apply_scaling rule:
    wavelengths above L / low_freq_factor slow down by `factor`, those below
    L / high_freq_factor stay, those between blend smoothly."""
    L, low, high, factor = (float(rs["original_max_position_embeddings"]), float(rs["low_freq_factor"]),
                            float(rs["high_freq_factor"]), float(rs["factor"]))
    out = []
    for w in inv_freq.tolist():
        wavelen = 2 * math.pi / w
        if wavelen < L / high:
            out.append(w)
        elif wavelen > L / low:
            out.append(w / factor)
        else:
            s = (L / wavelen - low) / (high - low)
            out.append((1 - s) * w / factor + s * w)
    return torch.tensor(out, dtype=torch.float64)


def rope_cos_sin(T, D, theta, dtype, rope_scaling=None):
    # Computed in float64, then cast to the working dtype.
    inv_freq = theta ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)  # (D/2,)
    if rope_scaling is not None:
        inv_freq = llama3_scaled(inv_freq, rope_scaling)
    t = torch.arange(T, dtype=torch.float64)
    ang = torch.outer(t, inv_freq)                                          # (T, D/2)
    emb = torch.cat([ang, ang], dim=-1)                                     # (T, D)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def apply_rope(x, cos, sin):
    # x: (B, nheads, T, D); cos/sin: (T, D)
    return x * cos + rotate_half(x) * sin


def causal_attention(q, k, v):
    """q: (B, NH, T, D); k, v: (B, NKV, T, D). Query head h uses kv head h // (NH/NKV)."""
    B, NH, T, D = q.shape
    NKV = k.shape[1]
    group = NH // NKV
    if group > 1:
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))        # (B, NH, T, T)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    att = att.masked_fill(~mask, float("-inf"))
    att = torch.softmax(att, dim=-1)
    return att @ v                                                  # (B, NH, T, D)


def split_heads(x, n):
    B, T, _ = x.shape
    return x.view(B, T, n, -1).transpose(1, 2)


def merge_heads(x):
    B, n, T, D = x.shape
    return x.transpose(1, 2).reshape(B, T, n * D)


def llama_attention(x, P, p, cfg, cos, sin):
    NH, NKV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    q = split_heads(linear(x, P[p + "self_attn.q_proj.weight"]), NH)
    k = split_heads(linear(x, P[p + "self_attn.k_proj.weight"]), NKV)
    v = split_heads(linear(x, P[p + "self_attn.v_proj.weight"]), NKV)
    q = apply_rope(q, cos, sin)
    k = apply_rope(k, cos, sin)
    y = merge_heads(causal_attention(q, k, v))
    return linear(y, P[p + "self_attn.o_proj.weight"])


def llama_mlp(x, P, p):
    g = linear(x, P[p + "mlp.gate_proj.weight"])
    u = linear(x, P[p + "mlp.up_proj.weight"])
    return linear(silu(g) * u, P[p + "mlp.down_proj.weight"])


def llama_block(x, P, i, cfg, cos, sin):
    p = "model.layers.%d." % i
    eps = cfg["norm_eps"]
    x = x + llama_attention(rms_norm(x, P[p + "input_layernorm.weight"], eps), P, p, cfg, cos, sin)
    x = x + llama_mlp(rms_norm(x, P[p + "post_attention_layernorm.weight"], eps), P, p)
    return x


def llama_forward(P, inputs, cfg):
    B, T = inputs.shape
    D = cfg["hidden_size"] // cfg["num_attention_heads"]
    wte = P["model.embed_tokens.weight"]
    cos, sin = rope_cos_sin(T, D, float(cfg["rope_theta"]), wte.dtype, cfg.get("rope_scaling"))
    x = wte[inputs]
    for i in range(cfg["num_hidden_layers"]):
        x = llama_block(x, P, i, cfg, cos, sin)
    x = rms_norm(x, P["model.norm.weight"], cfg["norm_eps"])
    head = wte if cfg["tie_word_embeddings"] else P["lm_head.weight"]
    return linear(x, head)


def gpt2_attention(x, P, p, cfg):
    C, NH = cfg["hidden_size"], cfg["num_attention_heads"]
    qkv = linear(x, P[p + "attn.c_attn.weight"], P[p + "attn.c_attn.bias"])
    q, k, v = qkv.split(C, dim=-1)
    y = causal_attention(split_heads(q, NH), split_heads(k, NH), split_heads(v, NH))
    return linear(merge_heads(y), P[p + "attn.c_proj.weight"], P[p + "attn.c_proj.bias"])


def gpt2_mlp(x, P, p):
    h = gelu_tanh(linear(x, P[p + "mlp.c_fc.weight"], P[p + "mlp.c_fc.bias"]))
    return linear(h, P[p + "mlp.c_proj.weight"], P[p + "mlp.c_proj.bias"])


def gpt2_block(x, P, i, cfg):
    p = "transformer.h.%d." % i
    eps = cfg["norm_eps"]
    x = x + gpt2_attention(layer_norm(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"], eps), P, p, cfg)
    x = x + gpt2_mlp(layer_norm(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"], eps), P, p)
    return x


def gpt2_forward(P, inputs, cfg):
    B, T = inputs.shape
    wte = P["transformer.wte.weight"]
    x = wte[inputs] + P["transformer.wpe.weight"][:T]
    for i in range(cfg["num_hidden_layers"]):
        x = gpt2_block(x, P, i, cfg)
    x = layer_norm(x, P["transformer.ln_f.weight"], P["transformer.ln_f.bias"], cfg["norm_eps"])
    head = wte if cfg["tie_word_embeddings"] else P["lm_head.weight"]
    return linear(x, head)


def forward(P, inputs, cfg):
    if cfg["arch"] == "llama":
        return llama_forward(P, inputs, cfg)
    return gpt2_forward(P, inputs, cfg)


def loss_fn(logits, targets):
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="mean")


def forward_loss(P, inputs, targets, cfg):
    """(logits, loss); under bf16 autocast when cfg["autocast"] (backward runs outside it)."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg["autocast"]):
        logits = forward(P, inputs, cfg)
        return logits, loss_fn(logits, targets)


# ----------------------------------------------------------------------------
# Driver

def make_params(arrays, dtype):
    return {n: torch.tensor(a, dtype=dtype).requires_grad_(True) for n, a in arrays.items()}


def write_f32(path, t):
    np.ascontiguousarray(t.detach().cpu().to(torch.float64).numpy().astype("<f4")).tofile(path)


def run(in_dir, out_dir):
    cfg = load_config(in_dir)
    meta, arrays, n_total = load_params(in_dir, cfg)
    tokens = load_tokens(in_dir, cfg)
    T = cfg["seq_len"]
    inputs, targets = tokens[:, :T], tokens[:, 1:]
    dtype = torch.float64 if cfg["dtype"] == "float64" else torch.float32
    os.makedirs(out_dir, exist_ok=True)

    # 1) logits, loss, grads at the initial params.
    P = make_params(arrays, dtype)
    logits, loss = forward_loss(P, inputs, targets, cfg)
    loss.backward()
    write_f32(os.path.join(out_dir, "logits.bin"), logits)
    write_f32(os.path.join(out_dir, "loss.bin"), loss.reshape(1))
    grads = np.zeros(n_total, dtype=np.float64)
    for e in meta:
        g = P[e["name"]].grad
        n = g.numel()
        grads[e["offset"]:e["offset"] + n] = g.detach().to(torch.float64).reshape(-1).numpy()
    grads.astype("<f4").tofile(os.path.join(out_dir, "grads.bin"))

    # 2) S AdamW steps on the same batch, from the initial params.
    P = make_params(arrays, dtype)
    decay = [P[e["name"]] for e in meta if e["decay"]]
    no_decay = [P[e["name"]] for e in meta if not e["decay"]]
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": float(cfg["weight_decay"])})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=float(cfg["lr"]),
                            betas=(float(cfg["beta1"]), float(cfg["beta2"])),
                            eps=float(cfg["adam_eps"]))
    all_params = [P[e["name"]] for e in meta]
    clip = float(cfg["grad_clip"])
    losses = []
    for _ in range(cfg["steps"]):
        opt.zero_grad(set_to_none=True)
        _, l = forward_loss(P, inputs, targets, cfg)
        l.backward()
        losses.append(l.item())
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(all_params, clip)
        opt.step()
    np.asarray(losses, dtype="<f4").tofile(os.path.join(out_dir, "losses.bin"))


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: /usr/bin/python3 %s IN_DIR OUT_DIR\n" % argv[0])
        return 2
    torch.set_num_threads(2)
    in_dir, out_dir = argv[1], argv[2]
    if not os.path.isdir(in_dir):
        sys.stderr.write("reference.py: error: IN_DIR %s is not a directory\n" % in_dir)
        return 1
    try:
        run(in_dir, out_dir)
    except InputError as e:
        sys.stderr.write("reference.py: error: %s\n" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
