// MLP activations on the GPU: SwiGLU and tanh-approximated GELU.
//
// Invariant: backward accumulates (+=) into its input gradient. Both are
// written through the sigmoid s(z) = 1 / (1 + exp(-z)), exactly as the CPU
// reference (ops/cpu/mlp.cpp), so the two differ only by expf's rounding:
//   silu(g) = g s(g),  d/dg = s (1 + g (1 - s))
//   gelu(x) = x s(2u), u = sqrt(2/pi) (x + 0.044715 x^3)
//   d gelu/dx = s + 2 x s (1 - s) du/dx,  du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
// Elementwise grid-stride kernels, one element (or gate/up pair) per step.
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/mlp.h"

namespace zt::cuda {

namespace {

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluA = 0.044715f;
constexpr int kThreads = 256;

__device__ __forceinline__ float sigmoid(float z) {
    return 1.0f / (1.0f + expf(-z));
}

#define ZT_GRID_STRIDE(i, n)                                                  \
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
         i += int64_t(gridDim.x) * blockDim.x)

// ---- kernels ---------------------------------------------------------------

template <class T>
__global__ void swiglu_forward_kernel(T* out, const T* gate_up, int64_t N, int H) {
    ZT_GRID_STRIDE(idx, N * H) {
        const int64_t n = idx / H;
        const int i = int(idx % H);
        const float g = load(gate_up[n * 2 * H + i]), u = load(gate_up[n * 2 * H + H + i]);
        out[idx] = store<T>(g * sigmoid(g) * u);
    }
}

template <class T>
__global__ void swiglu_backward_kernel(T* dgate_up, const T* dout, const T* gate_up, int64_t N,
                                       int H) {
    ZT_GRID_STRIDE(idx, N * H) {
        const int64_t n = idx / H;
        const int i = int(idx % H);
        const float g = load(gate_up[n * 2 * H + i]), u = load(gate_up[n * 2 * H + H + i]);
        const float dy = load(dout[idx]), s = sigmoid(g);
        add_to(dgate_up + n * 2 * H + i, dy * u * s * (1.0f + g * (1.0f - s)));
        add_to(dgate_up + n * 2 * H + H + i, dy * g * s);
    }
}

template <class T>
__global__ void gelu_forward_kernel(T* out, const T* inp, int64_t n) {
    ZT_GRID_STRIDE(i, n) {
        const float x = load(inp[i]);
        const float u = kGeluC * (x + kGeluA * x * x * x);
        out[i] = store<T>(x * sigmoid(2.0f * u));
    }
}

template <class T>
__global__ void gelu_backward_kernel(T* dinp, const T* dout, const T* inp, int64_t n) {
    ZT_GRID_STRIDE(i, n) {
        const float x = load(inp[i]);
        const float u = kGeluC * (x + kGeluA * x * x * x);
        const float s = sigmoid(2.0f * u);
        const float du = kGeluC * (1.0f + 3.0f * kGeluA * x * x);
        add_to(dinp + i, load(dout[i]) * (s + 2.0f * x * s * (1.0f - s) * du));
    }
}

#undef ZT_GRID_STRIDE

// ---- raw launchers and checked entries --------------------------------------

template <class T>
void check_ptrs(const char* op, const T* a, const T* b, const T* c = nullptr) {
    ZT_CHECK(a && b, "%s: null device pointer", op);
    ZT_CHECK(is_aligned(a) && is_aligned(b) && is_aligned(c), "%s: misaligned device pointer", op);
}

void check_swiglu(const char* op, int64_t N, int H) {
    ZT_CHECK(N >= 0 && H > 0, "%s: bad shape N=%lld H=%d", op, (long long)N, H);
}

template <class T>
void swiglu_forward_checked(T* out, const T* gate_up, int64_t N, int H, cudaStream_t stream) {
    check_swiglu("swiglu_forward", N, H);
    if (N == 0) return;
    check_ptrs("swiglu_forward", static_cast<const T*>(out), gate_up);
    swiglu_forward_kernel<T>
        <<<elementwise_blocks(N * H, kThreads), kThreads, 0, stream>>>(out, gate_up, N, H);
    ZT_CUDA_LAUNCH_CHECK("swiglu_forward_kernel");
}

template <class T>
void swiglu_backward_checked(T* dgate_up, const T* dout, const T* gate_up, int64_t N, int H,
                             cudaStream_t stream) {
    check_swiglu("swiglu_backward", N, H);
    if (N == 0) return;
    check_ptrs("swiglu_backward", static_cast<const T*>(dgate_up), dout, gate_up);
    ZT_CHECK(gate_up, "swiglu_backward: null gate_up");
    swiglu_backward_kernel<T><<<elementwise_blocks(N * H, kThreads), kThreads, 0, stream>>>(
        dgate_up, dout, gate_up, N, H);
    ZT_CUDA_LAUNCH_CHECK("swiglu_backward_kernel");
}

template <class T>
void gelu_forward_checked(T* out, const T* inp, int64_t n, cudaStream_t stream) {
    ZT_CHECK(n >= 0, "gelu_forward: negative length %lld", (long long)n);
    if (n == 0) return;
    check_ptrs("gelu_forward", static_cast<const T*>(out), inp);
    gelu_forward_kernel<T><<<elementwise_blocks(n, kThreads), kThreads, 0, stream>>>(out, inp, n);
    ZT_CUDA_LAUNCH_CHECK("gelu_forward_kernel");
}

template <class T>
void gelu_backward_checked(T* dinp, const T* dout, const T* inp, int64_t n, cudaStream_t stream) {
    ZT_CHECK(n >= 0, "gelu_backward: negative length %lld", (long long)n);
    if (n == 0) return;
    check_ptrs("gelu_backward", static_cast<const T*>(dinp), dout, inp);
    ZT_CHECK(inp, "gelu_backward: null inp");
    gelu_backward_kernel<T>
        <<<elementwise_blocks(n, kThreads), kThreads, 0, stream>>>(dinp, dout, inp, n);
    ZT_CUDA_LAUNCH_CHECK("gelu_backward_kernel");
}

}  // namespace

void swiglu_forward(float* out, const float* gate_up, int64_t N, int H, cudaStream_t stream) {
    swiglu_forward_checked(out, gate_up, N, H, stream);
}
void swiglu_forward(__nv_bfloat16* out, const __nv_bfloat16* gate_up, int64_t N, int H,
                    cudaStream_t stream) {
    swiglu_forward_checked(out, gate_up, N, H, stream);
}
void swiglu_backward(float* dgate_up, const float* dout, const float* gate_up, int64_t N, int H,
                     cudaStream_t stream) {
    swiglu_backward_checked(dgate_up, dout, gate_up, N, H, stream);
}
void swiglu_backward(__nv_bfloat16* dgate_up, const __nv_bfloat16* dout,
                     const __nv_bfloat16* gate_up, int64_t N, int H, cudaStream_t stream) {
    swiglu_backward_checked(dgate_up, dout, gate_up, N, H, stream);
}
void gelu_forward(float* out, const float* inp, int64_t n, cudaStream_t stream) {
    gelu_forward_checked(out, inp, n, stream);
}
void gelu_forward(__nv_bfloat16* out, const __nv_bfloat16* inp, int64_t n, cudaStream_t stream) {
    gelu_forward_checked(out, inp, n, stream);
}
void gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n,
                   cudaStream_t stream) {
    gelu_backward_checked(dinp, dout, inp, n, stream);
}
void gelu_backward(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                   int64_t n, cudaStream_t stream) {
    gelu_backward_checked(dinp, dout, inp, n, stream);
}

}  // namespace zt::cuda
