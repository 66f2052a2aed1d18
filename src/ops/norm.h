// RMSNorm (LLaMA) and LayerNorm (GPT-2), forward and backward.
//
// Forward saves the per-row statistics (rstd, and mean for LayerNorm) that
// backward needs, so backward never recomputes a reduction over the row.
//
// The bf16 overloads store activations and parameters in bf16 but compute in
// fp32 (each element is widened, the math done in fp32, the result rounded
// once on store); the saved statistics stay fp32. Parameter gradients are
// float or bf16: the row sums are fp32 and a bf16 gradient is rounded once.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace zt::cpu {

// out (N, C) = inp / sqrt(mean(inp^2) + eps) * weight (C); rstd (N) saved.
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N,
                     int C, float eps);
// dinp (N, C) +=, dweight (C) +=
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int64_t N, int C);

// out (N, C) = (inp - mean) * rstd * weight (C) + bias (C); mean (N), rstd (N) saved.
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int64_t N, int C, float eps);
// dinp (N, C) +=, dweight (C) +=, dbias (C) +=
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd,
                        int64_t N, int C);

// bf16 storage, fp32 arithmetic and statistics (mean, rstd); same semantics.
void rmsnorm_forward(bf16* out, float* rstd, const bf16* inp, const bf16* weight, int64_t N, int C,
                     float eps);
void rmsnorm_backward(bf16* dinp, float* dweight, const bf16* dout, const bf16* inp,
                      const bf16* weight, const float* rstd, int64_t N, int C);
void rmsnorm_backward(bf16* dinp, bf16* dweight, const bf16* dout, const bf16* inp,
                      const bf16* weight, const float* rstd, int64_t N, int C);
void layernorm_forward(bf16* out, float* mean, float* rstd, const bf16* inp, const bf16* weight,
                       const bf16* bias, int64_t N, int C, float eps);
void layernorm_backward(bf16* dinp, float* dweight, float* dbias, const bf16* dout, const bf16* inp,
                        const bf16* weight, const float* mean, const float* rstd, int64_t N, int C);
void layernorm_backward(bf16* dinp, bf16* dweight, bf16* dbias, const bf16* dout, const bf16* inp,
                        const bf16* weight, const float* mean, const float* rstd, int64_t N, int C);

// Double-precision twins of the above (same semantics), for finite-difference
// gradient checks.
void rmsnorm_forward(double* out, double* rstd, const double* inp, const double* weight, int64_t N,
                     int C, float eps);
void rmsnorm_backward(double* dinp, double* dweight, const double* dout, const double* inp,
                      const double* weight, const double* rstd, int64_t N, int C);
void layernorm_forward(double* out, double* mean, double* rstd, const double* inp,
                       const double* weight, const double* bias, int64_t N, int C, float eps);
void layernorm_backward(double* dinp, double* dweight, double* dbias, const double* dout,
                        const double* inp, const double* weight, const double* mean,
                        const double* rstd, int64_t N, int C);

}  // namespace zt::cpu
