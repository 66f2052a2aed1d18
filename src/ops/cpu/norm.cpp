// RMSNorm and LayerNorm, forward and backward, on the CPU.
//
// Invariant: forward saves the per-row statistics (rstd, and mean for
// LayerNorm) that backward reads instead of reducing over the row again, and
// backward accumulates (+=) into dinp, dweight, dbias. The weight and bias
// gradients are sums over rows: each thread sums its own block of rows into a
// private partial, and the partials are then added in thread order, so the
// result is race-free and the same on every run with the same thread count.
//
// One implementation serves every precision: tensors are stored as S (float,
// double or bf16) and the arithmetic and statistics are in A (the same type,
// or fp32 for bf16). load() widens an element to A, store() rounds once; for
// float and double both are the identity, so those paths are the plain loops.
#include "ops/norm.h"

#include <omp.h>

#include <cmath>
#include <vector>

#include "core/check.h"
#include "ops/cpu/storage.h"

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
    // target[c] += sum over threads of partial `which`, in thread order; a
    // bf16 target is rounded once, after the sum.
    template <class G>
    void fold(int which, G* target) {
        if (!target) return;
#pragma omp parallel for schedule(static)
        for (int c = 0; c < C_; c++) {
            Real acc = 0;
            for (int t = 0; t < threads_; t++) acc += get(t, which)[c];
            store(target[c], load(target[c]) + acc);
        }
    }

  private:
    int count_, C_, threads_;
    std::vector<Real> data_;
};

template <class S, class A>
void rmsnorm_forward_impl(S* out, A* rstd, const S* inp, const S* weight, int64_t N, int C,
                          float eps) {
    check_dims(N, C);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const S* x = inp + n * C;
        S* o = out + n * C;
        A ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++) {
            const A xc = load(x[c]);
            ss += xc * xc;
        }
        const A r = A(1) / std::sqrt(ss / A(C) + A(eps));
        rstd[n] = r;
#pragma omp simd
        for (int c = 0; c < C; c++) store(o[c], load(weight[c]) * (load(x[c]) * r));
    }
}

// out = x r w with r = (mean(x^2) + eps)^(-1/2), so with g = dout w:
//   dx = r g - r^3 x mean(g x),   dw = sum over rows of dout x r.
template <class S, class G, class A>
void rmsnorm_backward_impl(S* dinp, G* dweight, const S* dout, const S* inp, const S* weight,
                           const A* rstd, int64_t N, int C) {
    check_dims(N, C);
    ColumnPartials<A> part(1, C);
#pragma omp parallel num_threads(part.threads())
    {
        const int nt = omp_get_num_threads(), it = omp_get_thread_num();
        const int64_t n0 = N * it / nt, n1 = N * (it + 1) / nt;
        A* pw = part.get(it, 0);
        for (int64_t n = n0; n < n1; n++) {
            const S* x = inp + n * C;
            const S* dy = dout + n * C;
            const A r = rstd[n];
            if (dinp) {
                A gx = 0;
#pragma omp simd reduction(+ : gx)
                for (int c = 0; c < C; c++) gx += load(dy[c]) * load(weight[c]) * load(x[c]);
                const A k = r * r * r * gx / A(C);
                S* dx = dinp + n * C;
#pragma omp simd
                for (int c = 0; c < C; c++) {
                    store(dx[c],
                          load(dx[c]) + (r * load(weight[c]) * load(dy[c]) - k * load(x[c])));
                }
            }
            if (dweight) {
#pragma omp simd
                for (int c = 0; c < C; c++) pw[c] += load(dy[c]) * load(x[c]) * r;
            }
        }
    }
    part.fold(0, dweight);
}

