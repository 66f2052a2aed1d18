// Causal grouped-query self-attention, forward and backward, on the CPU.
//
// Invariant: backward accumulates (+=) into dqkv. Work is split over
// (batch, kv head) pairs: the query heads that share a kv head are handled by
// one thread, one after another, so their += into that kv head's dK and dV
// never race; each thread runs its own GEMMs on single-threaded BLAS (see
// blas.h). Per (b, query head) the math is plain matrices read in place
// from the packed qkv rows (leading dimension (NH + 2 NKV) HD):
//   forward   S = scale Q K^T, causal mask, P = softmax(S), O = P V
//   backward  dP = dO V^T, dS = P * (dP - rowsum(P * dP)),
//             dQ += scale dS K, dK += scale dS^T Q, dV += P^T dO.
// Queries are processed in blocks of kRowBlock rows, and a block's GEMMs stop
// at its last key column, which skips most of the masked upper triangle.
//
// bf16 storage (qkv, out, att, dout, dqkv in bf16; GEMMs from gemm_bf16.h,
// fp32 accumulation): S and dP live only in per-thread fp32 scratch blocks,
// softmax and rowsum(P * dP) are fp32, and each stored value is rounded once:
// P into att (and the same bf16 P feeds O = P V and the backward), dS into a
// bf16 scratch block for its three GEMMs, dQ once per call (each dQ row
// belongs to one query block). dK and dV are summed over all query blocks and
// all query heads of the group in per-thread fp32 (T, HD) accumulators and
// added into dqkv with one rounding per element, so a group of any size costs
// one bf16 rounding, not one per head. Every bf16 GEMM runs with alpha = 1:
// the 1/sqrt(HD) goes into the fp32 softmax and into dS before its rounding
// (a GEMM's alpha can cost the bf16 GEMM its fast path).
#include "ops/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "ops/cpu/blas.h"
#include "ops/cpu/gemm_bf16.h"
#include "ops/cpu/vec_math.h"

