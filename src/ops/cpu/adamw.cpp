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
//
// adamw_step is the same update in one pass at memory speed: adamw_kernel.h
// holds its loop, compiled here for the scalar path and in adamw_avx2.cpp /
// adamw_avx512.cpp for the vector ones; this file picks the path and splits
// the range over the threads. It fuses the two multiply-adds that GCC
// contracts in adamw_update when the build has FMA (-march=native here), so
// the two agree bitwise there and to a few roundings of each term elsewhere
// (tests/test_adamw.cpp states the bound).
#include "ops/adamw.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "ops/cpu/adamw_kernel.h"

namespace zt::cpu {

namespace {

template <class Real>
AdamWScalars<Real> adamw_scalars(const AdamWHyper& h, bool apply_decay) {
    ZT_CHECK(h.step >= 1, "adamw: step %lld must be 1-based", (long long)h.step);
    const double lr = h.lr, b1 = h.beta1, b2 = h.beta2;
    const double bc1 = 1.0 - std::pow(b1, double(h.step));
    const double bc2 = 1.0 - std::pow(b2, double(h.step));
    AdamWScalars<Real> c;
    c.decay = Real(apply_decay ? 1.0 - lr * double(h.weight_decay) : 1.0);
    c.w1 = Real(1.0 - b1);
    c.beta2 = Real(b2);
    c.w2 = Real(1.0 - b2);
    c.neg_step = Real(-lr / bc1);
    c.bc2_sqrt = Real(std::sqrt(bc2));
    c.eps = Real(h.eps);
    return c;
}

inline float grad_value(float g, float) {
    return g;
}
inline double grad_value(double g, float) {
    return g;
}
inline float grad_value(bf16 g, float scale) {
    return bf16_to_f32(g) * scale;
}

template <class Real, class Grad>
void adamw_impl(Real* param, const Grad* grad, Real* m, Real* v, int64_t n, const AdamWHyper& h,
                bool apply_decay, float grad_scale = 1.0f) {
    ZT_CHECK(n >= 0, "adamw: negative length %lld", (long long)n);
    const AdamWScalars<Real> c = adamw_scalars<Real>(h, apply_decay);
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const Real g = grad_value(grad[i], grad_scale);
        const Real mi = m[i] + c.w1 * (g - m[i]);
        const Real vi = v[i] * c.beta2 + c.w2 * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] = param[i] * c.decay + c.neg_step * mi / (std::sqrt(vi) / c.bc2_sqrt + c.eps);
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

// ---------------------------------------------------------------- fused step

template <class Grad>
void adamw_chunk_scalar(const AdamWScalars<float>& c, const AdamWSpan<Grad>& s, int64_t begin,
                        int64_t end) {
    adamw_lanes<ScalarLanes>(c, s, begin, end);
}

namespace {

bool cpu_has(AdamWPath path) {
    switch (path) {
        case AdamWPath::automatic:
        case AdamWPath::scalar:
            return true;
#if defined(__x86_64__)
        case AdamWPath::avx512:
            return __builtin_cpu_supports("avx512f");
        case AdamWPath::avx2:
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
        case AdamWPath::avx512:
        case AdamWPath::avx2:
            return false;
#endif
    }
    return false;
}

AdamWPath resolve(AdamWPath path) {
    if (path != AdamWPath::automatic) {
        ZT_CHECK(cpu_has(path),
                 "adamw_step: path %s asked for, but this CPU (or build) lacks it; "
                 "adamw_path_supported() says which paths run here",
                 adamw_path_name(path));
        return path;
    }
    static const AdamWPath best = cpu_has(AdamWPath::avx512) ? AdamWPath::avx512
                                  : cpu_has(AdamWPath::avx2) ? AdamWPath::avx2
                                                             : AdamWPath::scalar;
    return best;
}

template <class Grad>
using AdamWChunk = void (*)(const AdamWScalars<float>&, const AdamWSpan<Grad>&, int64_t, int64_t);

template <class Grad>
AdamWChunk<Grad> chunk_for(AdamWPath path) {
    switch (resolve(path)) {
#if defined(__x86_64__)
        case AdamWPath::avx512:
            return adamw_chunk_avx512<Grad>;
        case AdamWPath::avx2:
            return adamw_chunk_avx2<Grad>;
#endif
        default:
            return adamw_chunk_scalar<Grad>;
    }
}

// Threads take contiguous runs of whole tiles: one pass has no reuse to
// block for, but long runs keep the hardware prefetchers streaming, and tile
// edges fall on cache lines of every array (for 64-byte aligned bases), so
// no two threads write the same line. A range of one tile runs inline,
// without waking the thread team (ShardOptimizer steps many small tensors).
constexpr int64_t kTile = 4096;

template <class Grad>
void adamw_step_impl(const AdamWSpan<Grad>& s, int64_t n, const AdamWHyper& h, bool apply_decay,
                     AdamWPath path) {
    ZT_CHECK(n >= 0, "adamw_step: negative length %lld", (long long)n);
    const AdamWScalars<float> c = adamw_scalars<float>(h, apply_decay);
    const AdamWChunk<Grad> run = chunk_for<Grad>(path);
    const int64_t tiles = (n + kTile - 1) / kTile;
    if (tiles <= 1) {
        run(c, s, 0, n);
        return;
    }
    const int threads = int(std::min<int64_t>(omp_get_max_threads(), tiles));
#pragma omp parallel num_threads(threads)
    {
        const int64_t nt = omp_get_num_threads(), it = omp_get_thread_num();
        const int64_t begin = std::min(n, tiles * it / nt * kTile);
        const int64_t end = std::min(n, tiles * (it + 1) / nt * kTile);
        run(c, s, begin, end);
    }
}

}  // namespace

void adamw_step(float* param, const float* grad, float* m, float* v, bf16* compute_out, int64_t n,
                const AdamWHyper& h, bool apply_decay, AdamWPath path) {
    adamw_step_impl(AdamWSpan<float>{param, grad, 1.0f, m, v, compute_out}, n, h, apply_decay,
                    path);
}

void adamw_step(float* param, const bf16* grad, float grad_scale, float* m, float* v,
                bf16* compute_out, int64_t n, const AdamWHyper& h, bool apply_decay,
                AdamWPath path) {
    adamw_step_impl(AdamWSpan<bf16>{param, grad, grad_scale, m, v, compute_out}, n, h, apply_decay,
                    path);
}

bool adamw_path_supported(AdamWPath path) {
    return cpu_has(path);
}

const char* adamw_path_name(AdamWPath path) {
    switch (path) {
        case AdamWPath::automatic:
            return adamw_path_name(resolve(path));
        case AdamWPath::avx512:
            return "avx512";
        case AdamWPath::avx2:
            return "avx2";
        case AdamWPath::scalar:
            return "scalar";
    }
    return "?";
}

// Each thread sums a fixed contiguous block and the partials are added in
// thread order, so the norm is bit-identical across runs (resume tests rely
// on it); an OpenMP reduction clause would combine in arrival order.
namespace {

inline double squared(float x) {
    return double(x) * double(x);
}
inline double squared(bf16 x) {
    return squared(bf16_to_f32(x));
}

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

double sum_squares(const float* x, int64_t n) {
    return sum_squares_impl(x, n);
}
double sum_squares(const bf16* x, int64_t n) {
    return sum_squares_impl(x, n);
}

void scale_inplace(float* x, int64_t n, float s) {
    ZT_CHECK(n >= 0, "scale_inplace: negative length %lld", (long long)n);
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] *= s;
}

}  // namespace zt::cpu
