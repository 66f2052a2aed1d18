// Causal grouped-query attention on tensor cores: batched cuBLASLt GEMMs with
// fused causal-softmax kernels between them, forward and backward.
//
// Invariant: the same math, the same saved probabilities and the same "+="
// into dqkv as the scalar path (attention.cu, the oracle of the GPU tests),
// deterministic (fixed GEMM algorithms, no atomics).
//
// Layout. The qkv rows are first permuted into head-major scratch,
//   q (B, NH, T, HD), k and v (B, NKV, T, HD),
// so the G = NH / NKV query heads that share kv head g are one contiguous
// (G*T, HD) matrix. Every product is then one strided batch over the B*NKV
// (batch, kv head) pairs, GQA included:
//   forward   S_p  (G*T, T)  = scale Q_p K_g^T          fp32
//             P_p            = causal softmax of S_p    fp32 math, stored in att, 0 above t
//             Y_p  (G*T, HD) = P_p V_g                  then scattered into out
//   backward  dV_g (T, HD)   = P_p^T dY_p               (K = G*T sums the group's heads)
//             dP_p (G*T, T)  = dY_p V_g^T               fp32
//             dS_p           = P_p * (dP_p - rowsum(P_p * dP_p))
//             dQ_p (G*T, HD) = scale dS_p K_g
//             dK_g (T, HD)   = scale dS_p^T Q_p
// dQ, dK and dV land in fp32 scratch and are added into dqkv once (one
// rounding for bf16). The (B, NH, T, T) probabilities are saved in att, not
// recomputed, exactly as the scalar path saves them. The fp32 scores and dP
// need room beside att; they are produced a chunk of pairs at a time
// (plan.chunk pairs, about kScoreChunkBytes), so that room does not grow with
// B * NH. For fp32 the scores are computed straight into att and softmaxed in
// place, and dS overwrites dP in place.
//
// The GEMMs compute every (t, j), also the masked half above the diagonal
// (twice the FLOPs a causal tiling would need); softmax writes exact zeros
// there and dS is zero there, so the waste never reaches a result.
//
// bf16 numerics: bf16 operands, fp32 accumulation and fp32 scores; P rounded
// once to bf16 and used by Y = P V and by backward, as on the CPU; dS rounded
// once to bf16 for the two dS GEMMs (a rounding the scalar path does not
// make); dQ, dK, dV summed in fp32 and rounded once into dqkv.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "ops/cuda/attention.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/gemm.h"

