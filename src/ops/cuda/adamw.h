// AdamW, squared norm and scaling over flat device buffers; the names of
// ops/adamw.h plus the stream, and a multi-tensor form for the engine.
//
// AdamW with decoupled weight decay (torch.optim.AdamW semantics):
//   p -= lr * wd * p
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// Master weights and moments are always fp32; the gradient may be fp32 or
// bf16 (bf16 training keeps bf16 gradients), and a bf16 copy of the updated
// parameters can be written in the same pass (the weights the next forward
// reads), rounded exactly as cast_f32_to_bf16 rounds.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "ops/adamw.h"

namespace zt::cuda {

using cpu::AdamWHyper;

// One contiguous range of a flat buffer (a ZeRO shard, a unit's parameters).
template <class G>
struct AdamWSlice {
    float* param = nullptr;               // (n) fp32 master weights, updated in place
    const G* grad = nullptr;              // (n) gradient, read only
    float* m = nullptr;                   // (n) first moment
    float* v = nullptr;                   // (n) second moment
    __nv_bfloat16* param_bf16 = nullptr;  // (n) bf16 copy of the result; may be null
    int64_t n = 0;
    bool apply_decay = false;  // weight decay for this range or not
};

// Updates every slice; one fused kernel launch per 32 slices. `slices` is a
// host array of `count` descriptors of device ranges, which must not overlap.
void adamw_update(const AdamWSlice<float>* slices, int count, const AdamWHyper& h,
                  cudaStream_t stream);
void adamw_update(const AdamWSlice<__nv_bfloat16>* slices, int count, const AdamWHyper& h,
                  cudaStream_t stream);
// The CPU signature: one fp32 range.
void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWHyper& h, bool apply_decay, cudaStream_t stream);

// *out (device, 1 double) = sum of x^2, accumulated in fp64 in a fixed order
// (bit-identical across runs). Enqueued on the stream, no synchronisation.
void sum_squares(double* out, const float* x, int64_t n, cudaStream_t stream);
void sum_squares(double* out, const __nv_bfloat16* x, int64_t n, cudaStream_t stream);
// The CPU signature: returns the sum, synchronising the stream.
double sum_squares(const float* x, int64_t n, cudaStream_t stream);

// x (n) *= s (one rounding per element for bf16).
void scale_inplace(float* x, int64_t n, float s, cudaStream_t stream);
void scale_inplace(__nv_bfloat16* x, int64_t n, float s, cudaStream_t stream);

}  // namespace zt::cuda
