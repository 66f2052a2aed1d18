// Token (and learned position) embedding on the GPU, forward and backward;
// same names and argument order as ops/embedding.h plus the stream.
// Token ids (device int32) are validated by the data layer before they get here.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace zt::cuda {

// out (B*T, C) = wte (V, C)[tokens (B*T)] + wpe (max_T, C)[t]; wpe may be null (LLaMA).
void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                       int T, int C, cudaStream_t stream);
void embedding_forward(__nv_bfloat16* out, const int32_t* tokens, const __nv_bfloat16* wte,
                       const __nv_bfloat16* wpe, int B, int T, int C, cudaStream_t stream);

// dwte (V, C) += scattered dout rows; dwpe (max_T, C) += dout summed over the
// batch. Either may be null. Deterministic (see embedding.cu).
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B,
                        int T, int C, cudaStream_t stream);
void embedding_backward(__nv_bfloat16* dwte, __nv_bfloat16* dwpe, const __nv_bfloat16* dout,
                        const int32_t* tokens, int B, int T, int C, cudaStream_t stream);

}  // namespace zt::cuda
