// Causal grouped-query attention on the GPU, plain CUDA, forward and backward.
//
// Invariant: backward accumulates (+=) into dqkv, deterministically and
// without atomics. The math is the CPU reference's (ops/cpu/attention.cpp):
//   forward   S = scale Q K^T, causal mask, P = softmax(S), O = P V
//   backward  dP = dO V^T, D = rowsum(P * dP), dS = P * (dP - D),
//             dQ += scale dS K, dK += scale dS^T Q, dV += P^T dO
// in three kernels, each owning the outputs it writes:
//   forward  one block per query row (b, h, t): scores in shared memory, block
//            max/sum, P written to att, then O = P V.
//   dq       one block per query row: dP and dS in shared memory, D saved to a
//            (B, NH, T) scratch in the stream workspace, dQ row accumulated.
//   dk, dv   one block per key row (b, kv head g, j): walks every query head of
//            the group and every t >= j in tiles, recomputing dS from P, dO, V
//            and D, and accumulates the key's dK and dV rows once at the end.
// Plain fp32 FMA loops, no tensor cores: this path is the readable reference
// and the test oracle on the GPU, not the fast one.
//
// The tensor-core path (attention_cublas.cu) computes the same math with
// batched cuBLASLt GEMMs; this file is its oracle in the GPU tests.
// Shared memory: a block holds a whole score row, (HD + T) floats, so T is
// bounded by the device's opt-in shared memory per block (227 KiB on an
// H100/H200: about 58K positions); prepare_smem refuses longer rows with the
// numbers.
#include <cmath>

#include "ops/cuda/attention.h"
#include "ops/cuda/context.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/cuda_common.cuh"

namespace zt::cuda {

namespace {

constexpr int kThreads = 128;       // per block, every kernel
constexpr int kKeyTile = kThreads;  // query rows per tile in the dk/dv kernel

// ---- kernels ---------------------------------------------------------------

// grid (T, NH, B); dynamic shared memory (HD + T) floats.
template <class T>
__global__ void attention_forward_kernel(T* out, T* att, const T* qkv, int T_, int NH, int NKV,
                                         int HD, float scale) {
    extern __shared__ float smem[];
    __shared__ float red[32];
    float* q = smem;       // (HD) this query row
    float* p = smem + HD;  // (T) scores, then probabilities
    const int t = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int g = h / (NH / NKV);
    const int64_t R = int64_t(NH + 2 * NKV) * HD;
    const T* base = qkv + int64_t(b) * T_ * R;
    for (int d = threadIdx.x; d < HD; d += blockDim.x) q[d] = load(base[t * R + h * HD + d]);
    __syncthreads();

    float mx = -INFINITY;
    for (int j = threadIdx.x; j <= t; j += blockDim.x) {
        const T* k = base + j * R + int64_t(NH + g) * HD;
        float s = 0.0f;
        for (int d = 0; d < HD; d++) s += q[d] * load(k[d]);
        s *= scale;
        p[j] = s;
        mx = fmaxf(mx, s);
    }
    mx = block_max(mx, red);
    float sum = 0.0f;
    for (int j = threadIdx.x; j <= t; j += blockDim.x) {
        const float e = expf(p[j] - mx);
        p[j] = e;
        sum += e;
    }
    sum = block_sum(sum, red);
    const float inv = 1.0f / sum;
    T* arow = att + ((int64_t(b) * NH + h) * T_ + t) * T_;
    for (int j = threadIdx.x; j < T_; j += blockDim.x) {
        const float pj = j <= t ? p[j] * inv : 0.0f;
        if (j <= t) p[j] = pj;
        arow[j] = store<T>(pj);
    }
    __syncthreads();

    T* orow = out + (int64_t(b) * T_ + t) * NH * HD + int64_t(h) * HD;
    for (int d = threadIdx.x; d < HD; d += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j <= t; j++)
            acc += p[j] * load(base[j * R + int64_t(NH + NKV + g) * HD + d]);
        orow[d] = store<T>(acc);
    }
}

// grid (T, NH, B); dynamic shared memory (HD + T) floats. dsum (B, NH, T) = D.
template <class T>
__global__ void attention_backward_dq_kernel(T* dqkv, float* dsum, const T* dout, const T* qkv,
                                             const T* att, int T_, int NH, int NKV, int HD,
                                             float scale) {
    extern __shared__ float smem[];
    __shared__ float red[32];
    float* dO = smem;       // (HD) this row's output gradient
    float* ds = smem + HD;  // (T) dP, then dS
    const int t = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int g = h / (NH / NKV);
    const int64_t R = int64_t(NH + 2 * NKV) * HD;
    const T* base = qkv + int64_t(b) * T_ * R;
    const T* dorow = dout + (int64_t(b) * T_ + t) * NH * HD + int64_t(h) * HD;
    const T* prow = att + ((int64_t(b) * NH + h) * T_ + t) * T_;
    for (int d = threadIdx.x; d < HD; d += blockDim.x) dO[d] = load(dorow[d]);
    __syncthreads();

    float dot = 0.0f;
    for (int j = threadIdx.x; j <= t; j += blockDim.x) {
        const T* v = base + j * R + int64_t(NH + NKV + g) * HD;
        float dp = 0.0f;
        for (int d = 0; d < HD; d++) dp += dO[d] * load(v[d]);
        ds[j] = dp;
        dot += load(prow[j]) * dp;
    }
    dot = block_sum(dot, red);  // its barriers also publish ds[]
    for (int j = threadIdx.x; j <= t; j += blockDim.x) ds[j] = load(prow[j]) * (ds[j] - dot);
    __syncthreads();

    T* dq = dqkv + (int64_t(b) * T_ + t) * R + int64_t(h) * HD;
    for (int d = threadIdx.x; d < HD; d += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j <= t; j++) acc += ds[j] * load(base[j * R + int64_t(NH + g) * HD + d]);
        add_to(dq + d, scale * acc);
    }
    if (threadIdx.x == 0) dsum[(int64_t(b) * NH + h) * T_ + t] = dot;
}

