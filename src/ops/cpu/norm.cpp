// RMSNorm and LayerNorm, forward and backward, on the CPU.
//
// Invariant: forward saves the per-row statistics (rstd, and mean for
// LayerNorm) that backward reads instead of reducing over the row again, and
// backward accumulates (+=) into dinp, dweight, dbias. The weight and bias
// gradients are sums over rows: each thread sums its own block of rows into a
// private partial, and the partials are then added in thread order, so the
// result is race-free and the same on every run with the same thread count.
#include "ops/norm.h"

#include <omp.h>

#include <cmath>
#include <vector>

#include "core/check.h"

namespace zt::cpu {

namespace {

void check_dims(int64_t N, int C) {
    ZT_CHECK(N >= 0 && C > 0, "norm: bad shape N=%lld C=%d", (long long)N, C);
}

// Per-thread partial sums of `count` column vectors, folded into their targets.
template <class Real>
class ColumnPartials {
  public:
    ColumnPartials(int count, int C)
        : count_(count),
          C_(C),
          threads_(omp_get_max_threads()),
          data_(size_t(threads_) * count * C, Real(0)) {}
    int threads() const { return threads_; }
    Real* get(int thread, int which) {
        return data_.data() + (size_t(thread) * count_ + which) * C_;
    }
    // target[c] += sum over threads of partial `which`, in thread order.
    void fold(int which, Real* target) {
        if (!target) return;
#pragma omp parallel for schedule(static)
        for (int c = 0; c < C_; c++) {
            Real acc = 0;
            for (int t = 0; t < threads_; t++) acc += get(t, which)[c];
            target[c] += acc;
        }
    }

  private:
    int count_, C_, threads_;
    std::vector<Real> data_;
};

template <class Real>
void rmsnorm_forward_impl(Real* out, Real* rstd, const Real* inp, const Real* weight, int64_t N,
                          int C, float eps) {
    check_dims(N, C);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const Real* x = inp + n * C;
        Real* o = out + n * C;
        Real ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        const Real r = Real(1) / std::sqrt(ss / Real(C) + Real(eps));
        rstd[n] = r;
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = weight[c] * (x[c] * r);
    }
}

// out = x r w with r = (mean(x^2) + eps)^(-1/2), so with g = dout w:
//   dx = r g - r^3 x mean(g x),   dw = sum over rows of dout x r.
template <class Real>
void rmsnorm_backward_impl(Real* dinp, Real* dweight, const Real* dout, const Real* inp,
                           const Real* weight, const Real* rstd, int64_t N, int C) {
    check_dims(N, C);
    ColumnPartials<Real> part(1, C);
#pragma omp parallel num_threads(part.threads())
    {
        const int nt = omp_get_num_threads(), it = omp_get_thread_num();
        const int64_t n0 = N * it / nt, n1 = N * (it + 1) / nt;
        Real* pw = part.get(it, 0);
        for (int64_t n = n0; n < n1; n++) {
            const Real* x = inp + n * C;
            const Real* dy = dout + n * C;
            const Real r = rstd[n];
            if (dinp) {
                Real gx = 0;
#pragma omp simd reduction(+ : gx)
                for (int c = 0; c < C; c++) gx += dy[c] * weight[c] * x[c];
                const Real k = r * r * r * gx / Real(C);
                Real* dx = dinp + n * C;
#pragma omp simd
                for (int c = 0; c < C; c++) dx[c] += r * weight[c] * dy[c] - k * x[c];
            }
            if (dweight) {
#pragma omp simd
                for (int c = 0; c < C; c++) pw[c] += dy[c] * x[c] * r;
            }
        }
    }
    part.fold(0, dweight);
}

template <class Real>
void layernorm_forward_impl(Real* out, Real* mean, Real* rstd, const Real* inp, const Real* weight,
                            const Real* bias, int64_t N, int C, float eps) {
    check_dims(N, C);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const Real* x = inp + n * C;
        Real* o = out + n * C;
        Real s = 0;
#pragma omp simd reduction(+ : s)
        for (int c = 0; c < C; c++) s += x[c];
        const Real m = s / Real(C);
        Real v = 0;  // two passes: no cancellation when |mean| >> std
#pragma omp simd reduction(+ : v)
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        const Real r = Real(1) / std::sqrt(v / Real(C) + Real(eps));
        mean[n] = m;
        rstd[n] = r;
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * weight[c] + bias[c];
    }
}

