// Fused classifier + softmax cross-entropy.
//
// Logits are computed a chunk of rows at a time into `scratch` and turned into
// their gradient in place, so the full (N, V) logits never exist: memory is
// chunk_rows * V floats however long the batch. Softmax uses the row max for
// stability. A target < 0 marks an ignored position (loss 0, no gradient).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace zt::cpu {

// losses (N) = logsumexp(logits) - logits[target], logits = x (N, C) @ weight (V, C)^T.
// When dx or dweight is non-null, also backward with d(loss_i) = loss_scale for every
// non-ignored row: dx (N, C) += dlogits @ weight, dweight (V, C) += dlogits^T @ x.
// scratch holds chunk_rows * V floats.
void classifier_forward_backward(float* losses, float* dx, float* dweight, const float* x,
                                 const float* weight, const int32_t* targets, int64_t N, int C,
                                 int V, float loss_scale, float* scratch, int chunk_rows);

// bf16-storage twins (same semantics): x, weight and dx in bf16, dweight in
// fp32 or bf16, losses and scratch (chunk_rows * V floats, as above) in fp32.
// Logits come out of a bf16 GEMM in fp32, softmax and the loss are fp32, and
// dlogits are rounded once to bf16 for the two backward GEMMs (packed into the
// same scratch bytes, no extra memory). dx rounds once per call; a bf16
// dweight rounds once per chunk of rows (pass an fp32 dweight to avoid that).
void classifier_forward_backward(float* losses, bf16* dx, float* dweight, const bf16* x,
                                 const bf16* weight, const int32_t* targets, int64_t N, int C,
                                 int V, float loss_scale, float* scratch, int chunk_rows);
void classifier_forward_backward(float* losses, bf16* dx, bf16* dweight, const bf16* x,
                                 const bf16* weight, const int32_t* targets, int64_t N, int C,
                                 int V, float loss_scale, float* scratch, int chunk_rows);

// Double-precision twins of the above (same semantics), for finite-difference
// gradient checks.
void classifier_forward_backward(double* losses, double* dx, double* dweight, const double* x,
                                 const double* weight, const int32_t* targets, int64_t N, int C,
                                 int V, float loss_scale, double* scratch, int chunk_rows);

}  // namespace zt::cpu