namespace zt::cuda {

namespace {

constexpr int kThreads = 256;  // softmax kernels
constexpr int kPermuteThreads = 256;
// Target size of one chunk's fp32 scores (plus bf16 dS); at least one pair.
constexpr size_t kScoreChunkBytes = size_t(512) << 20;
constexpr size_t kAlign = 256;

size_t align_up(size_t b) {
    return (b + kAlign - 1) / kAlign * kAlign;
}

// Where each scratch array lives (byte offsets) and how the pairs are chunked.
struct Plan {
    int64_t pairs = 0;   // B * NKV
    int64_t group = 0;   // G = NH / NKV
    int64_t chunk = 0;   // pairs per chunk of scores
    int64_t n_q = 0;     // B * NH * T * HD
    int64_t n_kv = 0;    // B * NKV * T * HD
    int64_t n_pair = 0;  // G * T * T, one pair's scores
    size_t q = 0, k = 0, v = 0;
    size_t y = 0;                   // forward: y (B, NH, T, HD); backward: dy, same place
    size_t s = 0;                   // forward, bf16 only: fp32 scores of a chunk
    size_t dq = 0, dk = 0, dv = 0;  // backward: fp32 gradients, head-major
    size_t dp = 0;                  // backward: fp32 dP of a chunk
    size_t ds = 0;                  // backward, bf16 only: bf16 dS of a chunk
    size_t forward_bytes = 0, backward_bytes = 0;
};

Plan make_plan(size_t elem, int B, int T_, int NH, int NKV, int HD) {
    Plan p;
    p.pairs = int64_t(B) * NKV;
    p.group = NH / NKV;
    p.n_q = int64_t(B) * NH * T_ * HD;
    p.n_kv = int64_t(B) * NKV * T_ * HD;
    p.n_pair = p.group * T_ * int64_t(T_);
    const bool narrow = elem != sizeof(float);
    const size_t pair_bytes = size_t(p.n_pair) * (sizeof(float) + (narrow ? elem : 0));
    p.chunk = std::clamp<int64_t>(int64_t(kScoreChunkBytes / pair_bytes), 1, p.pairs);
    const size_t chunk_f32 = align_up(size_t(p.chunk * p.n_pair) * sizeof(float));

    size_t at = 0;
    auto take = [&at](size_t bytes) {
        const size_t off = at;
        at += align_up(bytes);
        return off;
    };
    p.q = take(size_t(p.n_q) * elem);
    p.k = take(size_t(p.n_kv) * elem);
    p.v = take(size_t(p.n_kv) * elem);
    p.y = take(size_t(p.n_q) * elem);
    const size_t shared = at;
    p.s = at;
    p.forward_bytes = at + (narrow ? chunk_f32 : 0);
    at = shared;
    p.dq = take(size_t(p.n_q) * sizeof(float));
    p.dk = take(size_t(p.n_kv) * sizeof(float));
    p.dv = take(size_t(p.n_kv) * sizeof(float));
    p.dp = take(chunk_f32);
    p.ds = take(narrow ? size_t(p.chunk * p.n_pair) * elem : 0);
    p.backward_bytes = at;
    return p;
}

// ---- kernels ---------------------------------------------------------------

// dst (B, H, T, HD) = heads [col0 / HD, col0 / HD + H) of src rows (B, T, ld).
// One thread per element in src order, so reads are coalesced and writes come
// in runs of HD.
template <class T>
__global__ void heads_gather_kernel(T* dst, const T* src, int T_, int H, int HD, int64_t ld,
                                    int64_t col0, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x) {
        const int d = int(i % HD);
        int64_t r = i / HD;
        const int h = int(r % H);
        r /= H;  // b * T + t
        const int64_t b = r / T_, t = r % T_;
        dst[((b * H + h) * T_ + t) * HD + d] = src[r * ld + col0 + int64_t(h) * HD + d];
    }
}

// The inverse: heads of src (B, H, T, HD) into columns [col0, col0 + H*HD) of
// dst rows (B, T, ld); kAdd accumulates (one rounding to D), else stores.
template <class D, class S, bool kAdd>
__global__ void heads_scatter_kernel(D* dst, const S* src, int T_, int H, int HD, int64_t ld,
                                     int64_t col0, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x) {
        const int d = int(i % HD);
        int64_t r = i / HD;
        const int h = int(r % H);
        r /= H;
        const int64_t b = r / T_, t = r % T_;
        D* p = dst + r * ld + col0 + int64_t(h) * HD + d;
        const float x = load(src[((b * H + h) * T_ + t) * HD + d]);
        if (kAdd) {
            add_to(p, x);
        } else {
            *p = store<D>(x);
        }
    }
}

// grid (rows), one block per score row r of a chunk; its query position is
// t = r % T. P row (T) = softmax of S row over j <= t, exactly 0 for j > t.
// P may alias S (fp32): each element is read and then written by one thread.
template <class T>
__global__ void causal_softmax_kernel(T* P, const float* S, int T_) {
    __shared__ float red[32];
    const int64_t r = blockIdx.x;
    const int t = int(r % T_);
    const float* srow = S + r * T_;
    T* prow = P + r * T_;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j <= t; j += blockDim.x) mx = fmaxf(mx, srow[j]);
    mx = block_max(mx, red);
    float sum = 0.0f;
    for (int j = threadIdx.x; j <= t; j += blockDim.x) sum += expf(srow[j] - mx);
    sum = block_sum(sum, red);
    const float inv = 1.0f / sum;
    for (int j = threadIdx.x; j < T_; j += blockDim.x) {
        const float pj = j <= t ? expf(srow[j] - mx) * inv : 0.0f;
        prow[j] = store<T>(pj);
    }
}

