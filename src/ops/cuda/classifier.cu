// Fused classifier + softmax cross-entropy on the GPU, chunked over rows.
//
// Invariant: the full (N, V) logits never exist. Per chunk of m rows:
//   1. cuBLASLt: logits (m, V) = x_chunk @ weight^T into `scratch`, fp32
//      output for both element types (bf16 inputs, fp32 accumulate).
//   2. One block per row: max, sum of exp, loss = log(sum) + max - logit[target],
//      and (backward) dlogits = loss_scale (softmax - onehot(target)) written
//      back over the row; an ignored row (target < 0) gets loss 0 and zeros.
//   3. cuBLASLt with beta = 1: dx_chunk += dlogits @ weight, dweight += dlogits^T @ x_chunk
//      (dweight fp32 or the input type; an fp32 dweight of a bf16 model is
//      bf16 x bf16 -> fp32, so it accumulates across chunks without rounding).
// The fp32 path overwrites each logit with its gradient in place. The bf16
// path needs bf16 dlogits for the bf16 GEMMs and packs them into the start of
// the same row's bytes (leading dimension 2V bf16 elements): bf16 element e
// lands on float slot e/2 <= e, and the kernel writes tile by tile, each tile
// fully read (barrier) before it is written, so every float overwritten has
// already been consumed. That keeps scratch at chunk_rows * V floats, as the
// CPU signature promises, and the loss in fp32.
#include <algorithm>
#include <type_traits>

#include "ops/cuda/classifier.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/gemm.h"

namespace zt::cuda {

namespace {

constexpr int kThreads = 512;
// Fp32 scratch the GPU chunk sizing aims at (see classifier_chunk_rows).
constexpr int64_t kChunkScratchFloats = int64_t(64) << 20;  // 256 MiB
constexpr int64_t kChunkRowMultiple = 128;

// ---- kernel ----------------------------------------------------------------

// grid (m): one block per row of the chunk. logits (m, V) fp32, ld V; with
// kGrad, dlogits of type G replace them (see the file header for bf16).
template <class G, bool kGrad>
__global__ void softmax_xent_kernel(float* losses, float* logits, const int32_t* targets, int V,
                                    float loss_scale) {
    __shared__ float red[32];
    float* row = logits + int64_t(blockIdx.x) * V;
    G* drow = reinterpret_cast<G*>(row);
    const int32_t target = targets[blockIdx.x];
    if (target < 0 || target >= V) {  // ignored (loss 0) or invalid (NaN loss); no gradient
        if (threadIdx.x == 0) losses[blockIdx.x] = target < 0 ? 0.0f : NAN;
        if (kGrad) {
            for (int j = threadIdx.x; j < V; j += blockDim.x) drow[j] = store<G>(0.0f);
        }
        return;
    }
    const float logit_target = row[target];  // read before any barrier, so before any write
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, row[j]);
    mx = block_max(mx, red);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < V; j += blockDim.x) sum += expf(row[j] - mx);
    sum = block_sum(sum, red);
    if (threadIdx.x == 0) losses[blockIdx.x] = logf(sum) + mx - logit_target;
    if (!kGrad) return;

    const float k = loss_scale / sum;
    if constexpr (std::is_same_v<G, float>) {
        for (int j = threadIdx.x; j < V; j += blockDim.x) {
            float d = expf(row[j] - mx) * k;
            if (j == target) d -= loss_scale;
            row[j] = d;
        }
    } else {
        for (int j0 = 0; j0 < V; j0 += blockDim.x) {
            const int j = j0 + threadIdx.x;
            float d = 0.0f;
            if (j < V) {
                d = expf(row[j] - mx) * k;
                if (j == target) d -= loss_scale;
            }
            __syncthreads();  // the whole tile is read before any of it is overwritten
            if (j < V) drow[j] = store<G>(d);
        }
    }
}

// ---- raw launcher ----------------------------------------------------------

