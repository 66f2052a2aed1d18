// Matmul (linear layer) forward and backward on the CPU: out = inp @ W^T + b.
//
// Invariant: backward accumulates (+=) into dinp, dweight, dbias; a null
// d-pointer skips that product. The GEMMs go to OpenBLAS with beta = 1 so the
// accumulation costs nothing extra; the bias column sums are split over
// columns so no two threads ever write the same element.
#include "ops/matmul.h"

#include <omp.h>

#include <algorithm>

#include "core/check.h"
#include "ops/cpu/blas.h"

namespace zt::cpu {

namespace {

void check_dims(int64_t N, int C, int OC) {
    ZT_CHECK(N >= 0 && C > 0 && OC > 0, "matmul: bad shape N=%lld C=%d OC=%d", (long long)N, C, OC);
}

template <class Real>
void matmul_forward_impl(Real* out, const Real* inp, const Real* weight, const Real* bias,
                         int64_t N, int C, int OC) {
    check_dims(N, C, OC);
    if (N == 0) return;
    if (bias) {
#pragma omp parallel for schedule(static)
        for (int64_t n = 0; n < N; n++) std::copy(bias, bias + OC, out + n * OC);
    }
    gemm_parallel(CblasNoTrans, CblasTrans, N, OC, C, Real(1), inp, C, weight, C,
                  bias ? Real(1) : Real(0), out, OC);
}

template <class Real>
void matmul_backward_impl(Real* dinp, Real* dweight, Real* dbias, const Real* dout, const Real* inp,
                          const Real* weight, int64_t N, int C, int OC) {
    check_dims(N, C, OC);
    if (N == 0) return;
    if (dinp) {
        gemm_parallel(CblasNoTrans, CblasNoTrans, N, C, OC, Real(1), dout, OC, weight, C, Real(1),
                      dinp, C);
    }
    if (dweight) {
        gemm_parallel(CblasTrans, CblasNoTrans, OC, C, N, Real(1), dout, OC, inp, C, Real(1),
                      dweight, C);
    }
    if (dbias) {
        // Each thread owns a contiguous block of columns and walks all rows.
#pragma omp parallel
        {
            const int nt = omp_get_num_threads(), it = omp_get_thread_num();
            const int o0 = int(int64_t(OC) * it / nt), o1 = int(int64_t(OC) * (it + 1) / nt);
            for (int64_t n = 0; n < N; n++) {
                const Real* row = dout + n * OC;
#pragma omp simd
                for (int o = o0; o < o1; o++) dbias[o] += row[o];
            }
        }
    }
}

}  // namespace

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N,
                    int C, int OC) {
    matmul_forward_impl(out, inp, weight, bias, N, C, OC);
}
void matmul_forward(double* out, const double* inp, const double* weight, const double* bias,
                    int64_t N, int C, int OC) {
    matmul_forward_impl(out, inp, weight, bias, N, C, OC);
}
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int C, int OC) {
    matmul_backward_impl(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
}
void matmul_backward(double* dinp, double* dweight, double* dbias, const double* dout,
                     const double* inp, const double* weight, int64_t N, int C, int OC) {
    matmul_backward_impl(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
}

}  // namespace zt::cpu
