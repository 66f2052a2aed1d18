// Fused classifier + softmax cross-entropy on the CPU, chunked over rows.
//
// Invariant: the full (N, V) logits never exist. Each chunk of rows gets its
// logits in `scratch` (chunk_rows, V), which are turned in place into
// d(loss)/d(logits) = loss_scale (softmax - onehot(target)), then folded into
// dx and dweight by two GEMMs that accumulate (+=). An ignored row
// (target < 0) gets loss 0 and an all-zero gradient row, so it adds nothing.
// The chunk size changes only the order of dweight's sum over rows.
//
// bf16 storage: the logits GEMM writes fp32 into the same scratch, the loss
// and softmax are the fp32 path's arithmetic, and the backward GEMMs read the
// dlogits rounded once to bf16, packed into the first half of each scratch
// row's bytes (a bf16 matrix with leading dimension 2V, as on the GPU): no
// second buffer. Within a row the packing goes block by block through a local
// copy, and block b's bf16 lands in the bytes of floats that blocks <= b
// already read (pack_dlogits_bf16), so nothing is overwritten unread; rows
// never touch each other's bytes, so rows stay parallel.
#include "ops/classifier.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "ops/cpu/blas.h"
#include "ops/cpu/gemm_bf16.h"
#include "ops/cpu/vec_math.h"

namespace zt::cpu {

namespace {

// row[j] = exp(row[j] - mx) in place; returns their sum. Float partial sums
// over short blocks (so the loop vectorises) are added up in double, so a
// 50k-term vocabulary row loses nothing to the float accumulator.
template <class Real>
double exp_shifted_sum(Real* row, int V, Real mx) {
    constexpr int kBlock = 512;
    double sum = 0;
    for (int j0 = 0; j0 < V; j0 += kBlock) {
        const int j1 = std::min(V, j0 + kBlock);
        Real part = 0;
#pragma omp simd reduction(+ : part)
        for (int j = j0; j < j1; j++) {
            row[j] = exp_v(row[j] - mx);
            part += row[j];
        }
        sum += double(part);
    }
    return sum;
}

void check_args(const int32_t* targets, int64_t N, int C, int V, int chunk_rows) {
    ZT_CHECK(N >= 0 && C > 0 && V > 0, "classifier: bad shape N=%lld C=%d V=%d", (long long)N, C,
             V);
    ZT_CHECK(chunk_rows > 0, "classifier: chunk_rows %d must be positive", chunk_rows);
    for (int64_t i = 0; i < N; i++) {
        ZT_CHECK(targets[i] < V, "classifier: target %d at row %lld is not below vocab size %d",
                 targets[i], (long long)i, V);
    }
}

// One row of logits (target >= 0): row[j] = exp(row[j] - max) in place, sum
// gets their sum; returns the loss logsumexp(row) - row[target].
template <class Real>
Real xent_row(Real* row, int V, int32_t target, double& sum) {
    Real mx = row[0];
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < V; j++) mx = std::max(mx, row[j]);
    const Real logit_target = row[target];
    sum = exp_shifted_sum(row, V, mx);
    return Real(std::log(sum) + double(mx) - double(logit_target));
}

template <class Real>
void classifier_impl(Real* losses, Real* dx, Real* dweight, const Real* x, const Real* weight,
                     const int32_t* targets, int64_t N, int C, int V, float loss_scale,
                     Real* scratch, int chunk_rows) {
    check_args(targets, N, C, V, chunk_rows);
    const bool backward = dx || dweight;
    const Real dscale = Real(loss_scale);
    for (int64_t r0 = 0; r0 < N; r0 += chunk_rows) {
        const int64_t m = std::min<int64_t>(chunk_rows, N - r0);
        const Real* xc = x + r0 * C;
        gemm_parallel(kNoTrans, kTrans, m, V, C, Real(1), xc, C, weight, C, Real(0), scratch, V);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < m; i++) {
            Real* row = scratch + i * V;
            const int32_t target = targets[r0 + i];
            if (target < 0) {
                losses[r0 + i] = 0;
                if (backward) std::fill(row, row + V, Real(0));
                continue;
            }
            double sum;
            losses[r0 + i] = xent_row(row, V, target, sum);
            if (backward) {
                const Real k = Real(double(dscale) / sum);
#pragma omp simd
                for (int j = 0; j < V; j++) row[j] *= k;
                row[target] -= dscale;
            }
        }
        if (dx) {
            gemm_parallel(kNoTrans, kNoTrans, m, C, V, Real(1), scratch, V, weight, C, Real(1),
                          dx + r0 * C, C);
        }
        if (dweight) {
            gemm_parallel(kTrans, kNoTrans, V, C, m, Real(1), scratch, V, xc, C, Real(1), dweight,
                          C);
        }
    }
}

