// Token (and learned position) embedding, forward and backward.
// Token ids are validated by the data layer before they get here.
#pragma once

#include <cstdint>

namespace zt::cpu {

// out (B*T, C) = wte (V, C)[tokens (B*T)] + wpe (max_T, C)[t]; wpe may be null (LLaMA).
void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                       int T, int C);

// dwte (V, C) += scattered dout rows; dwpe (max_T, C) += dout summed over the batch.
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B,
                        int T, int C);

// Double-precision twins of the above (same semantics), for finite-difference
// gradient checks.
void embedding_forward(double* out, const int32_t* tokens, const double* wte, const double* wpe,
                       int B, int T, int C);
void embedding_backward(double* dwte, double* dwpe, const double* dout, const int32_t* tokens,
                        int B, int T, int C);

}  // namespace zt::cpu