// grid (rows) as above: dS row = P * (dP - sum_{j <= t} P_j dP_j), 0 for j > t.
// dS may alias dP (fp32): each element is read and then written by one thread,
// after the block's sum.
template <class T>
__global__ void causal_softmax_backward_kernel(T* dS, const float* dP, const T* P, int T_) {
    __shared__ float red[32];
    const int64_t r = blockIdx.x;
    const int t = int(r % T_);
    const float* dprow = dP + r * T_;
    const T* prow = P + r * T_;
    T* dsrow = dS + r * T_;
    float dot = 0.0f;
    for (int j = threadIdx.x; j <= t; j += blockDim.x) dot += load(prow[j]) * dprow[j];
    dot = block_sum(dot, red);
    for (int j = threadIdx.x; j < T_; j += blockDim.x) {
        const float ds = j <= t ? load(prow[j]) * (dprow[j] - dot) : 0.0f;
        dsrow[j] = store<T>(ds);
    }
}

// ---- raw launchers ---------------------------------------------------------

template <class T>
void gather_heads(T* dst, const T* src, int B, int T_, int H, int HD, int64_t ld, int64_t col0,
                  cudaStream_t stream) {
    const int64_t n = int64_t(B) * T_ * H * HD;
    heads_gather_kernel<T><<<elementwise_blocks(n, kPermuteThreads), kPermuteThreads, 0, stream>>>(
        dst, src, T_, H, HD, ld, col0, n);
    ZT_CUDA_LAUNCH_CHECK("heads_gather_kernel");
}

template <bool kAdd, class D, class S>
void scatter_heads(D* dst, const S* src, int B, int T_, int H, int HD, int64_t ld, int64_t col0,
                   cudaStream_t stream) {
    const int64_t n = int64_t(B) * T_ * H * HD;
    heads_scatter_kernel<D, S, kAdd>
        <<<elementwise_blocks(n, kPermuteThreads), kPermuteThreads, 0, stream>>>(dst, src, T_, H,
                                                                                 HD, ld, col0, n);
    ZT_CUDA_LAUNCH_CHECK("heads_scatter_kernel");
}

// One strided batch of `batch` row-major products, in cuBLAS's column-major
// terms (see gemm.h): D (m, n) = alpha op(A) op(B) + beta D.
struct Batched {
    bool ta = false, tb = false;
    int64_t m = 0, n = 0, k = 0;
    const void* A = nullptr;
    int64_t lda = 0, sa = 0;
    const void* B = nullptr;
    int64_t ldb = 0, sb = 0;
    void* D = nullptr;
    int64_t ldd = 0, sd = 0;
    cudaDataType_t ab = CUDA_R_32F, d = CUDA_R_32F;
    float alpha = 1.0f;
    int64_t batch = 1;
};

void run(const Batched& b, cudaStream_t stream) {
    GemmDesc g;
    g.trans_a = b.ta, g.trans_b = b.tb;
    g.m = b.m, g.n = b.n, g.k = b.k;
    g.A = b.A, g.lda = b.lda, g.stride_a = b.sa;
    g.B = b.B, g.ldb = b.ldb, g.stride_b = b.sb;
    g.D = b.D, g.ldd = b.ldd, g.stride_d = b.sd;
    g.ab_type = b.ab, g.d_type = b.d;
    g.alpha = b.alpha;
    g.batch = int(b.batch);
    gemm(g, stream);
}

template <class T>
T* at(void* scratch, size_t off) {
    return reinterpret_cast<T*>(static_cast<uint8_t*>(scratch) + off);
}

