// MLP activations: SwiGLU (LLaMA) and GELU, tanh approximation (GPT-2's gelu_new),
// and the element-wise add of the residual connections.
//
// The bf16 overloads store in bf16 and compute in fp32: each element is
// widened, the math done in fp32, the result rounded once on store.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace zt::cpu {

// gate_up (N, 2H): per row the H gate values then the H up values (the fused
// gate_proj/up_proj output). out (N, H) = silu(gate) * up.
void swiglu_forward(float* out, const float* gate_up, int64_t N, int H);
// dgate_up (N, 2H) +=
void swiglu_backward(float* dgate_up, const float* dout, const float* gate_up, int64_t N, int H);

// out (n) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
void gelu_forward(float* out, const float* inp, int64_t n);
// dinp (n) +=
void gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n);

// y (n) += x (n), for residual connections; bf16 adds in fp32 and rounds once.
void add_inplace(float* y, const float* x, int64_t n);
void add_inplace(bf16* y, const bf16* x, int64_t n);

// bf16 storage, fp32 arithmetic; same semantics as the float overloads.
void swiglu_forward(bf16* out, const bf16* gate_up, int64_t N, int H);
void swiglu_backward(bf16* dgate_up, const bf16* dout, const bf16* gate_up, int64_t N, int H);
void gelu_forward(bf16* out, const bf16* inp, int64_t n);
void gelu_backward(bf16* dinp, const bf16* dout, const bf16* inp, int64_t n);

// Double-precision twins of the above (same semantics), for finite-difference
// gradient checks.
void swiglu_forward(double* out, const double* gate_up, int64_t N, int H);
void swiglu_backward(double* dgate_up, const double* dout, const double* gate_up, int64_t N, int H);
void gelu_forward(double* out, const double* inp, int64_t n);
void gelu_backward(double* dinp, const double* dout, const double* inp, int64_t n);

}  // namespace zt::cpu
