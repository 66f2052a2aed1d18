// Deterministic column sums: dst (C) += sum over rows n < N of f(n, c).
//
// Used for every parameter gradient that is a sum over rows (matmul's dbias,
// the norms' dweight and dbias). Invariant: the summation order depends only
// on (N, C), never on timing: each block sums a fixed strip of rows for 32
// columns into a partial (in the stream workspace), and one pass adds the
// partials in split order. No atomics, so runs are bit-identical.
#pragma once

#include <algorithm>

#include "ops/cuda/context.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/cuda_common.cuh"

namespace zt::cuda {

constexpr int kColTile = 32;  // columns per block (one warp wide)
constexpr int kColRows = 8;   // row lanes per block

// partial (splits, C): block (x, y) sums rows [y * rows_per_split, ...) of
// columns [x * 32, x * 32 + 32).
template <class Fn>
__global__ void column_partial_kernel(float* partial, Fn f, int64_t N, int C,
                                      int64_t rows_per_split) {
    __shared__ float sums[kColRows][kColTile + 1];
    const int c = blockIdx.x * kColTile + threadIdx.x;
    const int64_t r0 = int64_t(blockIdx.y) * rows_per_split;
    const int64_t r1 = min(N, r0 + rows_per_split);
    float acc = 0.0f;
    if (c < C) {
        for (int64_t n = r0 + threadIdx.y; n < r1; n += kColRows) acc += f(n, c);
    }
    sums[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float t = 0.0f;
        for (int y = 0; y < kColRows; y++) t += sums[y][threadIdx.x];
        partial[int64_t(blockIdx.y) * C + c] = t;
    }
}

// dst (C) += sum over s of partial (splits, C)[s], in split order, one rounding.
template <class T>
__global__ void column_finalize_kernel(T* dst, const float* partial, int splits, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float t = 0.0f;
    for (int s = 0; s < splits; s++) t += partial[int64_t(s) * C + c];
    add_to(dst + c, t);
}

template <class T, class Fn>
void column_sum_accumulate(T* dst, Fn f, int64_t N, int C, cudaStream_t stream) {
    if (N == 0 || C == 0) return;
    // ~256 rows per split, at most 1024 splits: enough blocks for the device
    // when N is large, a short finalize when it is not.
    int64_t splits = std::min<int64_t>(1024, std::max<int64_t>(1, ceil_div(N, 256)));
    const int64_t rows_per_split = ceil_div(N, splits);
    splits = ceil_div(N, rows_per_split);
    ZT_CHECK(splits <= 65535, "column sum: %lld row splits exceed the grid limit",
             (long long)splits);
    auto* partial =
        static_cast<float*>(stream_workspace(stream, size_t(splits) * size_t(C) * sizeof(float)));
    const dim3 grid(unsigned(ceil_div(C, kColTile)), unsigned(splits));
    const dim3 block(kColTile, kColRows);
    column_partial_kernel<<<grid, block, 0, stream>>>(partial, f, N, C, rows_per_split);
    ZT_CUDA_LAUNCH_CHECK("column_partial_kernel");
    column_finalize_kernel<T>
        <<<unsigned(ceil_div(C, 256)), 256, 0, stream>>>(dst, partial, int(splits), C);
    ZT_CUDA_LAUNCH_CHECK("column_finalize_kernel");
}

}  // namespace zt::cuda
