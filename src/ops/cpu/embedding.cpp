// Token and learned-position embedding, forward and backward, on the CPU.
//
// Invariant: backward accumulates (+=) into dwte and dwpe. Several positions
// can carry the same token, so the scatter into dwte is split over channels:
// each thread owns a block of columns of dwte and walks every row, which is
// race-free and sums each row's contributions in position order (deterministic).
//
// bf16 dout: the rows are first grouped by token (a stable sort, so each
// group stays in position order), each group is summed in fp32 and added to
// its dwte row once, so a bf16 dwte is rounded once per call, not once per
// row. Forward widens with load() and rounds once with store(); for float
// and double both are the identity.
#include "ops/embedding.h"

#include <omp.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "core/check.h"
#include "ops/cpu/storage.h"

namespace zt::cpu {

namespace {

void check_dims(int B, int T, int C) {
    ZT_CHECK(B > 0 && T > 0 && C > 0, "embedding: bad shape B=%d T=%d C=%d", B, T, C);
}

template <class S>
void embedding_forward_impl(S* out, const int32_t* tokens, const S* wte, const S* wpe, int B, int T,
                            int C) {
    check_dims(B, T, C);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < int64_t(B) * T; r++) {
        const S* w = wte + int64_t(tokens[r]) * C;
        S* o = out + r * C;
        if (wpe) {
            const S* p = wpe + (r % T) * C;
#pragma omp simd
            for (int c = 0; c < C; c++) store(o[c], load(w[c]) + load(p[c]));
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

// bf16 dout into a float or bf16 gradient, fp32 sums (see the top of the file).
template <class G>
void embedding_backward_bf16(G* dwte, G* dwpe, const bf16* dout, const int32_t* tokens, int B,
                             int T, int C) {
    check_dims(B, T, C);
    const int64_t rows = int64_t(B) * T;
    if (dwte) {
        std::vector<int64_t> order(static_cast<size_t>(rows));
        std::iota(order.begin(), order.end(), int64_t(0));
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t a, int64_t b) { return tokens[a] < tokens[b]; });
#pragma omp parallel
        {
            // Each thread owns a block of columns and walks every group.
            const int nt = omp_get_num_threads(), it = omp_get_thread_num();
            const int c0 = int(int64_t(C) * it / nt), c1 = int(int64_t(C) * (it + 1) / nt);
            std::vector<float> acc(size_t(c1 - c0));
            float* a = acc.data();
            for (int64_t k = 0; k < rows;) {
                const int32_t token = tokens[order[size_t(k)]];
                std::fill(acc.begin(), acc.end(), 0.0f);
                for (; k < rows && tokens[order[size_t(k)]] == token; k++) {
                    const bf16* g = dout + order[size_t(k)] * C + c0;
#pragma omp simd
                    for (int c = 0; c < c1 - c0; c++) a[c] += load(g[c]);
                }
                G* d = dwte + int64_t(token) * C + c0;
#pragma omp simd
                for (int c = 0; c < c1 - c0; c++) store(d[c], load(d[c]) + a[c]);
            }
        }
    }
    if (dwpe) {
        // Each position t is owned by one thread, which sums it over the batch.
#pragma omp parallel
        {
            std::vector<float> acc(static_cast<size_t>(C));
            float* a = acc.data();
#pragma omp for schedule(static)
            for (int t = 0; t < T; t++) {
                std::fill(acc.begin(), acc.end(), 0.0f);
                for (int b = 0; b < B; b++) {
                    const bf16* g = dout + (int64_t(b) * T + t) * C;
#pragma omp simd
                    for (int c = 0; c < C; c++) a[c] += load(g[c]);
                }
                G* d = dwpe + int64_t(t) * C;
#pragma omp simd
                for (int c = 0; c < C; c++) store(d[c], load(d[c]) + a[c]);
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

void embedding_forward(bf16* out, const int32_t* tokens, const bf16* wte, const bf16* wpe, int B,
                       int T, int C) {
    embedding_forward_impl(out, tokens, wte, wpe, B, T, C);
}
void embedding_backward(float* dwte, float* dwpe, const bf16* dout, const int32_t* tokens, int B,
                        int T, int C) {
    embedding_backward_bf16(dwte, dwpe, dout, tokens, B, T, C);
}
void embedding_backward(bf16* dwte, bf16* dwpe, const bf16* dout, const int32_t* tokens, int B,
                        int T, int C) {
    embedding_backward_bf16(dwte, dwpe, dout, tokens, B, T, C);
}

}  // namespace zt::cpu
