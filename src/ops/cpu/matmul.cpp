// Matmul (linear layer) forward and backward on the CPU: out = inp @ W^T + b.
//
// Invariant: backward accumulates (+=) into dinp, dweight, dbias; a null
// d-pointer skips that product. The GEMMs go to blas.h (OpenBLAS or the
// portable GEMM) with beta = 1 so the accumulation costs nothing extra; the
// bias column sums are split over columns so no two threads ever write the
// same element. The bf16 overloads
// run their GEMMs through gemm_bf16 (oneDNN) with beta = 1 likewise, and sum
// the bias columns in fp32 before adding once to dbias.
#include "ops/matmul.h"

#include <omp.h>

#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "core/check.h"
#include "ops/cpu/blas.h"
#include "ops/cpu/gemm_bf16.h"

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
    gemm_parallel(kNoTrans, kTrans, N, OC, C, Real(1), inp, C, weight, C, bias ? Real(1) : Real(0),
                  out, OC);
}

template <class Real>
void matmul_backward_impl(Real* dinp, Real* dweight, Real* dbias, const Real* dout, const Real* inp,
                          const Real* weight, int64_t N, int C, int OC) {
    check_dims(N, C, OC);
    if (N == 0) return;
    if (dinp) {
        gemm_parallel(kNoTrans, kNoTrans, N, C, OC, Real(1), dout, OC, weight, C, Real(1), dinp, C);
    }
    if (dweight) {
        gemm_parallel(kTrans, kNoTrans, OC, C, N, Real(1), dout, OC, inp, C, Real(1), dweight, C);
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

// dbias (OC) += column sums of dout (N, OC), summed in fp32 and added once.
// Each thread owns a contiguous block of columns and walks all rows.
template <class Grad>
void bias_backward_bf16(Grad* dbias, const bf16* dout, int64_t N, int OC) {
#pragma omp parallel
    {
        const int nt = omp_get_num_threads(), it = omp_get_thread_num();
        const int o0 = int(int64_t(OC) * it / nt), o1 = int(int64_t(OC) * (it + 1) / nt);
        std::vector<float> sum(size_t(o1 - o0), 0.0f);  // (o1 - o0) columns of this thread
        float* s = sum.data();
        for (int64_t n = 0; n < N; n++) {
            const bf16* row = dout + n * OC + o0;
#pragma omp simd
            for (int o = 0; o < o1 - o0; o++) s[o] += bf16_to_f32(row[o]);
        }
        for (int o = o0; o < o1; o++) {
            if constexpr (std::is_same_v<Grad, bf16>)
                dbias[o] = f32_to_bf16(bf16_to_f32(dbias[o]) + s[o - o0]);
            else
                dbias[o] += s[o - o0];
        }
    }
}

template <class Grad>
void matmul_backward_bf16(bf16* dinp, Grad* dweight, Grad* dbias, const bf16* dout, const bf16* inp,
                          const bf16* weight, int64_t N, int C, int OC) {
    check_dims(N, C, OC);
    if (N == 0) return;
    if (dinp) gemm_bf16(false, false, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C);
    if (dweight) gemm_bf16(true, false, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
    if (dbias) bias_backward_bf16(dbias, dout, N, OC);
}

}  // namespace

void matmul_forward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int64_t N,
                    int C, int OC) {
    check_dims(N, C, OC);
    if (N == 0) return;
    if (bias)
        gemm_bf16_bias(false, true, N, OC, C, inp, C, weight, C, bias, out, OC);
    else
        gemm_bf16(false, true, N, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, OC);
}
void matmul_forward(float* out, const bf16* inp, const bf16* weight, const bf16* bias, int64_t N,
                    int C, int OC) {
    check_dims(N, C, OC);
    if (N == 0) return;
    if (bias)
        gemm_bf16_bias(false, true, N, OC, C, inp, C, weight, C, bias, out, OC);
    else
        gemm_bf16(false, true, N, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, OC);
}
void matmul_backward(bf16* dinp, float* dweight, float* dbias, const bf16* dout, const bf16* inp,
                     const bf16* weight, int64_t N, int C, int OC) {
    matmul_backward_bf16(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
}
void matmul_backward(bf16* dinp, bf16* dweight, bf16* dbias, const bf16* dout, const bf16* inp,
                     const bf16* weight, int64_t N, int C, int OC) {
    matmul_backward_bf16(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
}

const char* gemm_fp32_path() {
#if ZT_HAVE_OPENBLAS
    static const std::string path = std::string("openblas (") + openblas_get_config() + ")";
    return path.c_str();
#else
    return "portable blocked GEMM (built without OpenBLAS: ZT_BLAS=OFF or not found)";
#endif
}

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N,
                    int C, int OC) {
    matmul_forward_impl(out, inp, weight, bias, N, C, OC);
}
void matmul_forward_row(float* out, const float* x, const float* weight, const float* bias, int C,
                        int OC, int threads) {
    check_dims(1, C, OC);
    blas_pin_single_thread();  // each thread's GEMV runs on that thread alone
    threads = std::clamp(threads, 1, OC);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const int nt = omp_get_num_threads(), it = omp_get_thread_num();
        const int o0 = int(int64_t(OC) * it / nt), o1 = int(int64_t(OC) * (it + 1) / nt);
        if (o1 > o0) {
            if (bias) std::copy(bias + o0, bias + o1, out + o0);
            gemv(kNoTrans, o1 - o0, C, 1.0f, weight + int64_t(o0) * C, C, x, bias ? 1.0f : 0.0f,
                 out + o0);
        }
    }
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
