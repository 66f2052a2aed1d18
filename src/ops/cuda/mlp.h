// MLP activations on the GPU: SwiGLU (LLaMA) and GELU, tanh approximation
// (GPT-2's gelu_new); same names and argument order as ops/mlp.h plus the
// stream. Backward accumulates (+=) into its input gradient.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace zt::cuda {

// gate_up (N, 2H): per row the H gate values then the H up values.
// out (N, H) = silu(gate) * up.
void swiglu_forward(float* out, const float* gate_up, int64_t N, int H, cudaStream_t stream);
void swiglu_forward(__nv_bfloat16* out, const __nv_bfloat16* gate_up, int64_t N, int H,
                    cudaStream_t stream);
// dgate_up (N, 2H) +=
void swiglu_backward(float* dgate_up, const float* dout, const float* gate_up, int64_t N, int H,
                     cudaStream_t stream);
void swiglu_backward(__nv_bfloat16* dgate_up, const __nv_bfloat16* dout,
                     const __nv_bfloat16* gate_up, int64_t N, int H, cudaStream_t stream);

// out (n) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
void gelu_forward(float* out, const float* inp, int64_t n, cudaStream_t stream);
void gelu_forward(__nv_bfloat16* out, const __nv_bfloat16* inp, int64_t n, cudaStream_t stream);
// dinp (n) +=
void gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n,
                   cudaStream_t stream);
void gelu_backward(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                   int64_t n, cudaStream_t stream);

}  // namespace zt::cuda
