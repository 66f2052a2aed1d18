// RMSNorm (LLaMA) and LayerNorm (GPT-2), forward and backward, on the GPU;
// same names and argument order as ops/norm.h plus the stream.
//
// Forward saves the per-row statistics (rstd, and mean for LayerNorm) that
// backward reads instead of reducing over the row again. Statistics are fp32
// for both element types. Backward accumulates (+=) into every d-pointer; a
// null d-pointer skips that output.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace zt::cuda {

// out (N, C) = inp / sqrt(mean(inp^2) + eps) * weight (C); rstd (N) saved.
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N,
                     int C, float eps, cudaStream_t stream);
void rmsnorm_forward(__nv_bfloat16* out, float* rstd, const __nv_bfloat16* inp,
                     const __nv_bfloat16* weight, int64_t N, int C, float eps, cudaStream_t stream);
// dinp (N, C) +=, dweight (C) +=
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int64_t N, int C,
                      cudaStream_t stream);
void rmsnorm_backward(__nv_bfloat16* dinp, __nv_bfloat16* dweight, const __nv_bfloat16* dout,
                      const __nv_bfloat16* inp, const __nv_bfloat16* weight, const float* rstd,
                      int64_t N, int C, cudaStream_t stream);

// out (N, C) = (inp - mean) * rstd * weight (C) + bias (C); mean (N), rstd (N) saved.
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int64_t N, int C, float eps, cudaStream_t stream);
void layernorm_forward(__nv_bfloat16* out, float* mean, float* rstd, const __nv_bfloat16* inp,
                       const __nv_bfloat16* weight, const __nv_bfloat16* bias, int64_t N, int C,
                       float eps, cudaStream_t stream);
// dinp (N, C) +=, dweight (C) +=, dbias (C) +=
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd,
                        int64_t N, int C, cudaStream_t stream);
void layernorm_backward(__nv_bfloat16* dinp, __nv_bfloat16* dweight, __nv_bfloat16* dbias,
                        const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                        const __nv_bfloat16* weight, const float* mean, const float* rstd,
                        int64_t N, int C, cudaStream_t stream);

}  // namespace zt::cuda
