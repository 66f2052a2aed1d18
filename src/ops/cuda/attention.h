// Causal self-attention with grouped-query heads (GQA) on the GPU, forward and
// backward; same names and argument order as ops/attention.h plus the stream.
//
// qkv (B, T, (NH + 2*NKV) * HD) is the fused projection output: per row the NH
// query heads, then NKV key heads, then NKV value heads. Query head h attends
// with key/value head h / (NH / NKV). Scores are scaled by 1/sqrt(HD);
// position t attends to positions <= t only.
//
// Two paths, chosen by the caller:
//   attention_forward / attention_backward (attention.cu): plain CUDA, one
//     block per score row with the row in shared memory; the readable
//     reference and the GPU tests' oracle. T is bounded by shared memory
//     (about 58K positions at head_dim 64 on an H100/H200).
//   attention_forward_cublas / attention_backward_cublas (attention_cublas.cu):
//     batched cuBLASLt GEMMs on tensor cores around fused causal-softmax
//     kernels; needs device scratch of attention_cublas_scratch_bytes().
// Both materialise the (B, NH, T, T) probabilities, saved for backward, so
// both are O(T^2) in memory; neither is flash attention.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>

#include "core/dtype.h"

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

// ---- tensor-core path (cuBLASLt) ----------------------------------------------

// Bytes of device scratch the cuBLAS path needs for this shape and element
// type (DType::f32 or DType::bf16); one buffer of this size serves both the
// forward and the backward call. About (2 NH + 2 NKV) T HD elements of
// permuted heads, the same again in fp32 for backward's gradients, plus one
// chunk of fp32 scores (and of bf16 dS): kv-head pairs are processed in
// chunks of about 512 MiB, at least one pair (NH / NKV) * T * T.
size_t attention_cublas_scratch_bytes(int B, int T, int NH, int NKV, int HD, DType dtype);

// Same semantics as attention_forward: out (B, T, NH * HD), att (B, NH, T, T)
// probabilities, exactly zero above the diagonal. scratch: scratch_bytes of
// device memory, >= attention_cublas_scratch_bytes, 16-byte aligned, used on
// `stream` only (contents need not survive between calls).
void attention_forward_cublas(float* out, float* att, const float* qkv, int B, int T, int NH,
                              int NKV, int HD, void* scratch, size_t scratch_bytes,
                              cudaStream_t stream);
void attention_forward_cublas(__nv_bfloat16* out, __nv_bfloat16* att, const __nv_bfloat16* qkv,
                              int B, int T, int NH, int NKV, int HD, void* scratch,
                              size_t scratch_bytes, cudaStream_t stream);

// Same semantics as attention_backward: dqkv (B, T, (NH + 2*NKV) * HD) += the
// gradient, from the att that attention_forward_cublas (or attention_forward)
// saved. bf16: dS is rounded once to bf16 for its two GEMMs; dQ, dK, dV are
// summed in fp32 and rounded once into dqkv.
void attention_backward_cublas(float* dqkv, const float* dout, const float* qkv, const float* att,
                               int B, int T, int NH, int NKV, int HD, void* scratch,
                               size_t scratch_bytes, cudaStream_t stream);
void attention_backward_cublas(__nv_bfloat16* dqkv, const __nv_bfloat16* dout,
                               const __nv_bfloat16* qkv, const __nv_bfloat16* att, int B, int T,
                               int NH, int NKV, int HD, void* scratch, size_t scratch_bytes,
                               cudaStream_t stream);

}  // namespace zt::cuda
