// Matmul forward and backward on the GPU: cuBLASLt GEMMs plus one reduction.
//
// Invariant: backward accumulates (+=) into dinp, dweight and dbias (dweight
// and dbias in the input type or, for a bf16 model, fp32); the two
// GEMMs do it with beta = 1 and the bias sum through the deterministic column
// reduction (column_sum.cuh), which adds each column's total once. Row-major
// (R, S) arrays are column-major (S, R) to cuBLASLt, so with Wc = weight as
// (C, OC), Ic = inp as (C, N), Oc = out as (OC, N):
//   forward   Oc      = Wc^T Ic      (m = OC, n = N,  k = C)
//   dinp      dIc    += Wc Oc'       (m = C,  n = N,  k = OC)
//   dweight   dWc    += Ic Oc'^T     (m = C,  n = OC, k = N)
#include "ops/cuda/column_sum.cuh"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/gemm.h"
#include "ops/cuda/matmul.h"

namespace zt::cuda {

namespace {

// f(n, c) = dout[n, c]: the bias gradient is dout's column sums.
template <class T>
struct DoutColumn {
    const T* dout;
    int OC;
    __device__ float operator()(int64_t n, int c) const { return load(dout[n * OC + c]); }
};

template <class T>
void check_matmul(const char* op, const T* inp, const T* weight, int64_t N, int C, int OC) {
    ZT_CHECK(N >= 0 && C > 0 && OC > 0, "%s: bad shape N=%lld C=%d OC=%d", op, (long long)N, C, OC);
    ZT_CHECK(N == 0 || (inp && weight), "%s: null input or weight", op);
    ZT_CHECK(is_aligned(inp) && is_aligned(weight), "%s: inp/weight not aligned to %zu bytes", op,
             alignof(T));
}

template <class T>
void forward_gemm(T* out, const T* inp, const T* weight, const T* bias, T* pre_gelu, int64_t N,
                  int C, int OC, cudaStream_t stream) {
    GemmDesc g;
    g.trans_a = true;
    g.m = OC, g.n = N, g.k = C;
    g.A = weight, g.lda = C;
    g.B = inp, g.ldb = C;
    g.ab_type = cuda_data_type<T>();
    g.D = out, g.ldd = OC;
    g.d_type = cuda_data_type<T>();
    g.bias = bias;
    if (pre_gelu) {
        g.epilogue = GemmEpilogue::gelu_aux_bias;
        g.aux = pre_gelu;
        g.ld_aux = OC;
    } else {
        g.epilogue = bias ? GemmEpilogue::bias : GemmEpilogue::none;
    }
    gemm(g, stream);
}

template <class T>
void matmul_forward_checked(T* out, const T* inp, const T* weight, const T* bias, int64_t N, int C,
                            int OC, cudaStream_t stream) {
    check_matmul("matmul_forward", inp, weight, N, C, OC);
    ZT_CHECK(N == 0 || out, "matmul_forward: null out");
    if (N == 0) return;
    forward_gemm<T>(out, inp, weight, bias, nullptr, N, C, OC, stream);
}

template <class T>
void matmul_gelu_forward_checked(T* out, T* pre_gelu, const T* inp, const T* weight, const T* bias,
                                 int64_t N, int C, int OC, cudaStream_t stream) {
    check_matmul("matmul_gelu_forward", inp, weight, N, C, OC);
    ZT_CHECK(OC % 8 == 0,
             "matmul_gelu_forward: OC=%d must be a multiple of 8 (cuBLASLt GELU aux rule); "
             "use matmul_forward + gelu_forward for this shape",
             OC);
    ZT_CHECK(N == 0 || (out && pre_gelu), "matmul_gelu_forward: null out or pre_gelu");
    ZT_CHECK(out != pre_gelu, "matmul_gelu_forward: out and pre_gelu must differ");
    if (N == 0) return;
    forward_gemm<T>(out, inp, weight, bias, pre_gelu, N, C, OC, stream);
}

template <class T, class G>
void matmul_backward_checked(T* dinp, G* dweight, G* dbias, const T* dout, const T* inp,
                             const T* weight, int64_t N, int C, int OC, cudaStream_t stream) {
    check_matmul("matmul_backward", inp, weight, N, C, OC);
    ZT_CHECK(N == 0 || dout, "matmul_backward: null dout");
    if (N == 0) return;
    if (dinp) {
        GemmDesc g;
        g.m = C, g.n = N, g.k = OC;
        g.A = weight, g.lda = C;
        g.B = dout, g.ldb = OC;
        g.ab_type = cuda_data_type<T>();
        g.D = dinp, g.ldd = C;
        g.d_type = cuda_data_type<T>();
        g.beta = 1.0f;
        gemm(g, stream);
    }
    if (dweight) {
        GemmDesc g;
        g.trans_b = true;
        g.m = C, g.n = OC, g.k = N;
        g.A = inp, g.lda = C;
        g.B = dout, g.ldb = OC;
        g.ab_type = cuda_data_type<T>();
        g.D = dweight, g.ldd = C;
        g.d_type = cuda_data_type<G>();
        g.beta = 1.0f;
        gemm(g, stream);
    }
    if (dbias) column_sum_accumulate(dbias, DoutColumn<T>{dout, OC}, N, OC, stream);
}

}  // namespace

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N,
                    int C, int OC, cudaStream_t stream) {
    matmul_forward_checked(out, inp, weight, bias, N, C, OC, stream);
}
void matmul_forward(__nv_bfloat16* out, const __nv_bfloat16* inp, const __nv_bfloat16* weight,
                    const __nv_bfloat16* bias, int64_t N, int C, int OC, cudaStream_t stream) {
    matmul_forward_checked(out, inp, weight, bias, N, C, OC, stream);
}
void matmul_gelu_forward(float* out, float* pre_gelu, const float* inp, const float* weight,
                         const float* bias, int64_t N, int C, int OC, cudaStream_t stream) {
    matmul_gelu_forward_checked(out, pre_gelu, inp, weight, bias, N, C, OC, stream);
}
void matmul_gelu_forward(__nv_bfloat16* out, __nv_bfloat16* pre_gelu, const __nv_bfloat16* inp,
                         const __nv_bfloat16* weight, const __nv_bfloat16* bias, int64_t N, int C,
                         int OC, cudaStream_t stream) {
    matmul_gelu_forward_checked(out, pre_gelu, inp, weight, bias, N, C, OC, stream);
}
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int C, int OC, cudaStream_t stream) {
    matmul_backward_checked(dinp, dweight, dbias, dout, inp, weight, N, C, OC, stream);
}
void matmul_backward(__nv_bfloat16* dinp, float* dweight, float* dbias, const __nv_bfloat16* dout,
                     const __nv_bfloat16* inp, const __nv_bfloat16* weight, int64_t N, int C,
                     int OC, cudaStream_t stream) {
    matmul_backward_checked(dinp, dweight, dbias, dout, inp, weight, N, C, OC, stream);
}
void matmul_backward(__nv_bfloat16* dinp, __nv_bfloat16* dweight, __nv_bfloat16* dbias,
                     const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                     const __nv_bfloat16* weight, int64_t N, int C, int OC, cudaStream_t stream) {
    matmul_backward_checked(dinp, dweight, dbias, dout, inp, weight, N, C, OC, stream);
}

}  // namespace zt::cuda