template <class T, class G>
void launch_classifier(float* losses, T* dx, G* dweight, const T* x, const T* weight,
                       const int32_t* targets, int64_t N, int C, int V, float loss_scale,
                       float* scratch, int chunk_rows, cudaStream_t stream) {
    const bool backward = dx || dweight;
    // dlogits as the backward GEMMs read them: same type as x and weight.
    T* dlogits = reinterpret_cast<T*>(scratch);
    const int64_t ld_dlogits = std::is_same_v<T, float> ? V : 2 * int64_t(V);
    for (int64_t r0 = 0; r0 < N; r0 += chunk_rows) {
        const int64_t m = std::min<int64_t>(chunk_rows, N - r0);
        const T* xc = x + r0 * C;

        GemmDesc logits;
        logits.trans_a = true;
        logits.m = V, logits.n = m, logits.k = C;
        logits.A = weight, logits.lda = C;
        logits.B = xc, logits.ldb = C;
        logits.ab_type = cuda_data_type<T>();
        logits.D = scratch, logits.ldd = V;
        logits.d_type = CUDA_R_32F;
        gemm(logits, stream);

        if (backward) {
            softmax_xent_kernel<T, true><<<unsigned(m), kThreads, 0, stream>>>(
                losses + r0, scratch, targets + r0, V, loss_scale);
        } else {
            softmax_xent_kernel<T, false><<<unsigned(m), kThreads, 0, stream>>>(
                losses + r0, scratch, targets + r0, V, loss_scale);
        }
        ZT_CUDA_LAUNCH_CHECK("softmax_xent_kernel");

        if (dx) {  // dx_chunk (C, m) += weight (C, V) @ dlogits (V, m), column-major
            GemmDesc g;
            g.m = C, g.n = m, g.k = V;
            g.A = weight, g.lda = C;
            g.B = dlogits, g.ldb = ld_dlogits;
            g.ab_type = cuda_data_type<T>();
            g.D = dx + r0 * C, g.ldd = C;
            g.d_type = cuda_data_type<T>();
            g.beta = 1.0f;
            gemm(g, stream);
        }
        if (dweight) {  // dweight (C, V) += x_chunk (C, m) @ dlogits^T (m, V), column-major
            GemmDesc g;
            g.trans_b = true;
            g.m = C, g.n = V, g.k = m;
            g.A = xc, g.lda = C;
            g.B = dlogits, g.ldb = ld_dlogits;
            g.ab_type = cuda_data_type<T>();
            g.D = dweight, g.ldd = C;
            g.d_type = cuda_data_type<G>();
            g.beta = 1.0f;
            gemm(g, stream);
        }
    }
}

// ---- checked entry ---------------------------------------------------------

template <class T, class G>
void classifier_checked(float* losses, T* dx, G* dweight, const T* x, const T* weight,
                        const int32_t* targets, int64_t N, int C, int V, float loss_scale,
                        float* scratch, int chunk_rows, cudaStream_t stream) {
    ZT_CHECK(N >= 0 && C > 0 && V > 0, "classifier: bad shape N=%lld C=%d V=%d", (long long)N, C,
             V);
    ZT_CHECK(chunk_rows > 0, "classifier: chunk_rows %d must be positive", chunk_rows);
    if (N == 0) return;
    ZT_CHECK(losses && x && weight && targets && scratch,
             "classifier: null device pointer (losses %p, x %p, weight %p, targets %p, scratch %p)",
             static_cast<void*>(losses), static_cast<const void*>(x),
             static_cast<const void*>(weight), static_cast<const void*>(targets),
             static_cast<void*>(scratch));
    ZT_CHECK(is_aligned(losses) && is_aligned(dx) && is_aligned(dweight) && is_aligned(x) &&
                 is_aligned(weight) && is_aligned(targets) && is_aligned(scratch),
             "classifier: a device pointer is not aligned to its element type");
    launch_classifier(losses, dx, dweight, x, weight, targets, N, C, V, loss_scale, scratch,
                      chunk_rows, stream);
}

}  // namespace

int classifier_chunk_rows(int64_t N, int V) {
    ZT_CHECK(N >= 0 && V > 0, "classifier_chunk_rows: bad shape N=%lld V=%d", (long long)N, V);
    int64_t rows = kChunkScratchFloats / V / kChunkRowMultiple * kChunkRowMultiple;
    rows = std::max(rows, kChunkRowMultiple);
    rows = std::min(rows, std::max<int64_t>(N, 1));
    return int(rows);
}

void classifier_forward_backward(float* losses, float* dx, float* dweight, const float* x,
                                 const float* weight, const int32_t* targets, int64_t N, int C,
                                 int V, float loss_scale, float* scratch, int chunk_rows,
                                 cudaStream_t stream) {
    classifier_checked(losses, dx, dweight, x, weight, targets, N, C, V, loss_scale, scratch,
                       chunk_rows, stream);
}
void classifier_forward_backward(float* losses, __nv_bfloat16* dx, float* dweight,
                                 const __nv_bfloat16* x, const __nv_bfloat16* weight,
                                 const int32_t* targets, int64_t N, int C, int V, float loss_scale,
                                 float* scratch, int chunk_rows, cudaStream_t stream) {
    classifier_checked(losses, dx, dweight, x, weight, targets, N, C, V, loss_scale, scratch,
                       chunk_rows, stream);
}
void classifier_forward_backward(float* losses, __nv_bfloat16* dx, __nv_bfloat16* dweight,
                                 const __nv_bfloat16* x, const __nv_bfloat16* weight,
                                 const int32_t* targets, int64_t N, int C, int V, float loss_scale,
                                 float* scratch, int chunk_rows, cudaStream_t stream) {
    classifier_checked(losses, dx, dweight, x, weight, targets, N, C, V, loss_scale, scratch,
                       chunk_rows, stream);
}

}  // namespace zt::cuda
