// Activation memory of the model's forward/backward, as a number: what a Model
// of this config would allocate for micro-batches of B sequences of T tokens,
// without building one (the memory estimate, zero/estimate.cpp); and the
// activation recompute modes that decide what is kept.
//
// Declared apart from model.h so a layer that may see the model's configs and
// unit layout but not its forward/backward (zero) can size activations.
// Invariant: equals Model(cfg, B, T, ledger, dtype, recompute).activation_bytes()
// exactly; both are computed from the one plan of activations in model.cpp.
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "core/tensor.h"
#include "model/config.h"

namespace zt {

// What the forward keeps for the backward, traded against recomputation. In
// every mode gradients and losses are bit-identical to none's: the backward
// recomputes with the same deterministic ops on the same inputs.
enum class Recompute {
    none,  // every block keeps all its activations
    attn,  // blocks share one (B, NH, T, T) buffer of attention probabilities;
           // each block's are recomputed from its saved qkv before its backward
    full,  // blocks keep only their input (the residual stream) and share one set
           // of activations; each block's forward is rerun before its backward
};

// "none", "attn" or "full"; anything else is refused with a message naming
// the value and the valid ones.
Recompute parse_recompute(const std::string& name);
const char* recompute_name(Recompute r);

// Bytes of saved activations and gradient scratch, in dtype storage (f32 or
// bf16), on `device` (the GPU's classifier holds more rows of logits at once).
int64_t activation_bytes_for(const ModelConfig& cfg, int B, int T, DType dtype = DType::f32,
                             Recompute recompute = Recompute::none, Device device = Device::cpu);

}  // namespace zt