// With xhat = (x - mean) r and g = dout w:
//   dx = r (g - mean(g) - xhat mean(g xhat)),  dw = sum dout xhat,  db = sum dout.
template <class Real>
void layernorm_backward_impl(Real* dinp, Real* dweight, Real* dbias, const Real* dout,
                             const Real* inp, const Real* weight, const Real* mean,
                             const Real* rstd, int64_t N, int C) {
    check_dims(N, C);
    ColumnPartials<Real> part(2, C);
#pragma omp parallel num_threads(part.threads())
    {
        const int nt = omp_get_num_threads(), it = omp_get_thread_num();
        const int64_t n0 = N * it / nt, n1 = N * (it + 1) / nt;
        Real* pw = part.get(it, 0);
        Real* pb = part.get(it, 1);
        for (int64_t n = n0; n < n1; n++) {
            const Real* x = inp + n * C;
            const Real* dy = dout + n * C;
            const Real m = mean[n], r = rstd[n];
            if (dinp) {
                Real g_sum = 0, gx_sum = 0;
#pragma omp simd reduction(+ : g_sum, gx_sum)
                for (int c = 0; c < C; c++) {
                    const Real g = dy[c] * weight[c];
                    g_sum += g;
                    gx_sum += g * (x[c] - m) * r;
                }
                const Real g_mean = g_sum / Real(C), gx_mean = gx_sum / Real(C);
                Real* dx = dinp + n * C;
#pragma omp simd
                for (int c = 0; c < C; c++) {
                    dx[c] += r * (dy[c] * weight[c] - g_mean - (x[c] - m) * r * gx_mean);
                }
            }
            if (dweight) {
#pragma omp simd
                for (int c = 0; c < C; c++) pw[c] += dy[c] * (x[c] - m) * r;
            }
            if (dbias) {
#pragma omp simd
                for (int c = 0; c < C; c++) pb[c] += dy[c];
            }
        }
    }
    part.fold(0, dweight);
    part.fold(1, dbias);
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N,
                     int C, float eps) {
    rmsnorm_forward_impl(out, rstd, inp, weight, N, C, eps);
}
void rmsnorm_forward(double* out, double* rstd, const double* inp, const double* weight, int64_t N,
                     int C, float eps) {
    rmsnorm_forward_impl(out, rstd, inp, weight, N, C, eps);
}
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int64_t N, int C) {
    rmsnorm_backward_impl(dinp, dweight, dout, inp, weight, rstd, N, C);
}
void rmsnorm_backward(double* dinp, double* dweight, const double* dout, const double* inp,
                      const double* weight, const double* rstd, int64_t N, int C) {
    rmsnorm_backward_impl(dinp, dweight, dout, inp, weight, rstd, N, C);
}
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int64_t N, int C, float eps) {
    layernorm_forward_impl(out, mean, rstd, inp, weight, bias, N, C, eps);
}
void layernorm_forward(double* out, double* mean, double* rstd, const double* inp,
                       const double* weight, const double* bias, int64_t N, int C, float eps) {
    layernorm_forward_impl(out, mean, rstd, inp, weight, bias, N, C, eps);
}
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd,
                        int64_t N, int C) {
    layernorm_backward_impl(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}
void layernorm_backward(double* dinp, double* dweight, double* dbias, const double* dout,
                        const double* inp, const double* weight, const double* mean,
                        const double* rstd, int64_t N, int C) {
    layernorm_backward_impl(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

}  // namespace zt::cpu