// row (V) holds exp(logit - max) of a row with target >= 0; writes
// dlogits = k row - dscale onehot(target), computed in fp32 (the fp32 path's
// values) and rounded to bf16, into the first V bf16 slots of the row's own
// bytes. Block b reads floats [kBlock b, kBlock (b+1)) into registers first and
// writes bytes [2 kBlock b, 2 kBlock (b+1)), i.e. floats of blocks < b (or of
// block 0 itself for b = 0), all consumed already.
void pack_dlogits_bf16(float* row, int V, int32_t target, float k, float dscale) {
    constexpr int kBlock = 64;
    unsigned char* bytes = reinterpret_cast<unsigned char*>(row);
    for (int j0 = 0; j0 < V; j0 += kBlock) {
        const int n = std::min(kBlock, V - j0);
        bf16 d[kBlock];
#pragma omp simd
        for (int j = 0; j < n; j++) d[j] = f32_to_bf16(row[j0 + j] * k);
        if (target >= j0 && target < j0 + n) d[target - j0] = f32_to_bf16(row[target] * k - dscale);
        std::memcpy(bytes + size_t(j0) * sizeof(bf16), d, size_t(n) * sizeof(bf16));
    }
}

template <class G>
void classifier_bf16_impl(float* losses, bf16* dx, G* dweight, const bf16* x, const bf16* weight,
                          const int32_t* targets, int64_t N, int C, int V, float loss_scale,
                          float* scratch, int chunk_rows) {
    check_args(targets, N, C, V, chunk_rows);
    ZT_CHECK(2 * int64_t(V) <= INT_MAX,
             "classifier: bf16 dlogits need a leading dimension 2V = %lld that fits in int",
             2 * (long long)V);
    const bool backward = dx || dweight;
    const int64_t ld_dlogits = 2 * int64_t(V);  // bf16 elements per scratch row
    const bf16* dlogits = reinterpret_cast<const bf16*>(scratch);
    for (int64_t r0 = 0; r0 < N; r0 += chunk_rows) {
        const int64_t m = std::min<int64_t>(chunk_rows, N - r0);
        const bf16* xc = x + r0 * C;
        gemm_bf16(false, true, m, V, C, 1.0f, xc, C, weight, C, 0.0f, scratch, V);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < m; i++) {
            float* row = scratch + i * V;
            const int32_t target = targets[r0 + i];
            if (target < 0) {
                losses[r0 + i] = 0;
                if (backward) std::memset(row, 0, size_t(V) * sizeof(bf16));  // bf16 zeros
                continue;
            }
            double sum;
            losses[r0 + i] = xent_row(row, V, target, sum);
            if (backward)
                pack_dlogits_bf16(row, V, target, float(double(loss_scale) / sum), loss_scale);
        }
        if (dx) {
            gemm_bf16(false, false, m, C, V, 1.0f, dlogits, ld_dlogits, weight, C, 1.0f,
                      dx + r0 * C, C);
        }
        if (dweight) {
            gemm_bf16(true, false, V, C, m, 1.0f, dlogits, ld_dlogits, xc, C, 1.0f, dweight, C);
        }
    }
}

}  // namespace

void classifier_forward_backward(float* losses, bf16* dx, float* dweight, const bf16* x,
                                 const bf16* weight, const int32_t* targets, int64_t N, int C,
                                 int V, float loss_scale, float* scratch, int chunk_rows) {
    classifier_bf16_impl(losses, dx, dweight, x, weight, targets, N, C, V, loss_scale, scratch,
                         chunk_rows);
}
void classifier_forward_backward(float* losses, bf16* dx, bf16* dweight, const bf16* x,
                                 const bf16* weight, const int32_t* targets, int64_t N, int C,
                                 int V, float loss_scale, float* scratch, int chunk_rows) {
    classifier_bf16_impl(losses, dx, dweight, x, weight, targets, N, C, V, loss_scale, scratch,
                         chunk_rows);
}
void classifier_forward_backward(float* losses, float* dx, float* dweight, const float* x,
                                 const float* weight, const int32_t* targets, int64_t N, int C,
                                 int V, float loss_scale, float* scratch, int chunk_rows) {
    classifier_impl(losses, dx, dweight, x, weight, targets, N, C, V, loss_scale, scratch,
                    chunk_rows);
}
void classifier_forward_backward(double* losses, double* dx, double* dweight, const double* x,
                                 const double* weight, const int32_t* targets, int64_t N, int C,
                                 int V, float loss_scale, double* scratch, int chunk_rows) {
    classifier_impl(losses, dx, dweight, x, weight, targets, N, C, V, loss_scale, scratch,
                    chunk_rows);
}

}  // namespace zt::cpu
