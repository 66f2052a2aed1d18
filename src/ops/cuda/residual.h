// The two ops the model needs beside the op families: the residual add and
// the fp32 logits of a bf16 model. The CPU twins are add_inplace (ops/mlp.h)
// and the mixed matmul_forward (ops/matmul.h), with the same argument order.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace zt::cuda {

// y (n) += x (n), each element rounded once to the storage type.
void add_inplace(float* y, const float* x, int64_t n, cudaStream_t stream);
void add_inplace(__nv_bfloat16* y, const __nv_bfloat16* x, int64_t n, cudaStream_t stream);

// out (N, OC) fp32 = inp (N, C) @ weight (OC, C)^T + bias (OC), bf16 operands
// accumulated in fp32: the logits the loss and generation read in fp32.
void matmul_forward(float* out, const __nv_bfloat16* inp, const __nv_bfloat16* weight,
                    const __nv_bfloat16* bias, int64_t N, int C, int OC, cudaStream_t stream);

}  // namespace zt::cuda
