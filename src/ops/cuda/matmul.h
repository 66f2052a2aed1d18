// Matmul (linear layer) forward and backward on the GPU, same names and
// argument order as ops/matmul.h (zt::cpu) plus the stream.
//
// Weights are stored (OC, C), PyTorch's nn.Linear layout: out = inp @ W^T + b.
// All pointers are device pointers. Invariant shared by every backward in
// src/ops: gradients are ACCUMULATED (+=) into every d-pointer; a null
// d-pointer skips that product. bf16 overloads: bf16 storage, fp32 accumulate.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace zt::cuda {

// out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC); bias may be null.
// The bias rides in cuBLASLt's BIAS epilogue.
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N,
                    int C, int OC, cudaStream_t stream);
void matmul_forward(__nv_bfloat16* out, const __nv_bfloat16* inp, const __nv_bfloat16* weight,
                    const __nv_bfloat16* bias, int64_t N, int C, int OC, cudaStream_t stream);

// GPT-2's MLP up-projection fused with its activation (cuBLASLt GELU_AUX_BIAS):
// pre_gelu (N, OC) = inp @ weight^T + bias, out (N, OC) = gelu_tanh(pre_gelu).
// pre_gelu is what gelu_backward needs. OC must be a multiple of 8 (cuBLASLt's
// rule for the aux buffer's leading dimension); bias may be null.
void matmul_gelu_forward(float* out, float* pre_gelu, const float* inp, const float* weight,
                         const float* bias, int64_t N, int C, int OC, cudaStream_t stream);
void matmul_gelu_forward(__nv_bfloat16* out, __nv_bfloat16* pre_gelu, const __nv_bfloat16* inp,
                         const __nv_bfloat16* weight, const __nv_bfloat16* bias, int64_t N, int C,
                         int OC, cudaStream_t stream);

// dinp (N, C) += dout (N, OC) @ weight (OC, C)          (cuBLASLt, beta = 1)
// dweight (OC, C) += dout^T @ inp (N, C)                (cuBLASLt, beta = 1)
// dbias (OC) += column sums of dout                     (deterministic reduction kernel)
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int C, int OC, cudaStream_t stream);
// bf16 model with fp32 weight gradients (the CPU's mixed overload): dweight is
// bf16 x bf16 -> fp32 in cuBLASLt and dbias an fp32 column sum, neither rounded.
void matmul_backward(__nv_bfloat16* dinp, float* dweight, float* dbias, const __nv_bfloat16* dout,
                     const __nv_bfloat16* inp, const __nv_bfloat16* weight, int64_t N, int C,
                     int OC, cudaStream_t stream);
void matmul_backward(__nv_bfloat16* dinp, __nv_bfloat16* dweight, __nv_bfloat16* dbias,
                     const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                     const __nv_bfloat16* weight, int64_t N, int C, int OC, cudaStream_t stream);

}  // namespace zt::cuda
