// Rotary position embedding on the GPU, Hugging Face's "rotate_half"
// convention; same names and argument order as ops/rope.h plus the stream.
// Within a head of size D, element i (< D/2) pairs with element i + D/2:
//   out[i]       = x[i] * cos(t w_i) - x[i + D/2] * sin(t w_i)
//   out[i + D/2] = x[i + D/2] * cos(t w_i) + x[i] * sin(t w_i),  w_i = theta^(-2i/D)
// Heads are read from rows of a packed buffer (row stride given), so RoPE
// applies to q and k inside the fused qkv output. The cos/sin tables are fp32
// for both element types.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace zt::cuda {

// cos, sin (T, head_dim/2), computed on the device with the CPU table's float
// arithmetic (angle = float(t) * float inv_freq, then cos/sin in double).
void rope_table(float* cos, float* sin, int T, int head_dim, float theta, cudaStream_t stream);

// For each (b, t) row of length row_stride: the first n_head * head_dim
// elements are rotated. out and inp share the layout and may alias.
void rope_forward(float* out, const float* inp, const float* cos, const float* sin, int B, int T,
                  int n_head, int head_dim, int64_t row_stride, cudaStream_t stream);
void rope_forward(__nv_bfloat16* out, const __nv_bfloat16* inp, const float* cos, const float* sin,
                  int B, int T, int n_head, int head_dim, int64_t row_stride, cudaStream_t stream);

// dinp += R(t)^T dout over the same heads; dinp and dout may not alias.
void rope_backward(float* dinp, const float* dout, const float* cos, const float* sin, int B, int T,
                   int n_head, int head_dim, int64_t row_stride, cudaStream_t stream);
void rope_backward(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const float* cos,
                   const float* sin, int B, int T, int n_head, int head_dim, int64_t row_stride,
                   cudaStream_t stream);

}  // namespace zt::cuda
