// AdamW update, squared norm and scaling over flat ranges, on the CPU.
//
// Invariant: adamw_update follows torch.optim.AdamW's single-tensor update
// operation by operation (same association, scalars rounded to the working
// precision the way PyTorch passes them), so a float run tracks PyTorch to
// within rounding of the fused multiply-adds:
//   p *= 1 - lr wd                              (decay, if applied)
//   m += (1 - b1) (g - m)                       (torch: m.lerp_(g, 1 - b1))
//   v = v b2 + (1 - b2) g g
//   p += (-lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// Bias corrections are computed in double from the 1-based step, as Python does.
#include "ops/adamw.h"

#include <omp.h>

#include <cmath>
#include <vector>

#include "core/check.h"

namespace zt::cpu {

namespace {

inline float grad_value(float g, float) { return g; }
inline double grad_value(double g, float) { return g; }
inline float grad_value(bf16 g, float scale) { return bf16_to_f32(g) * scale; }

template <class Real, class Grad>
void adamw_impl(Real* param, const Grad* grad, Real* m, Real* v, int64_t n, const AdamWHyper& h,
                bool apply_decay, float grad_scale = 1.0f) {
    ZT_CHECK(n >= 0, "adamw: negative length %lld", (long long)n);
    ZT_CHECK(h.step >= 1, "adamw: step %lld must be 1-based", (long long)h.step);
    const double lr = h.lr, b1 = h.beta1, b2 = h.beta2;
    const double bc1 = 1.0 - std::pow(b1, double(h.step));
    const double bc2 = 1.0 - std::pow(b2, double(h.step));
    const Real decay = Real(apply_decay ? 1.0 - lr * double(h.weight_decay) : 1.0);
    const Real w1 = Real(1.0 - b1), beta2 = Real(b2), w2 = Real(1.0 - b2);
    const Real neg_step = Real(-lr / bc1), bc2_sqrt = Real(std::sqrt(bc2)), eps = Real(h.eps);
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const Real g = grad_value(grad[i], grad_scale);
        const Real mi = m[i] + w1 * (g - m[i]);
        const Real vi = v[i] * beta2 + w2 * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] = param[i] * decay + neg_step * mi / (std::sqrt(vi) / bc2_sqrt + eps);
    }
}

}  // namespace

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWHyper& h, bool apply_decay) {
    adamw_impl(param, grad, m, v, n, h, apply_decay);
}
void adamw_update(double* param, const double* grad, double* m, double* v, int64_t n,
                  const AdamWHyper& h, bool apply_decay) {
    adamw_impl(param, grad, m, v, n, h, apply_decay);
}

void adamw_update(float* param, const bf16* grad, float grad_scale, float* m, float* v, int64_t n,
                  const AdamWHyper& h, bool apply_decay) {
    adamw_impl(param, grad, m, v, n, h, apply_decay, grad_scale);
}

// Each thread sums a fixed contiguous block and the partials are added in
// thread order, so the norm is bit-identical across runs (resume tests rely
// on it); an OpenMP reduction clause would combine in arrival order.
namespace {

inline double squared(float x) { return double(x) * double(x); }
inline double squared(bf16 x) { return squared(bf16_to_f32(x)); }

template <class T>
double sum_squares_impl(const T* x, int64_t n) {
    ZT_CHECK(n >= 0, "sum_squares: negative length %lld", (long long)n);
    std::vector<double> part(size_t(omp_get_max_threads()), 0.0);
#pragma omp parallel num_threads(int(part.size()))
    {
        const int nt = omp_get_num_threads(), it = omp_get_thread_num();
        const int64_t i0 = n * it / nt, i1 = n * (it + 1) / nt;
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = i0; i < i1; i++) s += squared(x[i]);
        part[size_t(it)] = s;
    }
    double total = 0;
    for (double s : part) total += s;
    return total;
}

}  // namespace

double sum_squares(const float* x, int64_t n) { return sum_squares_impl(x, n); }
double sum_squares(const bf16* x, int64_t n) { return sum_squares_impl(x, n); }

void scale_inplace(float* x, int64_t n, float s) {
    ZT_CHECK(n >= 0, "scale_inplace: negative length %lld", (long long)n);
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] *= s;
}

}  // namespace zt::cpu