// grid (T, NKV, B), blockDim kKeyTile; shared memory (3 HD + 2 kKeyTile) floats.
template <class T>
__global__ void attention_backward_dkv_kernel(T* dqkv, const float* dsum, const T* dout,
                                              const T* qkv, const T* att, int T_, int NH, int NKV,
                                              int HD, float scale) {
    extern __shared__ float smem[];
    float* vj = smem;              // (HD) this key's value row
    float* acc_k = smem + HD;      // (HD) dK row being summed
    float* acc_v = smem + 2 * HD;  // (HD) dV row being summed
    float* tp = smem + 3 * HD;     // (kKeyTile) P[t, j] of the tile
    float* tds = tp + kKeyTile;    // (kKeyTile) dS[t, j] of the tile
    const int j = blockIdx.x, g = blockIdx.y, b = blockIdx.z;
    const int group = NH / NKV;
    const int64_t R = int64_t(NH + 2 * NKV) * HD;
    const int64_t RO = int64_t(NH) * HD;
    const T* base = qkv + int64_t(b) * T_ * R;
    for (int d = threadIdx.x; d < HD; d += blockDim.x) {
        vj[d] = load(base[j * R + int64_t(NH + NKV + g) * HD + d]);
        acc_k[d] = 0.0f;
        acc_v[d] = 0.0f;
    }
    __syncthreads();

    for (int h = g * group; h < (g + 1) * group; h++) {
        const int64_t bh = int64_t(b) * NH + h;
        for (int t0 = j; t0 < T_; t0 += kKeyTile) {
            const int t = t0 + threadIdx.x;
            float p = 0.0f, ds = 0.0f;
            if (t < T_) {
                p = load(att[(bh * T_ + t) * T_ + j]);
                const T* dorow = dout + (int64_t(b) * T_ + t) * RO + int64_t(h) * HD;
                float dp = 0.0f;
                for (int d = 0; d < HD; d++) dp += load(dorow[d]) * vj[d];
                ds = p * (dp - dsum[bh * T_ + t]);
            }
            tp[threadIdx.x] = p;
            tds[threadIdx.x] = ds;
            __syncthreads();
            const int tn = min(kKeyTile, T_ - t0);
            for (int d = threadIdx.x; d < HD; d += blockDim.x) {
                float ak = 0.0f, av = 0.0f;
                for (int i = 0; i < tn; i++) {
                    const int64_t row = int64_t(b) * T_ + t0 + i;
                    ak += tds[i] * load(qkv[row * R + int64_t(h) * HD + d]);
                    av += tp[i] * load(dout[row * RO + int64_t(h) * HD + d]);
                }
                acc_k[d] += ak;
                acc_v[d] += av;
            }
            __syncthreads();
        }
    }

    T* dk = dqkv + (int64_t(b) * T_ + j) * R + int64_t(NH + g) * HD;
    T* dv = dqkv + (int64_t(b) * T_ + j) * R + int64_t(NH + NKV + g) * HD;
    for (int d = threadIdx.x; d < HD; d += blockDim.x) {
        add_to(dk + d, scale * acc_k[d]);
        add_to(dv + d, acc_v[d]);
    }
}

