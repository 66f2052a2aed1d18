// RMSNorm and LayerNorm, forward and backward, on the GPU.
//
// Invariant: forward saves the fp32 row statistics that backward reads, and
// backward accumulates (+=) into dinp, dweight, dbias. One warp owns one row
// (rows are short: C <= ~16k), so every row reduction is a warp shuffle with
// no shared memory or barrier; forward is one fused kernel (statistics and
// output), and so is backward's dinp. The parameter gradients are sums over
// rows, done by the deterministic column reduction (column_sum.cuh) rather
// than atomics, so runs are bit-identical. Math as in ops/cpu/norm.cpp:
//   rms:   dx = r g - r^3 x mean(g x),                 g = dout w
//   layer: dx = r (g - mean(g) - xhat mean(g xhat)),   xhat = (x - mean) r
#include <initializer_list>

#include "ops/cuda/column_sum.cuh"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/norm.h"

namespace zt::cuda {

namespace {

constexpr int kRowsPerBlock = 8;  // warps per block, one row each

__device__ __forceinline__ int64_t warp_row() {
    return int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
}

// ---- kernels ---------------------------------------------------------------

template <class T>
__global__ void rmsnorm_forward_kernel(T* out, float* rstd, const T* inp, const T* weight,
                                       int64_t N, int C, float eps) {
    const int64_t row = warp_row();
    const int lane = threadIdx.x % 32;
    if (row >= N) return;
    const T* x = inp + row * C;
    float ss = 0.0f;
    for (int c = lane; c < C; c += 32) {
        const float v = load(x[c]);
        ss += v * v;
    }
    ss = warp_sum(ss);
    const float r = 1.0f / sqrtf(ss / float(C) + eps);
    if (lane == 0) rstd[row] = r;
    T* o = out + row * C;
    for (int c = lane; c < C; c += 32) o[c] = store<T>(load(weight[c]) * (load(x[c]) * r));
}

template <class T>
__global__ void rmsnorm_backward_dinp_kernel(T* dinp, const T* dout, const T* inp, const T* weight,
                                             const float* rstd, int64_t N, int C) {
    const int64_t row = warp_row();
    const int lane = threadIdx.x % 32;
    if (row >= N) return;
    const T* x = inp + row * C;
    const T* dy = dout + row * C;
    const float r = rstd[row];
    float gx = 0.0f;
    for (int c = lane; c < C; c += 32) gx += load(dy[c]) * load(weight[c]) * load(x[c]);
    gx = warp_sum(gx);
    const float k = r * r * r * gx / float(C);
    T* dx = dinp + row * C;
    for (int c = lane; c < C; c += 32) {
        add_to(dx + c, r * load(weight[c]) * load(dy[c]) - k * load(x[c]));
    }
}

template <class T>
__global__ void layernorm_forward_kernel(T* out, float* mean, float* rstd, const T* inp,
                                         const T* weight, const T* bias, int64_t N, int C,
                                         float eps) {
    const int64_t row = warp_row();
    const int lane = threadIdx.x % 32;
    if (row >= N) return;
    const T* x = inp + row * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += load(x[c]);
    const float m = warp_sum(s) / float(C);
    float v = 0.0f;  // second pass over the (cached) row: no cancellation when |mean| >> std
    for (int c = lane; c < C; c += 32) {
        const float d = load(x[c]) - m;
        v += d * d;
    }
    const float r = 1.0f / sqrtf(warp_sum(v) / float(C) + eps);
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
    T* o = out + row * C;
    for (int c = lane; c < C; c += 32) {
        o[c] = store<T>((load(x[c]) - m) * r * load(weight[c]) + load(bias[c]));
    }
}

template <class T>
__global__ void layernorm_backward_dinp_kernel(T* dinp, const T* dout, const T* inp,
                                               const T* weight, const float* mean,
                                               const float* rstd, int64_t N, int C) {
    const int64_t row = warp_row();
    const int lane = threadIdx.x % 32;
    if (row >= N) return;
    const T* x = inp + row * C;
    const T* dy = dout + row * C;
    const float m = mean[row], r = rstd[row];
    float g_sum = 0.0f, gx_sum = 0.0f;
    for (int c = lane; c < C; c += 32) {
        const float g = load(dy[c]) * load(weight[c]);
        g_sum += g;
        gx_sum += g * (load(x[c]) - m) * r;
    }
    const float g_mean = warp_sum(g_sum) / float(C), gx_mean = warp_sum(gx_sum) / float(C);
    T* dx = dinp + row * C;
    for (int c = lane; c < C; c += 32) {
        const float xhat = (load(x[c]) - m) * r;
        add_to(dx + c, r * (load(dy[c]) * load(weight[c]) - g_mean - xhat * gx_mean));
    }
}

// Column terms for the parameter gradients.
template <class T>
struct RmsWeightGrad {  // dout x r
    const T* dout;
    const T* inp;
    const float* rstd;
    int C;
    __device__ float operator()(int64_t n, int c) const {
        return load(dout[n * C + c]) * load(inp[n * C + c]) * rstd[n];
    }
};
template <class T>
struct LayerWeightGrad {  // dout xhat
    const T* dout;
    const T* inp;
    const float* mean;
    const float* rstd;
    int C;
    __device__ float operator()(int64_t n, int c) const {
        return load(dout[n * C + c]) * (load(inp[n * C + c]) - mean[n]) * rstd[n];
    }
};
template <class T>
struct LayerBiasGrad {  // dout
    const T* dout;
    int C;
    __device__ float operator()(int64_t n, int c) const { return load(dout[n * C + c]); }
};

// ---- raw launchers ---------------------------------------------------------

unsigned row_blocks(int64_t N) {
    return unsigned(ceil_div(N, kRowsPerBlock));
}

template <class T>
void launch_rmsnorm_forward(T* out, float* rstd, const T* inp, const T* weight, int64_t N, int C,
                            float eps, cudaStream_t stream) {
    rmsnorm_forward_kernel<T>
        <<<row_blocks(N), 32 * kRowsPerBlock, 0, stream>>>(out, rstd, inp, weight, N, C, eps);
    ZT_CUDA_LAUNCH_CHECK("rmsnorm_forward_kernel");
}

template <class T>
void launch_rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight,
                             const float* rstd, int64_t N, int C, cudaStream_t stream) {
    if (dinp) {
        rmsnorm_backward_dinp_kernel<T>
            <<<row_blocks(N), 32 * kRowsPerBlock, 0, stream>>>(dinp, dout, inp, weight, rstd, N, C);
        ZT_CUDA_LAUNCH_CHECK("rmsnorm_backward_dinp_kernel");
    }
    if (dweight) column_sum_accumulate(dweight, RmsWeightGrad<T>{dout, inp, rstd, C}, N, C, stream);
}

template <class T>
void launch_layernorm_forward(T* out, float* mean, float* rstd, const T* inp, const T* weight,
                              const T* bias, int64_t N, int C, float eps, cudaStream_t stream) {
    layernorm_forward_kernel<T><<<row_blocks(N), 32 * kRowsPerBlock, 0, stream>>>(
        out, mean, rstd, inp, weight, bias, N, C, eps);
    ZT_CUDA_LAUNCH_CHECK("layernorm_forward_kernel");
}

template <class T>
void launch_layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                               const T* weight, const float* mean, const float* rstd, int64_t N,
                               int C, cudaStream_t stream) {
    if (dinp) {
        layernorm_backward_dinp_kernel<T><<<row_blocks(N), 32 * kRowsPerBlock, 0, stream>>>(
            dinp, dout, inp, weight, mean, rstd, N, C);
        ZT_CUDA_LAUNCH_CHECK("layernorm_backward_dinp_kernel");
    }
    if (dweight) {
        column_sum_accumulate(dweight, LayerWeightGrad<T>{dout, inp, mean, rstd, C}, N, C, stream);
    }
    if (dbias) column_sum_accumulate(dbias, LayerBiasGrad<T>{dout, C}, N, C, stream);
}

