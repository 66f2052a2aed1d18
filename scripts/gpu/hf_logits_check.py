#!/usr/bin/env python3
"""Checks a zerotrain Hugging Face export (`zerotrain export --format hf`)
by running the same tokens through three readings of its weights:

  transformers  AutoModelForCausalLM.from_pretrained(HF_DIR) in float32
                (attn_implementation "eager", TF32 off on cuda), on --device
  independent   tests/hf/reference_model.py: the HF format read with plain
                torch from model.safetensors, computed in float64 (no
                transformers)
  zerotrain     `zerotrain eval --hf HF_DIR` (zerotrain's own fp32 forward),
                when --zerotrain is given: it reports the mean cross-entropy
                of the sequences, not logits (no zerotrain command writes
                logits), so it is compared as a loss
and, with --ours, a float32 logits file from another producer.

Tokens: a stream of B*T + 1 ids (--tokens: int32 little-endian; default
uniform random ids from --seed). Sequence k is stream[kT : kT+T+1], as
zerotrain reads a shard: rows stream[kT : kT+T] are the inputs, the next T
ids the targets. The stream is written as a one-shard llm.c file for
`zerotrain eval --split train` (which evaluates the shard's sequences in
order) and, with --write-tokens, as int32 for a producer of --ours.
--ours FILE: float32 little-endian logits (B, T, vocab_size) of those rows.

Tolerances (stated, not tuned):
  logits: max |a - b| <= TOL * max |b|, TOL = 1e-4 by default. fp32 carries
    a unit roundoff of 6e-8; through L layers of length-C dot products
    (C <= 8192 here) the accumulated relative error of an fp32 forward stays
    near 1e-5 of the logit scale, while a wrong tensor layout, name, norm
    epsilon or RoPE variant moves logits by 1e-2 of their scale or more.
  loss: |a - b| <= 2 * TOL * max |logit|: a perturbation of every logit by at
    most d changes each log-softmax value, so the mean cross-entropy, by at
    most 2 d.
Comparisons fail on NaN (written as !(err <= tol)).

Without transformers (Debian's python3 has none) the script stops with an
error, unless --allow-no-transformers: then the independent reading is the
reference for the other comparisons and the last line says that the
transformers load was not checked.

Usage:
  python3 scripts/gpu/hf_logits_check.py HF_DIR [--zerotrain build/zerotrain]
      [--batch 2] [--seq-len 64] [--seed 1] [--tokens STREAM.i32] [--ours LOGITS.f32]
      [--write-tokens STREAM.i32] [--device cpu|cuda] [--tol 1e-4] [--allow-no-transformers]
Exit status: 0 all comparisons within tolerance, 1 a mismatch or an error.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fail(msg):
    sys.stderr.write("hf_logits_check.py: error: %s\n" % msg)
    sys.exit(1)


def load_independent():
    path = os.path.join(ROOT, "tests", "hf", "reference_model.py")
    spec = importlib.util.spec_from_file_location("reference_model", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def token_stream(a, vocab):
    n = a.batch * a.seq_len + 1
    if a.tokens:
        s = np.fromfile(a.tokens, dtype="<i4").astype(np.int64)
        if s.size != n:
            fail("%s holds %d int32 tokens, expected batch x seq-len + 1 = %d"
                 % (a.tokens, s.size, n))
    else:
        s = np.random.default_rng(a.seed).integers(0, vocab, n)
    if s.min() < 0 or s.max() >= vocab:
        fail("token ids span [%d, %d], outside the vocabulary of %d" % (s.min(), s.max(), vocab))
    return s


def write_shard(path, stream):
    """An llm.c shard: 256 int32 header, then uint16 (magic 20240520) or uint32 (20240801) ids."""
    wide = stream.max() >= 1 << 16
    header = np.zeros(256, dtype="<i4")
    header[0], header[1], header[2] = (20240801, 7, stream.size) if wide else (20240520, 1,
                                                                               stream.size)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(stream.astype("<u4" if wide else "<u2").tobytes())


def transformers_logits(hf_dir, x, device):
    import transformers
    from transformers import AutoModelForCausalLM
    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    # transformers 4.56 renamed torch_dtype to dtype; 5.x warns on the old name.
    dtype_kw = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    model = AutoModelForCausalLM.from_pretrained(hf_dir, attn_implementation="eager",
                                                 **{dtype_kw: torch.float32})
    model.to(device).eval()
    with torch.no_grad():
        out = model(input_ids=x.to(device), use_cache=False)
    return out.logits.to("cpu", torch.float64), "transformers %s" % transformers.__version__


def zerotrain_loss(binary, hf_dir, stream, B, T):
    with tempfile.TemporaryDirectory() as tmp:
        shard = os.path.join(tmp, "check_train.bin")
        write_shard(shard, stream)
        cmd = [binary, "eval", "--hf", hf_dir, "--data", shard, "--split", "train",
               "--seq-len", str(T), "--micro-batch", str(B), "--eval-tokens", "0", "--json"]
        p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        fail("%s failed (exit %d): %s" % (" ".join(cmd), p.returncode,
                                          (p.stderr or p.stdout).strip()))
    line = json.loads(p.stdout.strip().splitlines()[-1])
    if line.get("tokens") != B * T:
        fail("zerotrain eval covered %s tokens, expected %d" % (line.get("tokens"), B * T))
    return float(line["loss"])


def mean_xent(logits, y):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).item()


def main():
    ap = argparse.ArgumentParser(description="compare a zerotrain HF export's logits")
    ap.add_argument("hf_dir")
    ap.add_argument("--zerotrain", help="zerotrain binary: also compare `zerotrain eval --hf`")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tokens", help="int32 stream of batch x seq-len + 1 token ids")
    ap.add_argument("--write-tokens", help="write the token stream used here (int32)")
    ap.add_argument("--ours", help="float32 (batch, seq-len, vocab) logits to compare too")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--allow-no-transformers", action="store_true")
    a = ap.parse_args()
    cfg_path = os.path.join(a.hf_dir, "config.json")
    if not os.path.isfile(cfg_path) or not os.path.isfile(os.path.join(a.hf_dir,
                                                                       "model.safetensors")):
        fail("%s: expected config.json and model.safetensors (zerotrain export --format hf)"
             % a.hf_dir)
    with open(cfg_path) as f:
        cfg = json.load(f)
    V = int(cfg["vocab_size"])
    B, T = a.batch, a.seq_len
    if B < 1 or T < 1:
        fail("--batch and --seq-len must be >= 1")
    if a.device == "cuda":
        if not torch.cuda.is_available():
            fail("--device cuda: torch %s sees no CUDA device" % torch.__version__)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(min(4, os.cpu_count() or 1))

    stream = token_stream(a, V)
    if a.write_tokens:
        stream.astype("<i4").tofile(a.write_tokens)
    seqs = np.stack([stream[k * T:k * T + T + 1] for k in range(B)])
    x, y = torch.from_numpy(seqs[:, :-1].copy()), torch.from_numpy(seqs[:, 1:].copy())

    ind = load_independent()
    W = ind.read_safetensors(os.path.join(a.hf_dir, "model.safetensors"))
    with torch.no_grad():
        if cfg.get("model_type") == "llama":
            independent = ind.llama_logits(cfg, W, x)
        elif cfg.get("model_type") == "gpt2":
            independent = ind.gpt2_logits(cfg, W, x)
        else:
            fail("model_type %r: expected llama or gpt2" % (cfg.get("model_type"),))
    del W

    logits = {"independent (float64)": independent}
    reference = "independent (float64)"
    hf_checked = False
    try:
        import transformers  # noqa: F401
        have_transformers = True
    except ImportError:
        have_transformers = False
    if have_transformers:
        t, label = transformers_logits(a.hf_dir, x, a.device)
        if tuple(t.shape) != (B, T, V):
            fail("transformers returned logits of shape %s, expected %s"
                 % (tuple(t.shape), (B, T, V)))
        reference = "%s (float32, %s)" % (label, a.device)
        logits[reference] = t
        hf_checked = True
    elif not a.allow_no_transformers:
        fail("this python (%s) cannot import transformers; run it where transformers is "
             "installed, or pass --allow-no-transformers to check against the independent "
             "reading only" % sys.executable)
    if a.ours:
        ours = np.fromfile(a.ours, dtype="<f4")
        if ours.size != B * T * V:
            fail("%s holds %d floats, expected batch x seq-len x vocab = %d"
                 % (a.ours, ours.size, B * T * V))
        logits["ours (%s)" % os.path.basename(a.ours)] = torch.from_numpy(
            ours.reshape(B, T, V).astype(np.float64))

    ref = logits[reference]
    scale = ref.abs().max().item()
    ok = True
    print("hf_logits_check.py: %s (%s), tokens (%d, %d), reference %s, max |logit| %.4g"
          % (a.hf_dir, cfg.get("model_type"), B, T, reference, scale))
    print("%-42s %14s %10s %12s  %s" % ("logits vs reference", "max|diff|", "relative",
                                         "tolerance", "verdict"))
    for name, l in logits.items():
        if name == reference:
            continue
        d = (l - ref).abs().max().item()
        good = d / scale <= a.tol
        ok &= good
        print("%-42s %14.4g %10.3g %12.3g  %s" % (name, d, d / scale, a.tol,
                                                  "ok" if good else "MISMATCH"))
    ref_loss = mean_xent(ref, y)
    loss_tol = 2 * a.tol * scale
    print("%-42s %14s %10s %12s  %s" % ("mean cross-entropy", "loss", "|diff|", "tolerance",
                                         "verdict"))
    print("%-42s %14.8f" % (reference, ref_loss))
    losses = {n: mean_xent(l, y) for n, l in logits.items() if n != reference}
    if a.zerotrain:
        losses["zerotrain eval --hf (fp32)"] = zerotrain_loss(a.zerotrain, a.hf_dir, stream, B, T)
    for name, v in losses.items():
        d = abs(v - ref_loss)
        good = d <= loss_tol
        ok &= good
        print("%-42s %14.8f %10.3g %12.3g  %s" % (name, v, d, loss_tol,
                                                  "ok" if good else "MISMATCH"))
    if not hf_checked:
        print("hf_logits_check.py: transformers is not importable here: the transformers load "
              "was NOT checked, only the readings above")
    print("hf_logits_check.py: %s" % ("FAIL" if not ok else "PASS" if hf_checked
                                      else "PASS (without transformers)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
