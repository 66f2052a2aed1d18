// AdamW (fused, multi-tensor), squared norm and scaling on the GPU.
//
// Invariant: adamw follows the CPU reference (ops/cpu/adamw.cpp) operation by
// operation: the same float scalars, computed on the host in double from the
// 1-based step, and the same association
//   m += (1 - b1) (g - m);  v = v b2 + (1 - b2) g g
//   p = p (1 - lr wd) + (-lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps)
// so the two differ only where a compiler contracts a multiply-add. One launch
// covers up to kMaxSlices ranges: the slice table rides in the kernel
// parameters, and block b finds its slice by the prefix of chunk counts.
// sum_squares sums in fp64 over a fixed grid and then a fixed tree, so its
// result depends only on the data, not on timing.
#include <cmath>

#include "ops/cuda/adamw.h"
#include "ops/cuda/context.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/cuda_common.cuh"

namespace zt::cuda {

namespace {

constexpr int kMaxSlices = 32;
constexpr int kChunk = 4096;  // elements per block
constexpr int kThreads = 256;

template <class G>
struct AdamWBatch {
    AdamWSlice<G> slices[kMaxSlices];
    int64_t first_chunk[kMaxSlices + 1];  // prefix sums of chunks per slice
    int count;
};

struct AdamWScalars {
    float decay, w1, beta2, w2, neg_step, bc2_sqrt, eps;
};

// ---- kernels ---------------------------------------------------------------

template <class G>
__global__ void adamw_kernel(const AdamWBatch<G> batch, const AdamWScalars s) {
    const int64_t chunk = blockIdx.x;
    int i = 0;
    while (i + 1 < batch.count && batch.first_chunk[i + 1] <= chunk) i++;
    const AdamWSlice<G>& sl = batch.slices[i];
    const int64_t begin = (chunk - batch.first_chunk[i]) * kChunk;
    const int64_t end = min(sl.n, begin + kChunk);
    const float decay = sl.apply_decay ? s.decay : 1.0f;
    for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) {
        const float g = load(sl.grad[j]);
        const float m = sl.m[j] + s.w1 * (g - sl.m[j]);
        const float v = sl.v[j] * s.beta2 + s.w2 * g * g;
        sl.m[j] = m;
        sl.v[j] = v;
        const float p = sl.param[j] * decay + s.neg_step * m / (sqrtf(v) / s.bc2_sqrt + s.eps);
        sl.param[j] = p;
        if (sl.param_bf16) sl.param_bf16[j] = bf16_from_f32_exact(p);
    }
}

constexpr int kSumBlocks = 1024;  // fixed: the summation order must not depend on the device

template <class T>
__global__ void sum_squares_partial_kernel(double* partial, const T* x, int64_t n) {
    __shared__ double shared[32];
    double acc = 0.0;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x) {
        const double v = double(load(x[i]));
        acc += v * v;
    }
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sum_squares_final_kernel(double* out, const double* partial, int count) {
    __shared__ double shared[32];
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) *out = acc;
}

template <class T>
__global__ void scale_kernel(T* x, int64_t n, float s) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x) {
        x[i] = store<T>(load(x[i]) * s);
    }
}

// ---- raw launchers ---------------------------------------------------------

AdamWScalars adamw_scalars(const AdamWHyper& h) {
    const double lr = h.lr, b1 = h.beta1, b2 = h.beta2;
    const double bc1 = 1.0 - std::pow(b1, double(h.step));
    const double bc2 = 1.0 - std::pow(b2, double(h.step));
    AdamWScalars s;
    s.decay = float(1.0 - lr * double(h.weight_decay));
    s.w1 = float(1.0 - b1);
    s.beta2 = float(b2);
    s.w2 = float(1.0 - b2);
    s.neg_step = float(-lr / bc1);
    s.bc2_sqrt = float(std::sqrt(bc2));
    s.eps = h.eps;
    return s;
}

template <class G>
void launch_adamw(const AdamWSlice<G>* slices, int count, const AdamWScalars& s,
                  cudaStream_t stream) {
    for (int first = 0; first < count; first += kMaxSlices) {
        AdamWBatch<G> batch{};
        batch.count = count - first < kMaxSlices ? count - first : kMaxSlices;
        batch.first_chunk[0] = 0;
        for (int i = 0; i < batch.count; i++) {
            batch.slices[i] = slices[first + i];
            batch.first_chunk[i + 1] = batch.first_chunk[i] + ceil_div(slices[first + i].n, kChunk);
        }
        const int64_t chunks = batch.first_chunk[batch.count];
        if (chunks == 0) continue;
        ZT_CHECK(chunks < (int64_t(1) << 31), "adamw: %lld chunks exceed the grid",
                 (long long)chunks);
        adamw_kernel<G><<<unsigned(chunks), kThreads, 0, stream>>>(batch, s);
        ZT_CUDA_LAUNCH_CHECK("adamw_kernel");
    }
}

