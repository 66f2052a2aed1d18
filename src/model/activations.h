// Activation memory of the model's forward/backward, as a number: what a Model
// of this config would allocate for micro-batches of B sequences of T tokens,
// without building one (the memory estimate, zero/estimate.cpp).
//
// Declared apart from model.h so a layer that may see the model's configs and
// unit layout but not its forward/backward (zero) can size activations.
// Invariant: equals Model(cfg, B, T, ledger, dtype).activation_bytes() exactly;
// both are computed from the one plan of activations in model.cpp.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "model/config.h"

namespace zt {

// Bytes of saved activations and gradient scratch, in dtype storage (f32 or bf16).
int64_t activation_bytes_for(const ModelConfig& cfg, int B, int T, DType dtype = DType::f32);

}  // namespace zt
