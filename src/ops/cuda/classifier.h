// Fused classifier + softmax cross-entropy on the GPU; same name and argument
// order as ops/classifier.h plus the stream.
//
// Logits are computed a chunk of rows at a time into `scratch` (cuBLASLt,
// fp32 output for both element types) and turned into their gradient in
// place, so the full (N, V) logits never exist: memory is chunk_rows * V
// floats however long the batch. A target < 0 marks an ignored position
// (loss 0, no gradient). Targets are not range-checked on the host (that
// would cost a device sync per call): a target >= V yields a NaN loss and no
// gradient for that row, which the training loop reports as a NaN loss.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace zt::cuda {

// Rows per chunk the GPU classifier should be given for N rows of V logits:
// as many as fit in 256 MiB of fp32 scratch, rounded down to a multiple of
// 128, at least 128 and at most N (at least 1). V = 50257 gives 1280 rows.
// The caller allocates chunk_rows * V floats of scratch.
int classifier_chunk_rows(int64_t N, int V);

// losses (N, fp32) = logsumexp(logits) - logits[target], logits = x (N, C) @ weight (V, C)^T.
// When dx or dweight is non-null, also backward with d(loss_i) = loss_scale for every
// non-ignored row: dx (N, C) += dlogits @ weight, dweight (V, C) += dlogits^T @ x.
// targets (N) int32 on the device; scratch holds chunk_rows * V floats for both
// element types (the bf16 path packs its bf16 dlogits into the same bytes).
void classifier_forward_backward(float* losses, float* dx, float* dweight, const float* x,
                                 const float* weight, const int32_t* targets, int64_t N, int C,
                                 int V, float loss_scale, float* scratch, int chunk_rows,
                                 cudaStream_t stream);
// bf16 twins: x, weight and dx in bf16, dweight in fp32 (accumulated in fp32,
// never rounded: the one a bf16 model's fp32 gradients want) or bf16 (rounded
// once per chunk). Logits and the loss are fp32; dlogits are rounded once to
// bf16 for the two backward GEMMs; dx rounds once per call.
void classifier_forward_backward(float* losses, __nv_bfloat16* dx, float* dweight,
                                 const __nv_bfloat16* x, const __nv_bfloat16* weight,
                                 const int32_t* targets, int64_t N, int C, int V, float loss_scale,
                                 float* scratch, int chunk_rows, cudaStream_t stream);
void classifier_forward_backward(float* losses, __nv_bfloat16* dx, __nv_bfloat16* dweight,
                                 const __nv_bfloat16* x, const __nv_bfloat16* weight,
                                 const int32_t* targets, int64_t N, int C, int V, float loss_scale,
                                 float* scratch, int chunk_rows, cudaStream_t stream);

}  // namespace zt::cuda
