// Rotary position embedding (rotate_half) on the GPU, forward and backward.
//
// Invariant: forward rotates each (x[i], x[i + D/2]) pair of every head by the
// angle t w_i, preserving the pair's norm; backward applies the transpose
// (inverse) rotation and accumulates (+=) into dinp. One thread owns one pair,
// reading both elements before writing either, so out may alias inp.
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/rope.h"

namespace zt::cuda {

namespace {

// ---- kernels ---------------------------------------------------------------

__global__ void rope_table_kernel(float* cos_t, float* sin_t, int T, int head_dim, double theta) {
    const int half = head_dim / 2;
    const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= int64_t(T) * half) return;
    const int t = int(idx / half), i = int(idx % half);
    // The CPU's float32 arithmetic (ops/cpu/rope.cpp), step for step.
    const float expo = float(2 * i) / float(head_dim);
    const float inv_freq = 1.0f / float(pow(theta, double(expo)));
    const float angle = float(t) * inv_freq;
    cos_t[idx] = float(cos(double(angle)));
    sin_t[idx] = float(sin(double(angle)));
}

// One thread per (row, head, pair i); rows are (b, t) with t = row % T.
template <class T, bool kBackward>
__global__ void rope_kernel(T* out, const T* inp, const float* cos_t, const float* sin_t,
                            int64_t rows, int T_, int n_head, int head_dim, int64_t row_stride) {
    const int half = head_dim / 2;
    const int64_t total = rows * n_head * half;
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
         idx += int64_t(gridDim.x) * blockDim.x) {
        const int i = int(idx % half);
        const int64_t rh = idx / half;
        const int h = int(rh % n_head);
        const int64_t r = rh / n_head;
        const int64_t t = r % T_;
        const float c = cos_t[t * half + i], s = sin_t[t * half + i];
        const int64_t base = r * row_stride + int64_t(h) * head_dim + i;
        const float x1 = load(inp[base]), x2 = load(inp[base + half]);
        if (kBackward) {  // R^T: the inverse rotation, accumulated
            add_to(out + base, x1 * c + x2 * s);
            add_to(out + base + half, x2 * c - x1 * s);
        } else {
            out[base] = store<T>(x1 * c - x2 * s);
            out[base + half] = store<T>(x2 * c + x1 * s);
        }
    }
}

// ---- raw launchers ---------------------------------------------------------

constexpr int kThreads = 256;

template <class T, bool kBackward>
void launch_rope(T* out, const T* inp, const float* cos_t, const float* sin_t, int B, int T_,
                 int n_head, int head_dim, int64_t row_stride, cudaStream_t stream) {
    const int64_t total = int64_t(B) * T_ * n_head * (head_dim / 2);
    rope_kernel<T, kBackward><<<elementwise_blocks(total, kThreads), kThreads, 0, stream>>>(
        out, inp, cos_t, sin_t, int64_t(B) * T_, T_, n_head, head_dim, row_stride);
    ZT_CUDA_LAUNCH_CHECK(kBackward ? "rope_kernel<backward>" : "rope_kernel<forward>");
}

// ---- checked entries -------------------------------------------------------

void check_dims(const char* op, int B, int T_, int n_head, int head_dim, int64_t row_stride) {
    ZT_CHECK(B > 0 && T_ > 0 && n_head > 0, "%s: bad shape B=%d T=%d n_head=%d", op, B, T_, n_head);
    ZT_CHECK(head_dim > 0 && head_dim % 2 == 0, "%s: head_dim %d must be even and positive", op,
             head_dim);
    ZT_CHECK(int64_t(n_head) * head_dim <= row_stride,
             "%s: %d heads of %d exceed the row stride %lld", op, n_head, head_dim,
             (long long)row_stride);
}

template <class T, bool kBackward>
void rope_checked(const char* op, T* out, const T* inp, const float* cos_t, const float* sin_t,
                  int B, int T_, int n_head, int head_dim, int64_t row_stride,
                  cudaStream_t stream) {
    check_dims(op, B, T_, n_head, head_dim, row_stride);
    ZT_CHECK(out && inp && cos_t && sin_t, "%s: null device pointer", op);
    ZT_CHECK(is_aligned(out) && is_aligned(inp) && is_aligned(cos_t) && is_aligned(sin_t),
             "%s: misaligned device pointer", op);
    if (kBackward) {
        ZT_CHECK(static_cast<const void*>(out) != static_cast<const void*>(inp),
                 "%s: dinp must not alias dout (it accumulates)", op);
    }
    launch_rope<T, kBackward>(out, inp, cos_t, sin_t, B, T_, n_head, head_dim, row_stride, stream);
}

}  // namespace

void rope_table(float* cos, float* sin, int T, int head_dim, float theta, cudaStream_t stream) {
    ZT_CHECK(T > 0 && head_dim > 0 && head_dim % 2 == 0,
             "rope_table: need T > 0 and an even head_dim, got T=%d head_dim=%d", T, head_dim);
    ZT_CHECK(theta > 1.0f, "rope_table: theta %g must exceed 1", double(theta));
    ZT_CHECK(cos && sin, "rope_table: null device pointer");
    const int64_t n = int64_t(T) * (head_dim / 2);
    rope_table_kernel<<<unsigned(ceil_div(n, kThreads)), kThreads, 0, stream>>>(
        cos, sin, T, head_dim, double(theta));
    ZT_CUDA_LAUNCH_CHECK("rope_table_kernel");
}

void rope_forward(float* out, const float* inp, const float* cos, const float* sin, int B, int T,
                  int n_head, int head_dim, int64_t row_stride, cudaStream_t stream) {
    rope_checked<float, false>("rope_forward", out, inp, cos, sin, B, T, n_head, head_dim,
                               row_stride, stream);
}
void rope_forward(__nv_bfloat16* out, const __nv_bfloat16* inp, const float* cos, const float* sin,
                  int B, int T, int n_head, int head_dim, int64_t row_stride, cudaStream_t stream) {
    rope_checked<__nv_bfloat16, false>("rope_forward", out, inp, cos, sin, B, T, n_head, head_dim,
                                       row_stride, stream);
}
void rope_backward(float* dinp, const float* dout, const float* cos, const float* sin, int B, int T,
                   int n_head, int head_dim, int64_t row_stride, cudaStream_t stream) {
    rope_checked<float, true>("rope_backward", dinp, dout, cos, sin, B, T, n_head, head_dim,
                              row_stride, stream);
}
void rope_backward(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const float* cos,
                   const float* sin, int B, int T, int n_head, int head_dim, int64_t row_stride,
                   cudaStream_t stream) {
    rope_checked<__nv_bfloat16, true>("rope_backward", dinp, dout, cos, sin, B, T, n_head, head_dim,
                                      row_stride, stream);
}

}  // namespace zt::cuda
