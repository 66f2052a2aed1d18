// AdamW with decoupled weight decay (PyTorch's torch.optim.AdamW semantics):
//   p -= lr * wd * p
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// Works on any flat range, so a ZeRO shard updates with the same call.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace zt::cpu {

struct AdamWHyper {
    float lr = 3e-4f;
    float beta1 = 0.9f;
    float beta2 = 0.95f;
    float eps = 1e-8f;
    float weight_decay = 0.0f;  // applied only where the caller says so
    int64_t step = 1;           // 1-based, for bias correction
};

// param, grad, m, v (n); grad is read only; weight decay used iff apply_decay.
void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWHyper& h, bool apply_decay);
// Double-precision twin (same semantics, hyperparameters widened to double).
void adamw_update(double* param, const double* grad, double* m, double* v, int64_t n,
                  const AdamWHyper& h, bool apply_decay);

// Mixed precision: fp32 master, moments and update from a bf16 gradient
// multiplied by grad_scale (the clipping coefficient) as it is read.
void adamw_update(float* param, const bf16* grad, float grad_scale, float* m, float* v, int64_t n,
                  const AdamWHyper& h, bool apply_decay);

// ---------------------------------------------------------------- fused step
// adamw_update in one pass at memory speed: reads param (fp32 master), grad,
// m, v and writes param, m, v and, when compute_out is non-null, the bf16
// rounding of the new param (cast_f32_to_bf16's), in the same pass. All paths
// give bitwise the same result (adamw.cpp's header says how it relates to
// adamw_update). Vectorised for AVX-512 and AVX2, picked at run time, over
// the OpenMP threads.
enum class AdamWPath { automatic, avx512, avx2, scalar };

// param, grad, m, v, compute_out (n); compute_out may be null. A forced path
// the CPU lacks is refused.
void adamw_step(float* param, const float* grad, float* m, float* v, bf16* compute_out, int64_t n,
                const AdamWHyper& h, bool apply_decay, AdamWPath path = AdamWPath::automatic);
// The gradient is bf16, multiplied by grad_scale as it is read.
void adamw_step(float* param, const bf16* grad, float grad_scale, float* m, float* v,
                bf16* compute_out, int64_t n, const AdamWHyper& h, bool apply_decay,
                AdamWPath path = AdamWPath::automatic);

// Whether this CPU (and build) runs the path; automatic and scalar always do.
bool adamw_path_supported(AdamWPath path);
// "avx512", "avx2" or "scalar"; for automatic, the one it picks here.
const char* adamw_path_name(AdamWPath path = AdamWPath::automatic);

// ---------------------------------------------------------------- norms
// Sum of squares accumulated in double (for the global grad norm).
double sum_squares(const float* x, int64_t n);
double sum_squares(const bf16* x, int64_t n);

// x (n) *= s
void scale_inplace(float* x, int64_t n, float s);

}  // namespace zt::cpu