template <class S, class A>
void layernorm_forward_impl(S* out, A* mean, A* rstd, const S* inp, const S* weight, const S* bias,
                            int64_t N, int C, float eps) {
    check_dims(N, C);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const S* x = inp + n * C;
        S* o = out + n * C;
        A s = 0;
#pragma omp simd reduction(+ : s)
        for (int c = 0; c < C; c++) s += load(x[c]);
        const A m = s / A(C);
        A v = 0;  // two passes: no cancellation when |mean| >> std
#pragma omp simd reduction(+ : v)
        for (int c = 0; c < C; c++) {
            const A xm = load(x[c]) - m;
            v += xm * xm;
        }
        const A r = A(1) / std::sqrt(v / A(C) + A(eps));
        mean[n] = m;
        rstd[n] = r;
#pragma omp simd
        for (int c = 0; c < C; c++) {
            store(o[c], (load(x[c]) - m) * r * load(weight[c]) + load(bias[c]));
        }
    }
}

// With xhat = (x - mean) r and g = dout w:
//   dx = r (g - mean(g) - xhat mean(g xhat)),  dw = sum dout xhat,  db = sum dout.
template <class S, class G, class A>
void layernorm_backward_impl(S* dinp, G* dweight, G* dbias, const S* dout, const S* inp,
                             const S* weight, const A* mean, const A* rstd, int64_t N, int C) {
    check_dims(N, C);
    ColumnPartials<A> part(2, C);
#pragma omp parallel num_threads(part.threads())
    {
        const int nt = omp_get_num_threads(), it = omp_get_thread_num();
        const int64_t n0 = N * it / nt, n1 = N * (it + 1) / nt;
        A* pw = part.get(it, 0);
        A* pb = part.get(it, 1);
        for (int64_t n = n0; n < n1; n++) {
            const S* x = inp + n * C;
            const S* dy = dout + n * C;
            const A m = mean[n], r = rstd[n];
            if (dinp) {
                A g_sum = 0, gx_sum = 0;
#pragma omp simd reduction(+ : g_sum, gx_sum)
                for (int c = 0; c < C; c++) {
                    const A g = load(dy[c]) * load(weight[c]);
                    g_sum += g;
                    gx_sum += g * (load(x[c]) - m) * r;
                }
                const A g_mean = g_sum / A(C), gx_mean = gx_sum / A(C);
                S* dx = dinp + n * C;
#pragma omp simd
                for (int c = 0; c < C; c++) {
                    store(dx[c], load(dx[c]) + r * (load(dy[c]) * load(weight[c]) - g_mean -
                                                    (load(x[c]) - m) * r * gx_mean));
                }
            }
            if (dweight) {
#pragma omp simd
                for (int c = 0; c < C; c++) pw[c] += load(dy[c]) * (load(x[c]) - m) * r;
            }
            if (dbias) {
#pragma omp simd
                for (int c = 0; c < C; c++) pb[c] += load(dy[c]);
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

void rmsnorm_forward(bf16* out, float* rstd, const bf16* inp, const bf16* weight, int64_t N, int C,
                     float eps) {
    rmsnorm_forward_impl(out, rstd, inp, weight, N, C, eps);
}
void rmsnorm_backward(bf16* dinp, float* dweight, const bf16* dout, const bf16* inp,
                      const bf16* weight, const float* rstd, int64_t N, int C) {
    rmsnorm_backward_impl(dinp, dweight, dout, inp, weight, rstd, N, C);
}
void rmsnorm_backward(bf16* dinp, bf16* dweight, const bf16* dout, const bf16* inp,
                      const bf16* weight, const float* rstd, int64_t N, int C) {
    rmsnorm_backward_impl(dinp, dweight, dout, inp, weight, rstd, N, C);
}
void layernorm_forward(bf16* out, float* mean, float* rstd, const bf16* inp, const bf16* weight,
                       const bf16* bias, int64_t N, int C, float eps) {
    layernorm_forward_impl(out, mean, rstd, inp, weight, bias, N, C, eps);
}
void layernorm_backward(bf16* dinp, float* dweight, float* dbias, const bf16* dout, const bf16* inp,
                        const bf16* weight, const float* mean, const float* rstd, int64_t N,
                        int C) {
    layernorm_backward_impl(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}
void layernorm_backward(bf16* dinp, bf16* dweight, bf16* dbias, const bf16* dout, const bf16* inp,
                        const bf16* weight, const float* mean, const float* rstd, int64_t N,
                        int C) {
    layernorm_backward_impl(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

}  // namespace zt::cpu
