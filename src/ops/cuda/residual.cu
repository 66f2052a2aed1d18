// The residual add and the fp32-logits product on the GPU (residual.h).
//
// Invariant: the add computes in fp32 and rounds each element once, as the CPU
// reference does; the product is one cuBLASLt GEMM with fp32 compute.
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/gemm.h"
#include "ops/cuda/residual.h"

namespace zt::cuda {

namespace {

constexpr int kThreads = 256;

template <class T>
__global__ void add_inplace_kernel(T* y, const T* x, int64_t n) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x)
        y[i] = store<T>(load(y[i]) + load(x[i]));
}

template <class T>
void add_inplace_launch(T* y, const T* x, int64_t n, cudaStream_t stream) {
    ZT_CHECK(n >= 0, "add_inplace: negative length %lld", (long long)n);
    if (n == 0) return;
    ZT_CHECK(y && x, "add_inplace: null pointer (y %p, x %p)", static_cast<void*>(y),
             static_cast<const void*>(x));
    const int64_t want = (n + kThreads - 1) / kThreads;
    const int blocks = int(want < 65535 * 8 ? want : 65535 * 8);
    add_inplace_kernel<<<blocks, kThreads, 0, stream>>>(y, x, n);
    ZT_CUDA_LAUNCH_CHECK("add_inplace_kernel");
}

}  // namespace

void add_inplace(float* y, const float* x, int64_t n, cudaStream_t stream) {
    add_inplace_launch(y, x, n, stream);
}
void add_inplace(__nv_bfloat16* y, const __nv_bfloat16* x, int64_t n, cudaStream_t stream) {
    add_inplace_launch(y, x, n, stream);
}

void matmul_forward(float* out, const __nv_bfloat16* inp, const __nv_bfloat16* weight,
                    const __nv_bfloat16* bias, int64_t N, int C, int OC, cudaStream_t stream) {
    ZT_CHECK(N >= 0 && C > 0 && OC > 0, "matmul_forward (fp32 out): bad shape N=%lld C=%d OC=%d",
             (long long)N, C, OC);
    ZT_CHECK(bias == nullptr,
             "matmul_forward (fp32 out): a bf16 bias with fp32 logits is not supported (the "
             "classifier has none)");
    if (N == 0) return;
    ZT_CHECK(out && inp && weight, "matmul_forward (fp32 out): null pointer");
    GemmDesc g;
    g.trans_a = true;
    g.m = OC, g.n = N, g.k = C;
    g.A = weight, g.lda = C;
    g.B = inp, g.ldb = C;
    g.ab_type = CUDA_R_16BF;
    g.D = out, g.ldd = OC;
    g.d_type = CUDA_R_32F;
    gemm(g, stream);
}

}  // namespace zt::cuda