template <class T>
void launch_forward_cublas(T* out, T* att, const T* qkv, int B, int T_, int NH, int NKV, int HD,
                           void* scratch, const Plan& p, cudaStream_t stream) {
    constexpr bool kF32 = std::is_same_v<T, float>;
    const float scale = 1.0f / sqrtf(float(HD));
    const int64_t R = int64_t(NH + 2 * NKV) * HD, G = p.group;
    T* q = at<T>(scratch, p.q);
    T* k = at<T>(scratch, p.k);
    T* v = at<T>(scratch, p.v);
    T* y = at<T>(scratch, p.y);
    gather_heads(q, qkv, B, T_, NH, HD, R, 0, stream);
    gather_heads(k, qkv, B, T_, NKV, HD, R, int64_t(NH) * HD, stream);
    gather_heads(v, qkv, B, T_, NKV, HD, R, int64_t(NH + NKV) * HD, stream);

    for (int64_t p0 = 0; p0 < p.pairs; p0 += p.chunk) {
        const int64_t pc = std::min(p.chunk, p.pairs - p0);
        float* s = kF32 ? reinterpret_cast<float*>(att) + p0 * p.n_pair : at<float>(scratch, p.s);
        Batched sc;  // S_p (G*T, T) = scale Q_p K_g^T
        sc.ta = true;
        sc.m = T_, sc.n = G * T_, sc.k = HD;
        sc.A = k + p0 * T_ * HD, sc.lda = HD, sc.sa = int64_t(T_) * HD;
        sc.B = q + p0 * G * T_ * HD, sc.ldb = HD, sc.sb = G * T_ * HD;
        sc.D = s, sc.ldd = T_, sc.sd = p.n_pair;
        sc.ab = cuda_data_type<T>(), sc.d = CUDA_R_32F;
        sc.alpha = scale;
        sc.batch = pc;
        run(sc, stream);
        causal_softmax_kernel<T>
            <<<unsigned(pc * G * T_), kThreads, 0, stream>>>(att + p0 * p.n_pair, s, T_);
        ZT_CUDA_LAUNCH_CHECK("causal_softmax_kernel");
    }

    Batched pv;  // Y_p (G*T, HD) = P_p V_g
    pv.m = HD, pv.n = G * T_, pv.k = T_;
    pv.A = v, pv.lda = HD, pv.sa = int64_t(T_) * HD;
    pv.B = att, pv.ldb = T_, pv.sb = p.n_pair;
    pv.D = y, pv.ldd = HD, pv.sd = G * T_ * HD;
    pv.ab = pv.d = cuda_data_type<T>();
    pv.batch = p.pairs;
    run(pv, stream);
    scatter_heads<false>(out, y, B, T_, NH, HD, int64_t(NH) * HD, 0, stream);
}

