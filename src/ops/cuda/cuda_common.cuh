// Device helpers shared by the op kernels: element conversion, warp and block
// reductions, launch arithmetic.
//
// Invariant: every kernel computes in fp32 (fp64 where a header says so) and
// touches storage only through load()/store(), so bf16 is storage only and
// each element is rounded once, when it is written.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/check.h"

namespace zt::cuda {

__device__ __forceinline__ float load(float x) {
    return x;
}
__device__ __forceinline__ float load(__nv_bfloat16 x) {
    return __bfloat162float(x);
}

template <class T>
__device__ __forceinline__ T store(float x);
template <>
__device__ __forceinline__ float store<float>(float x) {
    return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 store<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

// *p += x, with one rounding to T.
template <class T>
__device__ __forceinline__ void add_to(T* p, float x) {
    *p = store<T>(load(*p) + x);
}

// The CPU's f32 -> bf16 conversion bit for bit (core/dtype.h): round to nearest
// even, NaN kept a quiet NaN with its payload's top bits. The intrinsic would
// return a canonical NaN; checkpoints and casts must agree with the CPU.
__device__ __forceinline__ __nv_bfloat16 bf16_from_f32_exact(float f) {
    const uint32_t u = __float_as_uint(f);
    uint16_t bits;
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) {
        bits = uint16_t((u >> 16) | 0x0040u);
    } else {
        bits = uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    return __ushort_as_bfloat16(bits);
}

template <class R>
__device__ __forceinline__ R warp_sum(R v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the whole block, returned to every thread. `shared` holds 32 R;
// the trailing barrier lets the caller reuse it at once. blockDim.x % 32 == 0.
template <class R>
__device__ R block_sum(R v, R* shared) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int nwarps = blockDim.x / 32;
    v = warp_sum(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    R total = lane < nwarps ? shared[lane] : R(0);
    total = warp_sum(total);
    __syncthreads();
    return total;
}

__device__ inline float block_max(float v, float* shared) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int nwarps = blockDim.x / 32;
    v = warp_max(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float m = lane < nwarps ? shared[lane] : -INFINITY;
    m = warp_max(m);
    __syncthreads();
    return m;
}

inline int64_t ceil_div(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

// Blocks for an elementwise grid-stride kernel over n elements: enough to fill
// the device, never more than the work.
inline unsigned elementwise_blocks(int64_t n, int threads) {
    int64_t blocks = ceil_div(n, threads);
    const int64_t cap = int64_t(1) << 20;
    if (blocks > cap) blocks = cap;
    return unsigned(blocks < 1 ? 1 : blocks);
}

// Device pointers handed to an op must be aligned to their element type.
template <class T>
inline bool is_aligned(const T* p) {
    return (reinterpret_cast<uintptr_t>(p) % alignof(T)) == 0;
}

}  // namespace zt::cuda
