// Causal self-attention with grouped-query heads (GQA), forward and backward.
//
// qkv (B, T, (NH + 2*NKV) * HD) is the fused projection output: per row the
// NH query heads, then NKV key heads, then NKV value heads. Query head h
// attends with key/value head h / (NH / NKV). Scores are scaled by 1/sqrt(HD);
// position t attends to positions <= t only.
#pragma once

#include <cstdint>

namespace zt::cpu {

// out (B, T, NH * HD); att (B, NH, T, T) softmax probabilities, saved for
// backward, exactly zero above the diagonal.
void attention_forward(float* out, float* att, const float* qkv, int B, int T, int NH, int NKV,
                       int HD);

// dqkv (B, T, (NH + 2*NKV) * HD) += gradient w.r.t. qkv.
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, int B,
                        int T, int NH, int NKV, int HD);

// Double-precision twins of the above (same semantics), for finite-difference
// gradient checks.
void attention_forward(double* out, double* att, const double* qkv, int B, int T, int NH, int NKV,
                       int HD);
void attention_backward(double* dqkv, const double* dout, const double* qkv, const double* att,
                        int B, int T, int NH, int NKV, int HD);

}  // namespace zt::cpu
