// GEMM and GEMV for the CPU ops (row-major throughout), so one template
// serves float and double, over whichever BLAS the build has: OpenBLAS
// (ZT_HAVE_OPENBLAS) or the engine's own blocked GEMM (portable_gemm.h);
// gemm_fp32_path() in ops/matmul.h says which. The policy: OpenMP alone owns
// the cores.
//
// Invariant: every gemm/gemv runs single-threaded. The pthread build of OpenBLAS
// keeps its own pool whose threads spin after every call, and OpenMP's
// threads spin after every region; on a few cores the two pools fight and an
// op that alternates GEMMs with OpenMP loops ran 2x slower. So every GEMM is
// either called from inside an OpenMP region (attention: one per thread) or
// split over OpenMP threads by gemm_parallel.
#pragma once

#if ZT_HAVE_OPENBLAS
#include <cblas.h>
#endif
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "core/check.h"
#include "ops/cpu/portable_gemm.h"

namespace zt::cpu {

// Whether an operand is used as stored or transposed.
enum Trans : bool { kNoTrans = false, kTrans = true };

// BLAS takes 32-bit sizes; refuse anything larger rather than wrap around
// (the portable GEMM keeps the same limit, so both builds accept the same sizes).
inline int blas_dim(int64_t d) {
    ZT_CHECK(d >= 0 && d <= INT_MAX, "BLAS dimension %lld outside [0, INT_MAX]", (long long)d);
    return int(d);
}

// Pins OpenBLAS to the calling thread, once per process (thread-safe static init).
// The OpenMP build of OpenBLAS implements openblas_set_num_threads with
// omp_set_num_threads, which outside a parallel region would leave every
// later OpenMP region of this thread on one thread: put OpenMP's count back.
// The portable GEMM never starts threads of its own.
inline void blas_pin_single_thread() {
#if ZT_HAVE_OPENBLAS
    static const bool pinned = [] {
        const int omp_threads = omp_get_max_threads();
        openblas_set_num_threads(1);
        if (!omp_in_parallel()) omp_set_num_threads(omp_threads);
        return true;
    }();
    (void)pinned;
#endif
}

#if ZT_HAVE_OPENBLAS
inline CBLAS_TRANSPOSE cblas_trans(Trans t) {
    return t ? CblasTrans : CblasNoTrans;
}
#endif

// C (M, N) = alpha op(A) (M, K) @ op(B) (K, N) + beta C on the calling thread.
// Dimensions must already be known to fit (blas_dim) when called inside an
// OpenMP region, where a throw would terminate.
inline void gemm(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
#if ZT_HAVE_OPENBLAS
    blas_pin_single_thread();
    cblas_sgemm(CblasRowMajor, cblas_trans(ta), cblas_trans(tb), blasint(M), blasint(N), blasint(K),
                alpha, A, blasint(lda), B, blasint(ldb), beta, C, blasint(ldc));
#else
    portable_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

inline void gemm(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
                 int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
#if ZT_HAVE_OPENBLAS
    blas_pin_single_thread();
    cblas_dgemm(CblasRowMajor, cblas_trans(ta), cblas_trans(tb), blasint(M), blasint(N), blasint(K),
                alpha, A, blasint(lda), B, blasint(ldb), beta, C, blasint(ldc));
#else
    portable_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

// y = alpha op(A) x + beta y on the calling thread, A (M, N) with row stride
// lda; unit strides for x and y.
inline void gemv(Trans ta, int64_t M, int64_t N, float alpha, const float* A, int64_t lda,
                 const float* x, float beta, float* y) {
#if ZT_HAVE_OPENBLAS
    blas_pin_single_thread();
    cblas_sgemv(CblasRowMajor, cblas_trans(ta), blasint(M), blasint(N), alpha, A, blasint(lda), x,
                1, beta, y, 1);
#else
    portable_gemv(ta, M, N, alpha, A, lda, x, beta, y);
#endif
}

// The same product split over the OpenMP threads: each thread computes one
// contiguous block of rows of C (or of columns, when N > M), so no element of
// C is written twice and each element's sum over K is that of a plain GEMM.
template <class Real>
void gemm_parallel(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, Real alpha, const Real* A,
                   int64_t lda, const Real* B, int64_t ldb, Real beta, Real* C, int64_t ldc) {
    for (int64_t d : {M, N, K, lda, ldb, ldc}) blas_dim(d);
    constexpr double kMinFlopsPerThread = 1 << 20;  // below this, fork/join costs more
    const int threads = int(std::min<double>(omp_get_max_threads(),
                                             std::max(1.0, 2.0 * M * N * K / kMinFlopsPerThread)));
    if (threads <= 1 || omp_in_parallel()) {
        gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    const bool split_rows = M >= N;
#pragma omp parallel num_threads(threads)
    {
        const int nt = omp_get_num_threads(), it = omp_get_thread_num();
        const int64_t len = split_rows ? M : N;
        const int64_t i0 = len * it / nt, i1 = len * (it + 1) / nt;
        if (split_rows) {
            const Real* Ai = ta == kNoTrans ? A + i0 * lda : A + i0;
            gemm(ta, tb, i1 - i0, N, K, alpha, Ai, lda, B, ldb, beta, C + i0 * ldc, ldc);
        } else {
            const Real* Bi = tb == kNoTrans ? B + i0 : B + i0 * ldb;
            gemm(ta, tb, M, i1 - i0, K, alpha, A, lda, Bi, ldb, beta, C + i0, ldc);
        }
    }
}

}  // namespace zt::cpu