// ---- checked entries -------------------------------------------------------

void check_dims(const char* op, int64_t N, int C) {
    ZT_CHECK(N >= 0 && C > 0, "%s: bad shape N=%lld C=%d", op, (long long)N, C);
    ZT_CHECK(N / kRowsPerBlock < (int64_t(1) << 31), "%s: N=%lld rows exceed the grid", op,
             (long long)N);
}

template <class T>
void check_ptrs(const char* op, std::initializer_list<const T*> ptrs) {
    for (const T* p : ptrs) {
        ZT_CHECK(p != nullptr, "%s: null device pointer", op);
        ZT_CHECK(is_aligned(p), "%s: pointer %p not aligned to %zu bytes", op,
                 static_cast<const void*>(p), alignof(T));
    }
}

template <class T>
void rmsnorm_forward_checked(T* out, float* rstd, const T* inp, const T* weight, int64_t N, int C,
                             float eps, cudaStream_t stream) {
    check_dims("rmsnorm_forward", N, C);
    if (N == 0) return;
    check_ptrs<T>("rmsnorm_forward", {out, inp, weight});
    check_ptrs<float>("rmsnorm_forward", {rstd});
    launch_rmsnorm_forward(out, rstd, inp, weight, N, C, eps, stream);
}

template <class T>
void rmsnorm_backward_checked(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight,
                              const float* rstd, int64_t N, int C, cudaStream_t stream) {
    check_dims("rmsnorm_backward", N, C);
    if (N == 0) return;
    check_ptrs<T>("rmsnorm_backward", {dout, inp, weight});
    check_ptrs<float>("rmsnorm_backward", {rstd});
    launch_rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C, stream);
}