namespace zt::cpu {

namespace {

constexpr int kRowBlock = 64;

void check_dims(int B, int T, int NH, int NKV, int HD) {
    ZT_CHECK(B > 0 && T > 0 && HD > 0, "attention: bad shape B=%d T=%d HD=%d", B, T, HD);
    ZT_CHECK(NH > 0 && NKV > 0 && NH % NKV == 0,
             "attention: n_head %d must be a positive multiple of n_kv_head %d", NH, NKV);
    // Every GEMM runs inside the OpenMP region, where a failed check would abort.
    blas_dim(int64_t(NH + 2 * NKV) * HD);
}

template <class Real>
void attention_forward_impl(Real* out, Real* att, const Real* qkv, int B, int T, int NH, int NKV,
                            int HD) {
    check_dims(B, T, NH, NKV, HD);
    const int64_t R = int64_t(NH + 2 * NKV) * HD;  // qkv row
    const int64_t RO = int64_t(NH) * HD;           // out row
    const int group = NH / NKV;
    const Real scale = Real(1) / std::sqrt(Real(HD));
#pragma omp parallel for schedule(static)
    for (int bg = 0; bg < B * NKV; bg++) {
        const int b = bg / NKV, g = bg % NKV;
        const Real* base = qkv + int64_t(b) * T * R;
        const Real* k = base + int64_t(NH + g) * HD;        // (T, HD), ld R
        const Real* v = base + int64_t(NH + NKV + g) * HD;  // (T, HD), ld R
        for (int h = g * group; h < (g + 1) * group; h++) {
            const Real* q = base + int64_t(h) * HD;                 // (T, HD), ld R
            Real* P = att + (int64_t(b) * NH + h) * T * T;          // (T, T)
            Real* o = out + int64_t(b) * T * RO + int64_t(h) * HD;  // (T, HD), ld RO
            for (int i0 = 0; i0 < T; i0 += kRowBlock) {
                const int i1 = std::min(T, i0 + kRowBlock), m = i1 - i0;
                Real* Pb = P + int64_t(i0) * T;
                gemm(kNoTrans, kTrans, m, i1, HD, scale, q + i0 * R, R, k, R, Real(0), Pb, T);
                for (int t = i0; t < i1; t++)
                    causal_softmax_row(Pb + int64_t(t - i0) * T, t + 1, T);
                gemm(kNoTrans, kNoTrans, m, HD, i1, Real(1), Pb, T, v, R, Real(0), o + i0 * RO, RO);
            }
        }
    }
}

template <class Real>
void attention_backward_impl(Real* dqkv, const Real* dout, const Real* qkv, const Real* att, int B,
                             int T, int NH, int NKV, int HD) {
    check_dims(B, T, NH, NKV, HD);
    const int64_t R = int64_t(NH + 2 * NKV) * HD;
    const int64_t RO = int64_t(NH) * HD;
    const int group = NH / NKV;
    const Real scale = Real(1) / std::sqrt(Real(HD));
#pragma omp parallel
    {
        std::vector<Real> dS(size_t(kRowBlock) * T);  // dP, then dS, for one query block
#pragma omp for schedule(static)
        for (int bg = 0; bg < B * NKV; bg++) {
            const int b = bg / NKV, g = bg % NKV;
            const int64_t off = int64_t(b) * T * R;
            const Real* k = qkv + off + int64_t(NH + g) * HD;
            const Real* v = qkv + off + int64_t(NH + NKV + g) * HD;
            Real* dk = dqkv + off + int64_t(NH + g) * HD;
            Real* dv = dqkv + off + int64_t(NH + NKV + g) * HD;
            for (int h = g * group; h < (g + 1) * group; h++) {
                const Real* q = qkv + off + int64_t(h) * HD;
                Real* dq = dqkv + off + int64_t(h) * HD;
                const Real* P = att + (int64_t(b) * NH + h) * T * T;
                const Real* dO = dout + int64_t(b) * T * RO + int64_t(h) * HD;  // ld RO
                for (int i0 = 0; i0 < T; i0 += kRowBlock) {
                    const int i1 = std::min(T, i0 + kRowBlock), m = i1 - i0;
                    const Real* Pb = P + int64_t(i0) * T;
                    // dP (m, i1) = dO[i0:i1] V[0:i1]^T
                    gemm(kNoTrans, kTrans, m, i1, HD, Real(1), dO + i0 * RO, RO, v, R, Real(0),
                         dS.data(), T);
                    for (int t = i0; t < i1; t++) {
                        const Real* p = Pb + int64_t(t - i0) * T;
                        Real* ds = dS.data() + int64_t(t - i0) * T;
                        Real dot = 0;
#pragma omp simd reduction(+ : dot)
                        for (int j = 0; j <= t; j++) dot += p[j] * ds[j];
#pragma omp simd
                        for (int j = 0; j <= t; j++) ds[j] = p[j] * (ds[j] - dot);
                        std::fill(ds + t + 1, ds + i1, Real(0));
                    }
                    gemm(kNoTrans, kNoTrans, m, HD, i1, scale, dS.data(), T, k, R, Real(1),
                         dq + i0 * R, R);
                    gemm(kTrans, kNoTrans, i1, HD, m, scale, dS.data(), T, q + i0 * R, R, Real(1),
                         dk, R);
                    gemm(kTrans, kNoTrans, i1, HD, m, Real(1), Pb, T, dO + i0 * RO, RO, Real(1), dv,
                         R);
                }
            }
        }
    }
}

void attention_forward_bf16(bf16* out, bf16* att, const bf16* qkv, int B, int T, int NH, int NKV,
                            int HD) {
    check_dims(B, T, NH, NKV, HD);
    const int64_t R = int64_t(NH + 2 * NKV) * HD;
    const int64_t RO = int64_t(NH) * HD;
    const int group = NH / NKV;
    const float scale = 1.0f / std::sqrt(float(HD));
#pragma omp parallel
    {
        std::vector<float> S(size_t(std::min(T, kRowBlock)) * T);  // scores of one query block
#pragma omp for schedule(static)
        for (int bg = 0; bg < B * NKV; bg++) {
            const int b = bg / NKV, g = bg % NKV;
            const bf16* base = qkv + int64_t(b) * T * R;
            const bf16* k = base + int64_t(NH + g) * HD;        // (T, HD), ld R
            const bf16* v = base + int64_t(NH + NKV + g) * HD;  // (T, HD), ld R
            for (int h = g * group; h < (g + 1) * group; h++) {
                const bf16* q = base + int64_t(h) * HD;                 // (T, HD), ld R
                bf16* P = att + (int64_t(b) * NH + h) * T * T;          // (T, T)
                bf16* o = out + int64_t(b) * T * RO + int64_t(h) * HD;  // (T, HD), ld RO
                for (int i0 = 0; i0 < T; i0 += kRowBlock) {
                    const int i1 = std::min(T, i0 + kRowBlock), m = i1 - i0;
                    // S = Q K^T unscaled: the softmax applies the scale.
                    gemm_bf16_serial(false, true, m, i1, HD, 1.0f, q + i0 * R, R, k, R, 0.0f,
                                     S.data(), T);
                    for (int t = i0; t < i1; t++)
                        causal_softmax_row_bf16(P + int64_t(t) * T, S.data() + int64_t(t - i0) * T,
                                                t + 1, T, scale);
                    gemm_bf16_serial(false, false, m, HD, i1, 1.0f, P + int64_t(i0) * T, T, v, R,
                                     0.0f, o + i0 * RO, RO);
                }
            }
        }
    }
}

void attention_backward_bf16(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* att, int B,
                             int T, int NH, int NKV, int HD) {
    check_dims(B, T, NH, NKV, HD);
    const int64_t R = int64_t(NH + 2 * NKV) * HD;
    const int64_t RO = int64_t(NH) * HD;
    const int group = NH / NKV;
    const float scale = 1.0f / std::sqrt(float(HD));
#pragma omp parallel
    {
        const size_t block = size_t(std::min(T, kRowBlock)) * T;
        std::vector<float> dP(block);  // dO V^T of one query block
        std::vector<bf16> dS(block);   // scale P (dP - rowsum(P dP)), rounded for the GEMMs
        std::vector<float> dk_sum(size_t(T) * HD), dv_sum(size_t(T) * HD);  // (T, HD), ld HD
#pragma omp for schedule(static)
        for (int bg = 0; bg < B * NKV; bg++) {
            const int b = bg / NKV, g = bg % NKV;
            const int64_t off = int64_t(b) * T * R;
            const bf16* k = qkv + off + int64_t(NH + g) * HD;
            const bf16* v = qkv + off + int64_t(NH + NKV + g) * HD;
            std::fill(dk_sum.begin(), dk_sum.end(), 0.0f);
            std::fill(dv_sum.begin(), dv_sum.end(), 0.0f);
            for (int h = g * group; h < (g + 1) * group; h++) {
                const bf16* q = qkv + off + int64_t(h) * HD;
                bf16* dq = dqkv + off + int64_t(h) * HD;
                const bf16* P = att + (int64_t(b) * NH + h) * T * T;
                const bf16* dO = dout + int64_t(b) * T * RO + int64_t(h) * HD;  // ld RO
                for (int i0 = 0; i0 < T; i0 += kRowBlock) {
                    const int i1 = std::min(T, i0 + kRowBlock), m = i1 - i0;
                    const bf16* Pb = P + int64_t(i0) * T;
                    gemm_bf16_serial(false, true, m, i1, HD, 1.0f, dO + i0 * RO, RO, v, R, 0.0f,
                                     dP.data(), T);
                    for (int t = i0; t < i1; t++) {
                        const bf16* p = Pb + int64_t(t - i0) * T;
                        const float* dp = dP.data() + int64_t(t - i0) * T;
                        bf16* ds = dS.data() + int64_t(t - i0) * T;
                        float dot = 0;
#pragma omp simd reduction(+ : dot)
                        for (int j = 0; j <= t; j++) dot += bf16_to_f32(p[j]) * dp[j];
#pragma omp simd
                        for (int j = 0; j <= t; j++)
                            ds[j] = f32_to_bf16(scale * bf16_to_f32(p[j]) * (dp[j] - dot));
                        std::fill(ds + t + 1, ds + i1, bf16{0});
                    }
                    gemm_bf16_serial(false, false, m, HD, i1, 1.0f, dS.data(), T, k, R, 1.0f,
                                     dq + i0 * R, R);
                    gemm_bf16_serial(true, false, i1, HD, m, 1.0f, dS.data(), T, q + i0 * R, R,
                                     1.0f, dk_sum.data(), HD);
                    gemm_bf16_serial(true, false, i1, HD, m, 1.0f, Pb, T, dO + i0 * RO, RO, 1.0f,
                                     dv_sum.data(), HD);
                }
            }
            bf16* dk = dqkv + off + int64_t(NH + g) * HD;
            bf16* dv = dqkv + off + int64_t(NH + NKV + g) * HD;
            for (int t = 0; t < T; t++) {
                bf16* dkt = dk + t * R;
                bf16* dvt = dv + t * R;
                const float* sk = dk_sum.data() + int64_t(t) * HD;
                const float* sv = dv_sum.data() + int64_t(t) * HD;
#pragma omp simd
                for (int i = 0; i < HD; i++) {
                    dkt[i] = f32_to_bf16(bf16_to_f32(dkt[i]) + sk[i]);
                    dvt[i] = f32_to_bf16(bf16_to_f32(dvt[i]) + sv[i]);
                }
            }
        }
    }
}

}  // namespace

void attention_forward(bf16* out, bf16* att, const bf16* qkv, int B, int T, int NH, int NKV,
                       int HD) {
    attention_forward_bf16(out, att, qkv, B, T, NH, NKV, HD);
}
void attention_backward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* att, int B,
                        int T, int NH, int NKV, int HD) {
    attention_backward_bf16(dqkv, dout, qkv, att, B, T, NH, NKV, HD);
}
void attention_forward(float* out, float* att, const float* qkv, int B, int T, int NH, int NKV,
                       int HD) {
    attention_forward_impl(out, att, qkv, B, T, NH, NKV, HD);
}
void attention_forward(double* out, double* att, const double* qkv, int B, int T, int NH, int NKV,
                       int HD) {
    attention_forward_impl(out, att, qkv, B, T, NH, NKV, HD);
}
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, int B,
                        int T, int NH, int NKV, int HD) {
    attention_backward_impl(dqkv, dout, qkv, att, B, T, NH, NKV, HD);
}
void attention_backward(double* dqkv, const double* dout, const double* qkv, const double* att,
                        int B, int T, int NH, int NKV, int HD) {
    attention_backward_impl(dqkv, dout, qkv, att, B, T, NH, NKV, HD);
}

void attention_cached_row(float* out, const float* q, const float* K, const float* V, int len,
                          int HD, int kv_stride, float scale, float* scores) {
    blas_pin_single_thread();
    gemv(kNoTrans, len, HD, scale, K, kv_stride, q, 0.0f, scores);
    causal_softmax_row(scores, len, len);
    gemv(kTrans, len, HD, 1.0f, V, kv_stride, scores, 0.0f, out);
}

}  // namespace zt::cpu
