// f32 <-> bf16 array casts on the GPU.
//
// Invariant: element-wise the same conversion as core/dtype.h (round to
// nearest, ties to even; NaN stays a quiet NaN with the CPU's bits; Inf stays
// Inf), so GPU casts, CPU casts and the checkpoint writer agree bit for bit.
#include "ops/cuda/cast.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/cuda_common.cuh"

namespace zt::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void cast_f32_to_bf16_kernel(__nv_bfloat16* out, const float* inp, int64_t n) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x) {
        out[i] = bf16_from_f32_exact(inp[i]);
    }
}

__global__ void cast_bf16_to_f32_kernel(float* out, const __nv_bfloat16* inp, int64_t n) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x) {
        out[i] = __bfloat162float(inp[i]);
    }
}

}  // namespace

void cast_f32_to_bf16(__nv_bfloat16* out, const float* inp, int64_t n, cudaStream_t stream) {
    ZT_CHECK(n >= 0, "cast_f32_to_bf16: negative length %lld", (long long)n);
    if (n == 0) return;
    ZT_CHECK(out && inp, "cast_f32_to_bf16: null device pointer");
    ZT_CHECK(is_aligned(out) && is_aligned(inp), "cast_f32_to_bf16: misaligned device pointer");
    cast_f32_to_bf16_kernel<<<elementwise_blocks(n, kThreads), kThreads, 0, stream>>>(out, inp, n);
    ZT_CUDA_LAUNCH_CHECK("cast_f32_to_bf16_kernel");
}

void cast_bf16_to_f32(float* out, const __nv_bfloat16* inp, int64_t n, cudaStream_t stream) {
    ZT_CHECK(n >= 0, "cast_bf16_to_f32: negative length %lld", (long long)n);
    if (n == 0) return;
    ZT_CHECK(out && inp, "cast_bf16_to_f32: null device pointer");
    ZT_CHECK(is_aligned(out) && is_aligned(inp), "cast_bf16_to_f32: misaligned device pointer");
    cast_bf16_to_f32_kernel<<<elementwise_blocks(n, kThreads), kThreads, 0, stream>>>(out, inp, n);
    ZT_CUDA_LAUNCH_CHECK("cast_bf16_to_f32_kernel");
}

}  // namespace zt::cuda
