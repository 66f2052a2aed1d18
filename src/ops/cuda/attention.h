// Causal self-attention with grouped-query heads (GQA) on the GPU, forward and
// backward; same names and argument order as ops/attention.h plus the stream.
//
// qkv (B, T, (NH + 2*NKV) * HD) is the fused projection output: per row the NH
// query heads, then NKV key heads, then NKV value heads. Query head h attends
// with key/value head h / (NH / NKV). Scores are scaled by 1/sqrt(HD);
// position t attends to positions <= t only.
//
// This is the plain CUDA path: it materialises the (B, NH, T, T) probabilities
// exactly like the CPU op, which makes it the reference the GPU tests compare
// against and O(T^2) in memory. The cuDNN fused SDPA (flash) path is NOT
// implemented yet (see attention.cu's header for why); nothing here pretends
// to be flash attention.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace zt::cuda {

// out (B, T, NH * HD); att (B, NH, T, T) softmax probabilities, saved for
// backward, exactly zero above the diagonal.
void attention_forward(float* out, float* att, const float* qkv, int B, int T, int NH, int NKV,
                       int HD, cudaStream_t stream);
void attention_forward(__nv_bfloat16* out, __nv_bfloat16* att, const __nv_bfloat16* qkv, int B,
                       int T, int NH, int NKV, int HD, cudaStream_t stream);

// dqkv (B, T, (NH + 2*NKV) * HD) += gradient w.r.t. qkv.
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, int B,
                        int T, int NH, int NKV, int HD, cudaStream_t stream);
void attention_backward(__nv_bfloat16* dqkv, const __nv_bfloat16* dout, const __nv_bfloat16* qkv,
                        const __nv_bfloat16* att, int B, int T, int NH, int NKV, int HD,
                        cudaStream_t stream);

}  // namespace zt::cuda
