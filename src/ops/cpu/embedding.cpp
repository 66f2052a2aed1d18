// Token and learned-position embedding, forward and backward, on the CPU.
//
// Invariant: backward accumulates (+=) into dwte and dwpe. Several positions
// can carry the same token, so the scatter into dwte is split over channels:
// each thread owns a block of columns of dwte and walks every row, which is
// race-free and sums each row's contributions in position order (deterministic).
#include "ops/embedding.h"

#include <omp.h>

#include "core/check.h"

namespace zt::cpu {

namespace {

void check_dims(int B, int T, int C) {
    ZT_CHECK(B > 0 && T > 0 && C > 0, "embedding: bad shape B=%d T=%d C=%d", B, T, C);
}

template <class Real>
void embedding_forward_impl(Real* out, const int32_t* tokens, const Real* wte, const Real* wpe,
                            int B, int T, int C) {
    check_dims(B, T, C);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < int64_t(B) * T; r++) {
        const Real* w = wte + int64_t(tokens[r]) * C;
        Real* o = out + r * C;
        if (wpe) {
            const Real* p = wpe + (r % T) * C;
#pragma omp simd
            for (int c = 0; c < C; c++) o[c] = w[c] + p[c];
        } else {
#pragma omp simd
            for (int c = 0; c < C; c++) o[c] = w[c];
        }
    }
}

template <class Real>
void embedding_backward_impl(Real* dwte, Real* dwpe, const Real* dout, const int32_t* tokens, int B,
                             int T, int C) {
    check_dims(B, T, C);
    const int64_t rows = int64_t(B) * T;
    if (dwte) {
#pragma omp parallel
        {
            const int nt = omp_get_num_threads(), it = omp_get_thread_num();
            const int c0 = int(int64_t(C) * it / nt), c1 = int(int64_t(C) * (it + 1) / nt);
            for (int64_t r = 0; r < rows; r++) {
                Real* d = dwte + int64_t(tokens[r]) * C;
                const Real* g = dout + r * C;
#pragma omp simd
                for (int c = c0; c < c1; c++) d[c] += g[c];
            }
        }
    }
    if (dwpe) {
        // Each position t is owned by one thread, which sums it over the batch.
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++) {
            Real* d = dwpe + int64_t(t) * C;
            for (int b = 0; b < B; b++) {
                const Real* g = dout + (int64_t(b) * T + t) * C;
#pragma omp simd
                for (int c = 0; c < C; c++) d[c] += g[c];
            }
        }
    }
}

}  // namespace

void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                       int T, int C) {
    embedding_forward_impl(out, tokens, wte, wpe, B, T, C);
}
void embedding_forward(double* out, const int32_t* tokens, const double* wte, const double* wpe,
                       int B, int T, int C) {
    embedding_forward_impl(out, tokens, wte, wpe, B, T, C);
}
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B,
                        int T, int C) {
    embedding_backward_impl(dwte, dwpe, dout, tokens, B, T, C);
}
void embedding_backward(double* dwte, double* dwpe, const double* dout, const int32_t* tokens,
                        int B, int T, int C) {
    embedding_backward_impl(dwte, dwpe, dout, tokens, B, T, C);
}

}  // namespace zt::cpu
