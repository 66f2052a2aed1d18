// Fused classifier + softmax cross-entropy on the CPU, chunked over rows.
//
// Invariant: the full (N, V) logits never exist. Each chunk of rows gets its
// logits in `scratch` (chunk_rows, V), which are turned in place into
// d(loss)/d(logits) = loss_scale (softmax - onehot(target)), then folded into
// dx and dweight by two GEMMs that accumulate (+=). An ignored row
// (target < 0) gets loss 0 and an all-zero gradient row, so it adds nothing.
// The chunk size changes only the order of dweight's sum over rows.
#include "ops/classifier.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "ops/cpu/blas.h"
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

template <class Real>
void classifier_impl(Real* losses, Real* dx, Real* dweight, const Real* x, const Real* weight,
                     const int32_t* targets, int64_t N, int C, int V, float loss_scale,
                     Real* scratch, int chunk_rows) {
    ZT_CHECK(N >= 0 && C > 0 && V > 0, "classifier: bad shape N=%lld C=%d V=%d", (long long)N, C,
             V);
    ZT_CHECK(chunk_rows > 0, "classifier: chunk_rows %d must be positive", chunk_rows);
    for (int64_t i = 0; i < N; i++) {
        ZT_CHECK(targets[i] < V, "classifier: target %d at row %lld is not below vocab size %d",
                 targets[i], (long long)i, V);
    }
    const bool backward = dx || dweight;
    const Real dscale = Real(loss_scale);
    for (int64_t r0 = 0; r0 < N; r0 += chunk_rows) {
        const int64_t m = std::min<int64_t>(chunk_rows, N - r0);
        const Real* xc = x + r0 * C;
        gemm_parallel(CblasNoTrans, CblasTrans, m, V, C, Real(1), xc, C, weight, C, Real(0),
                      scratch, V);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < m; i++) {
            Real* row = scratch + i * V;
            const int32_t target = targets[r0 + i];
            if (target < 0) {
                losses[r0 + i] = 0;
                if (backward) std::fill(row, row + V, Real(0));
                continue;
            }
            Real mx = row[0];
#pragma omp simd reduction(max : mx)
            for (int j = 0; j < V; j++) mx = std::max(mx, row[j]);
            const Real logit_target = row[target];
            const double sum = exp_shifted_sum(row, V, mx);
            losses[r0 + i] = Real(std::log(sum) + double(mx) - double(logit_target));
            if (backward) {
                const Real k = Real(double(dscale) / sum);
#pragma omp simd
                for (int j = 0; j < V; j++) row[j] *= k;
                row[target] -= dscale;
            }
        }
        if (dx) {
            gemm_parallel(CblasNoTrans, CblasNoTrans, m, C, V, Real(1), scratch, V, weight, C,
                          Real(1), dx + r0 * C, C);
        }
        if (dweight) {
            gemm_parallel(CblasTrans, CblasNoTrans, V, C, m, Real(1), scratch, V, xc, C, Real(1),
                          dweight, C);
        }
    }
}

}  // namespace

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
