// Row-major GEMM on bf16 operands with fp32 accumulation, for the bf16 ops.
//
//   C (M, N) = alpha op(A) (M, K) @ op(B) (K, N) + beta C
//
// A and B are bf16; C is fp32 or bf16 (a bf16 C is read, accumulated in fp32
// and rounded once on the way out). Like gemm_parallel in blas.h, these split
// the work over the OpenMP threads themselves and must be called from outside
// a parallel region (called inside one, they run on the calling thread);
// gemm_bf16_serial runs on the calling thread and is the one to use inside an
// OpenMP region (attention: one GEMM per thread).
//
// Layout: A is stored (M, K) with row stride lda >= K, or (K, M) with lda >= M
// when trans_a; B is stored (K, N) with ldb >= N, or (N, K) with ldb >= K when
// trans_b; C is (M, N) with ldc >= N. Strides may exceed the column count (a
// head's columns inside packed qkv rows); padding is never read or written.
// alpha and beta are any finite floats; beta == 0 never reads C, so C may
// hold garbage (even NaN) then. M, N or K may be 0 (K == 0 gives C = beta C).
//
// Invariant: every path (oneDNN, or the fallback that widens to fp32 and
// calls sgemm) accumulates in fp32, so results differ only by summation order.
//
// With oneDNN (ZT_HAVE_DNNL) each distinct (shape, strides, transposes,
// alpha, beta, C dtype, thread count) is one matmul primitive, created on
// first use and cached (creation costs ~1 ms, far more than a small product);
// a training step reuses the same few shapes. The calls are thread-safe.
// Inside an OpenMP region, check the arguments are valid before the call: a
// refused call throws, and a throw out of a parallel region terminates.
// Which path runs is public: gemm_bf16_path() in ops/matmul.h. This header is
// ops' own (outside src/ops, include ops/<family>.h).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace zt::cpu {

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const bf16* A, int64_t lda, const bf16* B, int64_t ldb, float beta, float* C,
               int64_t ldc);
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const bf16* A, int64_t lda, const bf16* B, int64_t ldb, float beta, bf16* C,
               int64_t ldc);
void gemm_bf16_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const bf16* A, int64_t lda, const bf16* B, int64_t ldb, float beta, float* C,
                      int64_t ldc);
void gemm_bf16_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const bf16* A, int64_t lda, const bf16* B, int64_t ldb, float beta, bf16* C,
                      int64_t ldc);

// C (M, N) = op(A) @ op(B) + bias (N) added to every row, for a linear layer's
// forward: the bias joins the fp32 sum, so a bf16 C is rounded once. alpha is
// 1 and beta 0 (C is only written). Threads as gemm_bf16.
void gemm_bf16_bias(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const bf16* A,
                    int64_t lda, const bf16* B, int64_t ldb, const bf16* bias, float* C,
                    int64_t ldc);
void gemm_bf16_bias(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const bf16* A,
                    int64_t lda, const bf16* B, int64_t ldb, const bf16* bias, bf16* C,
                    int64_t ldc);

}  // namespace zt::cpu
