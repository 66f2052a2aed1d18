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

// Sum of squares accumulated in double (for the global grad norm).
// Mixed precision: fp32 master, moments and update from a bf16 gradient
// multiplied by grad_scale (the clipping coefficient) as it is read.
void adamw_update(float* param, const bf16* grad, float grad_scale, float* m, float* v, int64_t n,
                  const AdamWHyper& h, bool apply_decay);

double sum_squares(const float* x, int64_t n);
double sum_squares(const bf16* x, int64_t n);

// x (n) *= s
void scale_inplace(float* x, int64_t n, float s);

}  // namespace zt::cpu
