#!/usr/bin/env python3
"""Checks that bench/gpu/torch_train.py trains the golden reference's model:
its logits and loss, in float64 on CPU, against tests/golden/reference.py's
forward with the same parameters (taken by their Hugging Face names), for
test-tiny (LLaMA, GQA), test-tiny-gpt2 and a LLaMA with llama3 RoPE scaling
whose original context is short enough that all three frequency bands of the
rescaling occur. Each attention path this torch has is checked: the explicit
masked softmax, and F.scaled_dot_product_attention (repeat and enable_gqa)
where it exists.

Tolerance: max |logit difference| <= 1e-9 * max |logit|. Both sides compute
in float64 (unit roundoff 1.1e-16) from identical parameters and differ only
in operation order (fused attention, where the rotation is applied), so
their rounding differences stay some orders of magnitude below 1e-9; a wrong
formula (a mask off by one, a rotated half swapped, a misapplied band of the
RoPE rescaling) moves logits by more than 1e-3 of their scale.

Usage: /usr/bin/python3 bench/gpu/check_peer_model.py   (exit 0: all match)
"""
import importlib.util
import os
import sys

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tt = load("bench/gpu/torch_train.py", "torch_train")
ref = load("tests/golden/reference.py", "reference")
TOL = 1e-9


def reference_cfg(c):
    """reference.py's config keys for a torch_train model config."""
    return {"arch": c["arch"], "vocab_size": c["vocab_size"], "hidden_size": c["d_model"],
            "num_hidden_layers": c["n_layer"], "num_attention_heads": c["n_head"],
            "num_key_value_heads": c["n_kv_head"], "intermediate_size": c["d_ff"],
            "max_position_embeddings": c["max_seq"], "norm_eps": c["norm_eps"],
            "rope_theta": c.get("rope_theta", 10000.0), "rope_scaling": c.get("rope_scaling"),
            "tie_word_embeddings": c["tie_embeddings"]}


def check(label, c, use_sdpa, gqa, B=2, T=48):
    torch.manual_seed(0)
    model = tt.build_model(c, T, use_sdpa, gqa).double()
    if c["arch"] == "llama":  # the RoPE tables in float64 too, not float32 widened
        model.cos, model.sin = tt.rope_cos_sin(T, c["d_model"] // c["n_head"], c["rope_theta"],
                                               c["rope_scaling"], torch.float64)
    # Norm weights and biases away from 1 and 0, so a swapped or dropped one shows.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    P = {n: p.detach() for n, p in model.named_parameters()}
    if c["tie_embeddings"]:
        P.pop("lm_head.weight", None)
    idx = torch.randint(0, c["vocab_size"], (B, T + 1))
    x, y = idx[:, :-1], idx[:, 1:]
    with torch.no_grad():
        ours = model(x)
        our_loss = model(x, y)
        theirs = ref.forward(P, x, reference_cfg(c))
        their_loss = ref.loss_fn(theirs, y)
    err = (ours - theirs).abs().max().item() / theirs.abs().max().item()
    lerr = abs(our_loss.item() - their_loss.item()) / abs(their_loss.item())
    ok = err <= TOL and lerr <= TOL  # fails on NaN too
    print("%-44s logits max|diff|/max|logit| %.2e, loss rel diff %.2e  %s"
          % (label, err, lerr, "ok" if ok else "MISMATCH"))
    return ok


def main():
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    scaled = dict(tt.PRESETS["test-tiny"], rope_theta=500000.0,
                  rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    models = [("test-tiny", dict(tt.PRESETS["test-tiny"])),
              ("test-tiny-gpt2", dict(tt.PRESETS["test-tiny-gpt2"])),
              ("test-tiny + llama3 rope scaling", scaled)]
    paths = [("explicit", False, "repeat")]
    if hasattr(F, "scaled_dot_product_attention"):
        paths += [("sdpa", True, "repeat"), ("sdpa enable_gqa", True, "native")]
    else:
        print("this torch (%s) has no F.scaled_dot_product_attention: only the explicit "
              "attention path is checked" % torch.__version__)
    ok = True
    for name, c in models:
        c.setdefault("norm_eps", 1e-5)
        c.setdefault("rope_scaling", None)
        for pname, use_sdpa, gqa in paths:
            ok &= check("%s, %s" % (name, pname), c, use_sdpa, gqa)
    print("check_peer_model.py: %s" % ("all match" if ok else "MISMATCH"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