template <class T>
void launch_backward_cublas(T* dqkv, const T* dout, const T* qkv, const T* att, int B, int T_,
                            int NH, int NKV, int HD, void* scratch, const Plan& p,
                            cudaStream_t stream) {
    constexpr bool kF32 = std::is_same_v<T, float>;
    const float scale = 1.0f / sqrtf(float(HD));
    const int64_t R = int64_t(NH + 2 * NKV) * HD, G = p.group;
    T* q = at<T>(scratch, p.q);
    T* k = at<T>(scratch, p.k);
    T* v = at<T>(scratch, p.v);
    T* dy = at<T>(scratch, p.y);
    float* dq = at<float>(scratch, p.dq);
    float* dk = at<float>(scratch, p.dk);
    float* dv = at<float>(scratch, p.dv);
    float* dp = at<float>(scratch, p.dp);
    T* ds = kF32 ? reinterpret_cast<T*>(dp) : at<T>(scratch, p.ds);
    gather_heads(q, qkv, B, T_, NH, HD, R, 0, stream);
    gather_heads(k, qkv, B, T_, NKV, HD, R, int64_t(NH) * HD, stream);
    gather_heads(v, qkv, B, T_, NKV, HD, R, int64_t(NH + NKV) * HD, stream);
    gather_heads(dy, dout, B, T_, NH, HD, int64_t(NH) * HD, 0, stream);

    Batched gv;  // dV_g (T, HD) = P_p^T dY_p
    gv.tb = true;
    gv.m = HD, gv.n = T_, gv.k = G * T_;
    gv.A = dy, gv.lda = HD, gv.sa = G * T_ * HD;
    gv.B = att, gv.ldb = T_, gv.sb = p.n_pair;
    gv.D = dv, gv.ldd = HD, gv.sd = int64_t(T_) * HD;
    gv.ab = cuda_data_type<T>(), gv.d = CUDA_R_32F;
    gv.batch = p.pairs;
    run(gv, stream);

    for (int64_t p0 = 0; p0 < p.pairs; p0 += p.chunk) {
        const int64_t pc = std::min(p.chunk, p.pairs - p0);
        Batched gp;  // dP_p (G*T, T) = dY_p V_g^T
        gp.ta = true;
        gp.m = T_, gp.n = G * T_, gp.k = HD;
        gp.A = v + p0 * T_ * HD, gp.lda = HD, gp.sa = int64_t(T_) * HD;
        gp.B = dy + p0 * G * T_ * HD, gp.ldb = HD, gp.sb = G * T_ * HD;
        gp.D = dp, gp.ldd = T_, gp.sd = p.n_pair;
        gp.ab = cuda_data_type<T>(), gp.d = CUDA_R_32F;
        gp.batch = pc;
        run(gp, stream);
        causal_softmax_backward_kernel<T>
            <<<unsigned(pc * G * T_), kThreads, 0, stream>>>(ds, dp, att + p0 * p.n_pair, T_);
        ZT_CUDA_LAUNCH_CHECK("causal_softmax_backward_kernel");

        Batched gq;  // dQ_p (G*T, HD) = scale dS_p K_g
        gq.m = HD, gq.n = G * T_, gq.k = T_;
        gq.A = k + p0 * T_ * HD, gq.lda = HD, gq.sa = int64_t(T_) * HD;
        gq.B = ds, gq.ldb = T_, gq.sb = p.n_pair;
        gq.D = dq + p0 * G * T_ * HD, gq.ldd = HD, gq.sd = G * T_ * HD;
        gq.ab = cuda_data_type<T>(), gq.d = CUDA_R_32F;
        gq.alpha = scale;
        gq.batch = pc;
        run(gq, stream);

        Batched gk;  // dK_g (T, HD) = scale dS_p^T Q_p
        gk.tb = true;
        gk.m = HD, gk.n = T_, gk.k = G * T_;
        gk.A = q + p0 * G * T_ * HD, gk.lda = HD, gk.sa = G * T_ * HD;
        gk.B = ds, gk.ldb = T_, gk.sb = p.n_pair;
        gk.D = dk + p0 * T_ * HD, gk.ldd = HD, gk.sd = int64_t(T_) * HD;
        gk.ab = cuda_data_type<T>(), gk.d = CUDA_R_32F;
        gk.alpha = scale;
        gk.batch = pc;
        run(gk, stream);
    }

    scatter_heads<true>(dqkv, dq, B, T_, NH, HD, R, 0, stream);
    scatter_heads<true>(dqkv, dk, B, T_, NKV, HD, R, int64_t(NH) * HD, stream);
    scatter_heads<true>(dqkv, dv, B, T_, NKV, HD, R, int64_t(NH + NKV) * HD, stream);
}

// ---- checked entries -------------------------------------------------------

void check_shape(const char* op, int B, int T_, int NH, int NKV, int HD) {
    ZT_CHECK(B > 0 && T_ > 0 && HD > 0, "%s: bad shape B=%d T=%d HD=%d", op, B, T_, HD);
    ZT_CHECK(NH > 0 && NKV > 0 && NH % NKV == 0,
             "%s: n_head %d must be a positive multiple of n_kv_head %d", op, NH, NKV);
    const int64_t rows = int64_t(NH / NKV) * T_;  // score rows of one pair: one block each
    ZT_CHECK(rows <= int64_t(1) << 30,
             "%s: (n_head / n_kv_head) * T = %lld score rows per kv head exceed 2^30", op,
             (long long)rows);
}

void check_scratch(const char* op, const void* scratch, size_t have, size_t need, int B, int T_,
                   int NH, int NKV, int HD) {
    ZT_CHECK(have >= need,
             "%s: scratch of %zu bytes is too small for B=%d T=%d NH=%d NKV=%d HD=%d, which needs "
             "%zu (size it with attention_cublas_scratch_bytes)",
             op, have, B, T_, NH, NKV, HD, need);
    ZT_CHECK(scratch && reinterpret_cast<uintptr_t>(scratch) % 16 == 0,
             "%s: scratch %p must be a non-null device pointer aligned to 16 bytes", op, scratch);
}

