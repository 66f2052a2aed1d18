// Causal self-attention with grouped-query heads (GQA), forward and backward.
//
// qkv (B, T, (NH + 2*NKV) * HD) is the fused projection output: per row the
// NH query heads, then NKV key heads, then NKV value heads. Query head h
// attends with key/value head h / (NH / NKV). Scores are scaled by 1/sqrt(HD);
// position t attends to positions <= t only.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace zt::cpu {

// out (B, T, NH * HD); att (B, NH, T, T) softmax probabilities, saved for
// backward, exactly zero above the diagonal.
void attention_forward(float* out, float* att, const float* qkv, int B, int T, int NH, int NKV,
                       int HD);

// dqkv (B, T, (NH + 2*NKV) * HD) += gradient w.r.t. qkv.
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, int B,
                        int T, int NH, int NKV, int HD);

// bf16-storage twins (same semantics): all arithmetic in fp32, rounded to bf16
// only on store. Forward: S = scale Q K^T in fp32, softmax in fp32, P stored
// in att rounded once to bf16, out = P V with that bf16 P (as the backward
// will see it). Backward: dQ rounded once per call; dK and dV summed over the
// query heads of their group in fp32, then added into dqkv with one rounding.
void attention_forward(bf16* out, bf16* att, const bf16* qkv, int B, int T, int NH, int NKV,
                       int HD);
void attention_backward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* att, int B,
                        int T, int NH, int NKV, int HD);

// KV-cached decoding: one query row of one head attends to the first len rows
// of its key/value head in the cache (the causal mask is len itself):
//   scores (len) = scale K (len, HD) @ q (HD), softmax(scores), out (HD) = V^T @ scores
// K and V point at the head's columns of the first cache row; cache rows are
// kv_stride floats apart. scores is caller scratch of len floats. Runs on the
// calling thread and never throws, so it may run inside an OpenMP region, one
// (row, head) per thread. The softmax is training's (causal_softmax_row), so
// decoding rounds as attention_forward does.
void attention_cached_row(float* out, const float* q, const float* K, const float* V, int len,
                          int HD, int kv_stride, float scale, float* scores);

// Double-precision twins of the above (same semantics), for finite-difference
// gradient checks.
void attention_forward(double* out, double* att, const double* qkv, int B, int T, int NH, int NKV,
                       int HD);
void attention_backward(double* dqkv, const double* dout, const double* qkv, const double* att,
                        int B, int T, int NH, int NKV, int HD);

}  // namespace zt::cpu
