// Token and learned-position embedding on the GPU, forward and backward.
//
// Invariant: backward accumulates (+=) into dwte and dwpe, deterministically
// and without atomics or a sort. The scatter into dwte is split by
// (column c, token class k = token mod K): thread (c, k) walks every row in
// order and adds the rows whose token falls in class k. Two rows with the
// same token always meet in the same thread, so no two threads ever write
// one element, and each element sums its rows in row order, the order of the
// CPU reference, which makes the fp32 result bit-identical to it. The cost
// is that each thread reads all B*T token ids (a warp-uniform, cached load);
// K is chosen so that C*K threads fill the device.
// bf16 caveat: each add into a bf16 dwte element rounds once, so a token seen
// r times carries ~sqrt(r) bf16 roundings (fp32 master gradients are the
// remedy if that ever matters; llm.c buckets on the host instead).
#include <algorithm>

#include "ops/cuda/cuda_check.h"
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/embedding.h"

namespace zt::cuda {

namespace {

constexpr int kThreads = 256;

// ---- kernels ---------------------------------------------------------------

template <class T>
__global__ void embedding_forward_kernel(T* out, const int32_t* tokens, const T* wte, const T* wpe,
                                         int64_t rows, int T_, int C) {
    const int64_t total = rows * C;
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
         idx += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = idx / C;
        const int c = int(idx % C);
        float v = load(wte[int64_t(tokens[r]) * C + c]);
        if (wpe) v += load(wpe[(r % T_) * C + c]);
        out[idx] = store<T>(v);
    }
}

// block (32 columns, 8 classes); grid (column tiles, class tiles).
template <class T>
__global__ void embedding_backward_wte_kernel(T* dwte, const T* dout, const int32_t* tokens,
                                              int64_t rows, int C, int K) {
    const int c = blockIdx.x * 32 + threadIdx.x;
    const int k = blockIdx.y * 8 + threadIdx.y;
    if (c >= C || k >= K) return;
    for (int64_t r = 0; r < rows; r++) {
        const int32_t tok = tokens[r];
        if (tok % K == k) add_to(dwte + int64_t(tok) * C + c, load(dout[r * C + c]));
    }
}

// One thread per (t, c): the sum over the batch in batch order.
template <class T>
__global__ void embedding_backward_wpe_kernel(T* dwpe, const T* dout, int B, int T_, int C) {
    const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= int64_t(T_) * C) return;
    const int64_t t = idx / C;
    const int c = int(idx % C);
    for (int b = 0; b < B; b++) add_to(dwpe + idx, load(dout[(int64_t(b) * T_ + t) * C + c]));
}

// ---- raw launchers ---------------------------------------------------------

template <class T>
void launch_embedding_forward(T* out, const int32_t* tokens, const T* wte, const T* wpe, int B,
                              int T_, int C, cudaStream_t stream) {
    const int64_t total = int64_t(B) * T_ * C;
    embedding_forward_kernel<T><<<elementwise_blocks(total, kThreads), kThreads, 0, stream>>>(
        out, tokens, wte, wpe, int64_t(B) * T_, T_, C);
    ZT_CUDA_LAUNCH_CHECK("embedding_forward_kernel");
}

template <class T>
void launch_embedding_backward(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int B,
                               int T_, int C, cudaStream_t stream) {
    if (dwte) {
        // ~64k threads in all, at least one class, never more classes than rows.
        const int64_t rows = int64_t(B) * T_;
        const int K = int(std::clamp<int64_t>(65536 / C, 1, std::min<int64_t>(rows, 4096)));
        const dim3 grid(unsigned(ceil_div(C, 32)), unsigned(ceil_div(K, 8)));
        embedding_backward_wte_kernel<T>
            <<<grid, dim3(32, 8), 0, stream>>>(dwte, dout, tokens, rows, C, K);
        ZT_CUDA_LAUNCH_CHECK("embedding_backward_wte_kernel");
    }
    if (dwpe) {
        embedding_backward_wpe_kernel<T>
            <<<unsigned(ceil_div(int64_t(T_) * C, kThreads)), kThreads, 0, stream>>>(dwpe, dout, B,
                                                                                     T_, C);
        ZT_CUDA_LAUNCH_CHECK("embedding_backward_wpe_kernel");
    }
}

// ---- checked entries -------------------------------------------------------

void check_dims(const char* op, int B, int T_, int C) {
    ZT_CHECK(B > 0 && T_ > 0 && C > 0, "%s: bad shape B=%d T=%d C=%d", op, B, T_, C);
}

template <class T>
void embedding_forward_checked(T* out, const int32_t* tokens, const T* wte, const T* wpe, int B,
                               int T_, int C, cudaStream_t stream) {
    check_dims("embedding_forward", B, T_, C);
    ZT_CHECK(out && tokens && wte, "embedding_forward: null device pointer");
    ZT_CHECK(is_aligned(out) && is_aligned(tokens) && is_aligned(wte) && is_aligned(wpe),
             "embedding_forward: misaligned device pointer");
    launch_embedding_forward(out, tokens, wte, wpe, B, T_, C, stream);
}

template <class T>
void embedding_backward_checked(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int B,
                                int T_, int C, cudaStream_t stream) {
    check_dims("embedding_backward", B, T_, C);
    ZT_CHECK(dout && tokens, "embedding_backward: null dout or tokens");
    ZT_CHECK(is_aligned(dwte) && is_aligned(dwpe) && is_aligned(dout) && is_aligned(tokens),
             "embedding_backward: misaligned device pointer");
    launch_embedding_backward(dwte, dwpe, dout, tokens, B, T_, C, stream);
}

}  // namespace

void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                       int T, int C, cudaStream_t stream) {
    embedding_forward_checked(out, tokens, wte, wpe, B, T, C, stream);
}
void embedding_forward(__nv_bfloat16* out, const int32_t* tokens, const __nv_bfloat16* wte,
                       const __nv_bfloat16* wpe, int B, int T, int C, cudaStream_t stream) {
    embedding_forward_checked(out, tokens, wte, wpe, B, T, C, stream);
}
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B,
                        int T, int C, cudaStream_t stream) {
    embedding_backward_checked(dwte, dwpe, dout, tokens, B, T, C, stream);
}
void embedding_backward(__nv_bfloat16* dwte, __nv_bfloat16* dwpe, const __nv_bfloat16* dout,
                        const int32_t* tokens, int B, int T, int C, cudaStream_t stream) {
    embedding_backward_checked(dwte, dwpe, dout, tokens, B, T, C, stream);
}

}  // namespace zt::cuda