template <class T>
void launch_sum_squares(double* out, const T* x, int64_t n, cudaStream_t stream) {
    auto* partial = static_cast<double*>(stream_workspace(stream, kSumBlocks * sizeof(double)));
    sum_squares_partial_kernel<T><<<kSumBlocks, kThreads, 0, stream>>>(partial, x, n);
    ZT_CUDA_LAUNCH_CHECK("sum_squares_partial_kernel");
    sum_squares_final_kernel<<<1, kThreads, 0, stream>>>(out, partial, kSumBlocks);
    ZT_CUDA_LAUNCH_CHECK("sum_squares_final_kernel");
}

// ---- checked entries -------------------------------------------------------

template <class G>
void adamw_checked(const AdamWSlice<G>* slices, int count, const AdamWHyper& h,
                   cudaStream_t stream) {
    ZT_CHECK(count >= 0 && (count == 0 || slices), "adamw: bad slice list (count %d)", count);
    ZT_CHECK(h.step >= 1, "adamw: step %lld must be 1-based", (long long)h.step);
    for (int i = 0; i < count; i++) {
        const AdamWSlice<G>& sl = slices[i];
        ZT_CHECK(sl.n >= 0, "adamw: slice %d has negative length %lld", i, (long long)sl.n);
        if (sl.n == 0) continue;
        ZT_CHECK(sl.param && sl.grad && sl.m && sl.v, "adamw: slice %d has a null pointer", i);
        ZT_CHECK(is_aligned(sl.param) && is_aligned(sl.grad) && is_aligned(sl.m) &&
                     is_aligned(sl.v) && is_aligned(sl.param_bf16),
                 "adamw: slice %d has a misaligned pointer", i);
    }
    launch_adamw(slices, count, adamw_scalars(h), stream);
}

template <class T>
void sum_squares_checked(double* out, const T* x, int64_t n, cudaStream_t stream) {
    ZT_CHECK(n >= 0, "sum_squares: negative length %lld", (long long)n);
    ZT_CHECK(out && (n == 0 || x), "sum_squares: null device pointer");
    ZT_CHECK(is_aligned(out) && is_aligned(x), "sum_squares: misaligned device pointer");
    launch_sum_squares(out, x, n, stream);
}

template <class T>
void scale_checked(T* x, int64_t n, float s, cudaStream_t stream) {
    ZT_CHECK(n >= 0, "scale_inplace: negative length %lld", (long long)n);
    if (n == 0) return;
    ZT_CHECK(x && is_aligned(x), "scale_inplace: null or misaligned device pointer");
    scale_kernel<T><<<elementwise_blocks(n, kThreads), kThreads, 0, stream>>>(x, n, s);
    ZT_CUDA_LAUNCH_CHECK("scale_kernel");
}

}  // namespace

void adamw_update(const AdamWSlice<float>* slices, int count, const AdamWHyper& h,
                  cudaStream_t stream) {
    adamw_checked(slices, count, h, stream);
}
void adamw_update(const AdamWSlice<__nv_bfloat16>* slices, int count, const AdamWHyper& h,
                  cudaStream_t stream) {
    adamw_checked(slices, count, h, stream);
}
void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWHyper& h, bool apply_decay, cudaStream_t stream) {
    AdamWSlice<float> sl;
    sl.param = param, sl.grad = grad, sl.m = m, sl.v = v, sl.n = n, sl.apply_decay = apply_decay;
    adamw_checked(&sl, 1, h, stream);
}

void sum_squares(double* out, const float* x, int64_t n, cudaStream_t stream) {
    sum_squares_checked(out, x, n, stream);
}
void sum_squares(double* out, const __nv_bfloat16* x, int64_t n, cudaStream_t stream) {
    sum_squares_checked(out, x, n, stream);
}
double sum_squares(const float* x, int64_t n, cudaStream_t stream) {
    ZT_CHECK(n >= 0, "sum_squares: negative length %lld", (long long)n);
    // The result slot sits after the partials in the same workspace, taken once.
    auto* ws = static_cast<double*>(stream_workspace(stream, (kSumBlocks + 1) * sizeof(double)));
    double* out = ws + kSumBlocks;
    ZT_CHECK(x || n == 0, "sum_squares: null device pointer");
    sum_squares_partial_kernel<float><<<kSumBlocks, kThreads, 0, stream>>>(ws, x, n);
    ZT_CUDA_LAUNCH_CHECK("sum_squares_partial_kernel");
    sum_squares_final_kernel<<<1, kThreads, 0, stream>>>(out, ws, kSumBlocks);
    ZT_CUDA_LAUNCH_CHECK("sum_squares_final_kernel");
    double host = 0.0;
    ZT_CUDA_CHECK(cudaMemcpyAsync(&host, out, sizeof(double), cudaMemcpyDeviceToHost, stream));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream));
    return host;
}

void scale_inplace(float* x, int64_t n, float s, cudaStream_t stream) {
    scale_checked(x, n, s, stream);
}
void scale_inplace(__nv_bfloat16* x, int64_t n, float s, cudaStream_t stream) {
    scale_checked(x, n, s, stream);
}

}  // namespace zt::cuda