template <class T>
void forward_cublas_checked(T* out, T* att, const T* qkv, int B, int T_, int NH, int NKV, int HD,
                            void* scratch, size_t scratch_bytes, cudaStream_t stream) {
    const char* op = "attention_forward_cublas";
    check_shape(op, B, T_, NH, NKV, HD);
    ZT_CHECK(out && att && qkv, "%s: null device pointer (out %p, att %p, qkv %p)", op,
             static_cast<void*>(out), static_cast<void*>(att), static_cast<const void*>(qkv));
    ZT_CHECK(is_aligned(out) && is_aligned(att) && is_aligned(qkv),
             "%s: a device pointer is not aligned to its element type", op);
    const Plan p = make_plan(sizeof(T), B, T_, NH, NKV, HD);
    check_scratch(op, scratch, scratch_bytes, p.forward_bytes, B, T_, NH, NKV, HD);
    launch_forward_cublas(out, att, qkv, B, T_, NH, NKV, HD, scratch, p, stream);
}

template <class T>
void backward_cublas_checked(T* dqkv, const T* dout, const T* qkv, const T* att, int B, int T_,
                             int NH, int NKV, int HD, void* scratch, size_t scratch_bytes,
                             cudaStream_t stream) {
    const char* op = "attention_backward_cublas";
    check_shape(op, B, T_, NH, NKV, HD);
    ZT_CHECK(dqkv && dout && qkv && att,
             "%s: null device pointer (dqkv %p, dout %p, qkv %p, att %p)", op,
             static_cast<void*>(dqkv), static_cast<const void*>(dout),
             static_cast<const void*>(qkv), static_cast<const void*>(att));
    ZT_CHECK(is_aligned(dqkv) && is_aligned(dout) && is_aligned(qkv) && is_aligned(att),
             "%s: a device pointer is not aligned to its element type", op);
    ZT_CHECK(static_cast<const void*>(dqkv) != static_cast<const void*>(qkv),
             "%s: dqkv must not alias qkv", op);
    const Plan p = make_plan(sizeof(T), B, T_, NH, NKV, HD);
    check_scratch(op, scratch, scratch_bytes, p.backward_bytes, B, T_, NH, NKV, HD);
    launch_backward_cublas(dqkv, dout, qkv, att, B, T_, NH, NKV, HD, scratch, p, stream);
}

}  // namespace

size_t attention_cublas_scratch_bytes(int B, int T, int NH, int NKV, int HD, DType dtype) {
    ZT_CHECK(dtype == DType::f32 || dtype == DType::bf16,
             "attention_cublas_scratch_bytes: dtype %s is not supported (f32 or bf16)",
             dtype_name(dtype));
    check_shape("attention_cublas_scratch_bytes", B, T, NH, NKV, HD);
    const Plan p = make_plan(dtype_size(dtype), B, T, NH, NKV, HD);
    return std::max(p.forward_bytes, p.backward_bytes);
}

void attention_forward_cublas(float* out, float* att, const float* qkv, int B, int T, int NH,
                              int NKV, int HD, void* scratch, size_t scratch_bytes,
                              cudaStream_t stream) {
    forward_cublas_checked(out, att, qkv, B, T, NH, NKV, HD, scratch, scratch_bytes, stream);
}
void attention_forward_cublas(__nv_bfloat16* out, __nv_bfloat16* att, const __nv_bfloat16* qkv,
                              int B, int T, int NH, int NKV, int HD, void* scratch,
                              size_t scratch_bytes, cudaStream_t stream) {
    forward_cublas_checked(out, att, qkv, B, T, NH, NKV, HD, scratch, scratch_bytes, stream);
}
void attention_backward_cublas(float* dqkv, const float* dout, const float* qkv, const float* att,
                               int B, int T, int NH, int NKV, int HD, void* scratch,
                               size_t scratch_bytes, cudaStream_t stream) {
    backward_cublas_checked(dqkv, dout, qkv, att, B, T, NH, NKV, HD, scratch, scratch_bytes,
                            stream);
}
void attention_backward_cublas(__nv_bfloat16* dqkv, const __nv_bfloat16* dout,
                               const __nv_bfloat16* qkv, const __nv_bfloat16* att, int B, int T,
                               int NH, int NKV, int HD, void* scratch, size_t scratch_bytes,
                               cudaStream_t stream) {
    backward_cublas_checked(dqkv, dout, qkv, att, B, T, NH, NKV, HD, scratch, scratch_bytes,
                            stream);
}

}  // namespace zt::cuda
