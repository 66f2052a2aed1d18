// The engine's own fp32/fp64 GEMM and fp32 GEMV (row-major, the transposes and
// leading dimensions of the CPU ops), for builds without OpenBLAS
// (-DZT_BLAS=OFF, or AUTO where OpenBLAS is not installed): blas.h routes its
// gemm/gemv here then. It is always compiled, so the OpenBLAS build's tests
// compare the two.
//
// Semantics are CBLAS's: C (M, N) = alpha op(A) (M, K) @ op(B) (K, N) + beta C,
// where op(A) is A (M, K) stored with row stride lda, or A stored as (K, M)
// when trans_a; beta == 0 never reads C (a NaN there does not survive), and
// K == 0 only scales C by beta.
//
// Invariant: one call runs on the calling thread only (the same as blas.h's
// single-threaded OpenBLAS), so it may run inside an OpenMP region;
// blas.h's gemm_parallel splits a large product over the OpenMP threads.
#pragma once

#include <cstdint>

namespace zt::cpu {

void portable_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                   int64_t ldc);
void portable_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
                   const double* A, int64_t lda, const double* B, int64_t ldb, double beta,
                   double* C, int64_t ldc);

// y = alpha op(A) x + beta y, A (M, N) row-major with row stride lda: op(A) is
// A (y has M elements, x N) or A transposed (y has N, x M). Unit strides.
void portable_gemv(bool trans_a, int64_t M, int64_t N, float alpha, const float* A, int64_t lda,
                   const float* x, float beta, float* y);

}  // namespace zt::cpu