// ---- raw launchers ---------------------------------------------------------

// Makes `kernel` launchable with `dynamic_bytes` of dynamic shared memory, or
// refuses: static (cudaFuncGetAttributes) plus dynamic must fit the device's
// opt-in limit per block, and past the default 48 KiB the kernel's dynamic
// limit is raised explicitly.
template <class Kernel>
void prepare_smem(const char* op, const char* kernel_name, Kernel kernel, size_t dynamic_bytes,
                  int T_, int HD) {
    cudaFuncAttributes attr{};
    ZT_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
    int optin = 0;
    ZT_CUDA_CHECK(
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, current_device()));
    const size_t total = attr.sharedSizeBytes + dynamic_bytes;
    ZT_CHECK(total <= size_t(optin),
             "%s: T=%d head_dim=%d needs %zu bytes of shared memory per block in %s (%zu static + "
             "%zu dynamic), the device allows %d (the plain path keeps a whole score row on chip; "
             "use attention_forward_cublas/attention_backward_cublas or a shorter --seq-len)",
             op, T_, HD, total, kernel_name, size_t(attr.sharedSizeBytes), dynamic_bytes, optin);
    if (total > size_t(48) * 1024) {
        ZT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           int(dynamic_bytes)));
    }
}

size_t row_smem(int T_, int HD) {
    return size_t(HD + T_) * sizeof(float);
}

template <class T>
void launch_attention_forward(T* out, T* att, const T* qkv, int B, int T_, int NH, int NKV, int HD,
                              cudaStream_t stream) {
    const float scale = 1.0f / sqrtf(float(HD));
    const size_t smem = row_smem(T_, HD);
    prepare_smem("attention_forward", "attention_forward_kernel", attention_forward_kernel<T>, smem,
                 T_, HD);
    attention_forward_kernel<T>
        <<<dim3(T_, NH, B), kThreads, smem, stream>>>(out, att, qkv, T_, NH, NKV, HD, scale);
    ZT_CUDA_LAUNCH_CHECK("attention_forward_kernel");
}