template <class T>
void layernorm_forward_checked(T* out, float* mean, float* rstd, const T* inp, const T* weight,
                               const T* bias, int64_t N, int C, float eps, cudaStream_t stream) {
    check_dims("layernorm_forward", N, C);
    if (N == 0) return;
    check_ptrs<T>("layernorm_forward", {out, inp, weight, bias});
    check_ptrs<float>("layernorm_forward", {mean, rstd});
    launch_layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, eps, stream);
}

template <class T>
void layernorm_backward_checked(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                                const T* weight, const float* mean, const float* rstd, int64_t N,
                                int C, cudaStream_t stream) {
    check_dims("layernorm_backward", N, C);
    if (N == 0) return;
    check_ptrs<T>("layernorm_backward", {dout, inp, weight});
    check_ptrs<float>("layernorm_backward", {mean, rstd});
    launch_layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C, stream);
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N,
                     int C, float eps, cudaStream_t stream) {
    rmsnorm_forward_checked(out, rstd, inp, weight, N, C, eps, stream);
}
void rmsnorm_forward(__nv_bfloat16* out, float* rstd, const __nv_bfloat16* inp,
                     const __nv_bfloat16* weight, int64_t N, int C, float eps,
                     cudaStream_t stream) {
    rmsnorm_forward_checked(out, rstd, inp, weight, N, C, eps, stream);
}
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int64_t N, int C,
                      cudaStream_t stream) {
    rmsnorm_backward_checked(dinp, dweight, dout, inp, weight, rstd, N, C, stream);
}
void rmsnorm_backward(__nv_bfloat16* dinp, __nv_bfloat16* dweight, const __nv_bfloat16* dout,
                      const __nv_bfloat16* inp, const __nv_bfloat16* weight, const float* rstd,
                      int64_t N, int C, cudaStream_t stream) {
    rmsnorm_backward_checked(dinp, dweight, dout, inp, weight, rstd, N, C, stream);
}
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int64_t N, int C, float eps, cudaStream_t stream) {
    layernorm_forward_checked(out, mean, rstd, inp, weight, bias, N, C, eps, stream);
}
void layernorm_forward(__nv_bfloat16* out, float* mean, float* rstd, const __nv_bfloat16* inp,
                       const __nv_bfloat16* weight, const __nv_bfloat16* bias, int64_t N, int C,
                       float eps, cudaStream_t stream) {
    layernorm_forward_checked(out, mean, rstd, inp, weight, bias, N, C, eps, stream);
}
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd,
                        int64_t N, int C, cudaStream_t stream) {
    layernorm_backward_checked(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C, stream);
}
void layernorm_backward(__nv_bfloat16* dinp, __nv_bfloat16* dweight, __nv_bfloat16* dbias,
                        const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                        const __nv_bfloat16* weight, const float* mean, const float* rstd,
                        int64_t N, int C, cudaStream_t stream) {
    layernorm_backward_checked(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C, stream);
}

}  // namespace zt::cuda
