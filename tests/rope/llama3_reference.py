#!/usr/bin/python3
"""PyTorch reference for Llama 3's RoPE frequency rescaling (rope_type "llama3").

Usage: /usr/bin/python3 tests/rope/llama3_reference.py CASES_JSON OUT_JSON

CASES_JSON: a list of {"head_dim", "rope_theta", "factor", "low_freq_factor",
"high_freq_factor", "original_max_position_embeddings", "positions"}.
OUT_JSON: one object per case: "inv_freq" (head_dim/2 float32 values, written
as exact decimals) and "cos", "sin" (one row of head_dim/2 values per entry of
"positions", from float32 angles as Hugging Face computes them).

Written from the published definition (Meta's llama3 reference
apply_scaling, as transformers' _compute_llama3_parameters states it), on
float32 tensors the way transformers evaluates it, not from zerotrain's code:
  inv_freq = 1 / theta^(arange(0, D, 2) / D)
  wavelen = 2 pi / inv_freq
  wavelen > L / low_freq_factor:   inv_freq / factor
  wavelen < L / high_freq_factor:  inv_freq
  otherwise:  (1 - s) inv_freq / factor + s inv_freq,
              s = (L / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
"""
import json
import math
import sys

import torch


def llama3_inv_freq(head_dim, theta, factor, low_freq_factor, high_freq_factor, old_context_len):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    out = []
    for c in cases:
        inv = llama3_inv_freq(c["head_dim"], c["rope_theta"], c["factor"], c["low_freq_factor"],
                              c["high_freq_factor"], c["original_max_position_embeddings"])
        assert inv.dtype == torch.float32
        t = torch.tensor(c["positions"], dtype=torch.float32)
        angles = t[:, None] * inv[None, :]  # float32, as Hugging Face's rotary embedding
        out.append({
            "inv_freq": [float(x) for x in inv.tolist()],
            "cos": angles.double().cos().tolist(),
            "sin": angles.double().sin().tolist(),
        })
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