template <class T>
void launch_attention_backward(T* dqkv, const T* dout, const T* qkv, const T* att, int B, int T_,
                               int NH, int NKV, int HD, cudaStream_t stream) {
    const float scale = 1.0f / sqrtf(float(HD));
    // Both kernels are checked before either runs, so a refusal leaves dqkv untouched.
    const size_t smem = row_smem(T_, HD);
    prepare_smem("attention_backward", "attention_backward_dq_kernel",
                 attention_backward_dq_kernel<T>, smem, T_, HD);
    const size_t smem_kv = size_t(3 * HD + 2 * kKeyTile) * sizeof(float);
    prepare_smem("attention_backward", "attention_backward_dkv_kernel",
                 attention_backward_dkv_kernel<T>, smem_kv, T_, HD);
    auto* dsum = static_cast<float*>(stream_workspace(stream, size_t(B) * NH * T_ * sizeof(float)));
    attention_backward_dq_kernel<T><<<dim3(T_, NH, B), kThreads, smem, stream>>>(
        dqkv, dsum, dout, qkv, att, T_, NH, NKV, HD, scale);
    ZT_CUDA_LAUNCH_CHECK("attention_backward_dq_kernel");
    attention_backward_dkv_kernel<T><<<dim3(T_, NKV, B), kKeyTile, smem_kv, stream>>>(
        dqkv, dsum, dout, qkv, att, T_, NH, NKV, HD, scale);
    ZT_CUDA_LAUNCH_CHECK("attention_backward_dkv_kernel");
}

// ---- checked entries -------------------------------------------------------

void check_dims(const char* op, int B, int T_, int NH, int NKV, int HD) {
    ZT_CHECK(B > 0 && T_ > 0 && HD > 0, "%s: bad shape B=%d T=%d HD=%d", op, B, T_, HD);
    ZT_CHECK(NH > 0 && NKV > 0 && NH % NKV == 0,
             "%s: n_head %d must be a positive multiple of n_kv_head %d", op, NH, NKV);
    ZT_CHECK(B <= 65535 && NH <= 65535, "%s: B=%d and NH=%d must each be <= 65535 (grid limit)", op,
             B, NH);
}

template <class T>
void attention_forward_checked(T* out, T* att, const T* qkv, int B, int T_, int NH, int NKV, int HD,
                               cudaStream_t stream) {
    check_dims("attention_forward", B, T_, NH, NKV, HD);
    ZT_CHECK(out && att && qkv, "attention_forward: null device pointer");
    ZT_CHECK(is_aligned(out) && is_aligned(att) && is_aligned(qkv),
             "attention_forward: misaligned device pointer");
    launch_attention_forward(out, att, qkv, B, T_, NH, NKV, HD, stream);
}

template <class T>
void attention_backward_checked(T* dqkv, const T* dout, const T* qkv, const T* att, int B, int T_,
                                int NH, int NKV, int HD, cudaStream_t stream) {
    check_dims("attention_backward", B, T_, NH, NKV, HD);
    ZT_CHECK(dqkv && dout && qkv && att, "attention_backward: null device pointer");
    ZT_CHECK(is_aligned(dqkv) && is_aligned(dout) && is_aligned(qkv) && is_aligned(att),
             "attention_backward: misaligned device pointer");
    ZT_CHECK(static_cast<const void*>(dqkv) != static_cast<const void*>(qkv),
             "attention_backward: dqkv must not alias qkv");
    launch_attention_backward(dqkv, dout, qkv, att, B, T_, NH, NKV, HD, stream);
}

}  // namespace

void attention_forward(float* out, float* att, const float* qkv, int B, int T, int NH, int NKV,
                       int HD, cudaStream_t stream) {
    attention_forward_checked(out, att, qkv, B, T, NH, NKV, HD, stream);
}
void attention_forward(__nv_bfloat16* out, __nv_bfloat16* att, const __nv_bfloat16* qkv, int B,
                       int T, int NH, int NKV, int HD, cudaStream_t stream) {
    attention_forward_checked(out, att, qkv, B, T, NH, NKV, HD, stream);
}
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, int B,
                        int T, int NH, int NKV, int HD, cudaStream_t stream) {
    attention_backward_checked(dqkv, dout, qkv, att, B, T, NH, NKV, HD, stream);
}
void attention_backward(__nv_bfloat16* dqkv, const __nv_bfloat16* dout, const __nv_bfloat16* qkv,
                        const __nv_bfloat16* att, int B, int T, int NH, int NKV, int HD,
                        cudaStream_t stream) {
    attention_backward_checked(dqkv, dout, qkv, att, B, T, NH, NKV, HD, stream);
}

}  // namespace zt::cuda
