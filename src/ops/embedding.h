// Token (and learned position) embedding, forward and backward.
// Token ids are validated by the data layer before they get here.
// The bf16 overloads store the tables and activations in bf16 and add in fp32,
// rounding once on store; the gradient tables are float or bf16.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace zt::cpu {

// out (B*T, C) = wte (V, C)[tokens (B*T)] + wpe (max_T, C)[t]; wpe may be null (LLaMA).
void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                       int T, int C);

// dwte (V, C) += scattered dout rows; dwpe (max_T, C) += dout summed over the batch.
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B,
                        int T, int C);

// bf16 tables and activations, fp32 sums. Backward sums each token's rows and
// each position's batch in fp32 and adds the sum to the gradient once (one
// rounding when it is bf16); deterministic, whatever the thread count.
void embedding_forward(bf16* out, const int32_t* tokens, const bf16* wte, const bf16* wpe, int B,
                       int T, int C);
void embedding_backward(float* dwte, float* dwpe, const bf16* dout, const int32_t* tokens, int B,
                        int T, int C);
void embedding_backward(bf16* dwte, bf16* dwpe, const bf16* dout, const int32_t* tokens, int B,
                        int T, int C);

// Double-precision twins of the above (same semantics), for finite-difference
// gradient checks.
void embedding_forward(double* out, const int32_t* tokens, const double* wte, const double* wpe,
                       int B, int T, int C);
void embedding_backward(double* dwte, double* dwpe, const double* dout, const int32_t* tokens,
                        int B, int T, int C);

}  // namespace zt::cpu
