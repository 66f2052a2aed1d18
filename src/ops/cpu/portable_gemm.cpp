// The portable GEMM (see portable_gemm.h): blocked over K, M and N so each
// block of op(A) and op(B) is packed once into a contiguous buffer that stays
// in cache, then a 4-row kernel whose inner loop runs over a packed row of B
// and C with unit stride, which the compiler vectorises.
//
// Invariant: each element of C is first scaled by beta (set to 0 when beta is
// 0), then receives alpha * (its partial sum over one K block) once per K
// block, in K order; no element is written by more than one thread because
// the whole product runs on the calling thread.
#include "ops/cpu/portable_gemm.h"

#include <algorithm>
#include <vector>

namespace zt::cpu {
namespace {

// Block sizes: a (kMc, kKc) block of A and a (kKc, kNc) block of B fill about
// 64 KiB and 256 KiB in fp32, the L2 of the machines this runs on.
constexpr int64_t kMc = 64;
constexpr int64_t kKc = 256;
constexpr int64_t kNc = 256;

// C (M, N) *= beta; beta == 0 writes zeros without reading C.
template <class Real>
void scale_c(int64_t M, int64_t N, Real beta, Real* C, int64_t ldc) {
    if (beta == Real(1)) return;
    for (int64_t i = 0; i < M; i++) {
        Real* c = C + i * ldc;
        if (beta == Real(0))
            std::fill(c, c + N, Real(0));
        else
            for (int64_t j = 0; j < N; j++) c[j] *= beta;
    }
}

// Packs op(A)[i0:i0+m, p0:p0+k] into ap (m, k), scaled by alpha.
template <class Real>
void pack_a(bool trans, const Real* A, int64_t lda, int64_t i0, int64_t m, int64_t p0, int64_t k,
            Real alpha, Real* ap) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t p = 0; p < k; p++)
            ap[i * k + p] =
                alpha * (trans ? A[(p0 + p) * lda + i0 + i] : A[(i0 + i) * lda + p0 + p]);
}

// Packs op(B)[p0:p0+k, j0:j0+n] into bp (k, n).
template <class Real>
void pack_b(bool trans, const Real* B, int64_t ldb, int64_t p0, int64_t k, int64_t j0, int64_t n,
            Real* bp) {
    for (int64_t p = 0; p < k; p++) {
        Real* row = bp + p * n;
        if (trans)
            for (int64_t j = 0; j < n; j++) row[j] = B[(j0 + j) * ldb + p0 + p];
        else
            std::copy(B + (p0 + p) * ldb + j0, B + (p0 + p) * ldb + j0 + n, row);
    }
}

// C (m, n) += ap (m, k) @ bp (k, n), four rows of C at a time.
template <class Real>
void kernel(int64_t m, int64_t n, int64_t k, const Real* ap, const Real* bp, Real* C, int64_t ldc) {
    int64_t i = 0;
    for (; i + 4 <= m; i += 4) {
        Real* c0 = C + i * ldc;
        Real* c1 = c0 + ldc;
        Real* c2 = c1 + ldc;
        Real* c3 = c2 + ldc;
        const Real* a = ap + i * k;
        for (int64_t p = 0; p < k; p++) {
            const Real a0 = a[p], a1 = a[k + p], a2 = a[2 * k + p], a3 = a[3 * k + p];
            const Real* b = bp + p * n;
#pragma omp simd
            for (int64_t j = 0; j < n; j++) {
                c0[j] += a0 * b[j];
                c1[j] += a1 * b[j];
                c2[j] += a2 * b[j];
                c3[j] += a3 * b[j];
            }
        }
    }
    for (; i < m; i++) {
        Real* c = C + i * ldc;
        const Real* a = ap + i * k;
        for (int64_t p = 0; p < k; p++) {
            const Real ai = a[p];
            const Real* b = bp + p * n;
#pragma omp simd
            for (int64_t j = 0; j < n; j++) c[j] += ai * b[j];
        }
    }
}

template <class Real>
void gemm_impl(bool ta, bool tb, int64_t M, int64_t N, int64_t K, Real alpha, const Real* A,
               int64_t lda, const Real* B, int64_t ldb, Real beta, Real* C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    scale_c(M, N, beta, C, ldc);
    if (K <= 0 || alpha == Real(0)) return;
    thread_local std::vector<Real> ap, bp;
    ap.resize(size_t(kMc * kKc));
    bp.resize(size_t(kKc * kNc));
    for (int64_t j0 = 0; j0 < N; j0 += kNc) {
        const int64_t n = std::min(kNc, N - j0);
        for (int64_t p0 = 0; p0 < K; p0 += kKc) {
            const int64_t k = std::min(kKc, K - p0);
            pack_b(tb, B, ldb, p0, k, j0, n, bp.data());
            for (int64_t i0 = 0; i0 < M; i0 += kMc) {
                const int64_t m = std::min(kMc, M - i0);
                pack_a(ta, A, lda, i0, m, p0, k, alpha, ap.data());
                kernel(m, n, k, ap.data(), bp.data(), C + i0 * ldc + j0, ldc);
            }
        }
    }
}

}  // namespace

void portable_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    gemm_impl(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void portable_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
                   int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
    gemm_impl(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void portable_gemv(bool ta, int64_t M, int64_t N, float alpha, const float* A, int64_t lda,
                   const float* x, float beta, float* y) {
    const int64_t ny = ta ? N : M;
    if (ny <= 0) return;
    scale_c(int64_t(1), ny, beta, y, ny);
    if (alpha == 0.0f) return;
    if (!ta) {
        for (int64_t i = 0; i < M; i++) {
            const float* a = A + i * lda;
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int64_t j = 0; j < N; j++) sum += a[j] * x[j];
            y[i] += alpha * sum;
        }
    } else {
        // y (N) += alpha sum_i x[i] A[i, :]: rows of A in order, unit stride.
        for (int64_t i = 0; i < M; i++) {
            const float* a = A + i * lda;
            const float xi = alpha * x[i];
#pragma omp simd
            for (int64_t j = 0; j < N; j++) y[j] += xi * a[j];
        }
    }
}

}  // namespace zt::cpu
