// MLP activations on the CPU: SwiGLU (LLaMA) and tanh-approximated GELU (GPT-2),
// and the residual add.
//
// Invariant: backward accumulates (+=) into its input gradient. Both
// activations are written through a sigmoid, s(z) = 1 / (1 + exp(-z)):
//   silu(g) = g s(g)
//   gelu(x) = 0.5 x (1 + tanh(u)) = x s(2u),  u = sqrt(2/pi) (x + 0.044715 x^3)
// which needs one exp per element (vectorised by exp_v) and never cancels.
//
// One implementation serves every precision: tensors are stored as S (float,
// double or bf16) and the arithmetic is in A = acc_t<S> (the same type, or
// fp32 for bf16). load() widens an element to A, store() rounds once; for
// float and double both are the identity, so those paths are the plain loops.
#include "ops/mlp.h"

#include "core/check.h"
#include "ops/cpu/storage.h"
#include "ops/cpu/vec_math.h"

namespace zt::cpu {

namespace {

constexpr double kGeluC = 0.7978845608028654;  // sqrt(2/pi)
constexpr double kGeluA = 0.044715;

template <class Real>
inline Real sigmoid(Real z) {
    return Real(1) / (Real(1) + exp_v(-z));
}

template <class S>
void swiglu_forward_impl(S* out, const S* gate_up, int64_t N, int H) {
    using A = acc_t<S>;
    ZT_CHECK(N >= 0 && H > 0, "swiglu: bad shape N=%lld H=%d", (long long)N, H);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const S* gate = gate_up + n * 2 * H;
        const S* up = gate + H;
        S* o = out + n * H;
#pragma omp simd
        for (int i = 0; i < H; i++) {
            const A g = load(gate[i]);
            store(o[i], g * sigmoid(g) * load(up[i]));
        }
    }
}

// d silu(g) / dg = s (1 + g (1 - s))
template <class S>
void swiglu_backward_impl(S* dgate_up, const S* dout, const S* gate_up, int64_t N, int H) {
    using A = acc_t<S>;
    ZT_CHECK(N >= 0 && H > 0, "swiglu: bad shape N=%lld H=%d", (long long)N, H);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const S* gate = gate_up + n * 2 * H;
        const S* up = gate + H;
        S* dgate = dgate_up + n * 2 * H;
        S* dup = dgate + H;
        const S* dy = dout + n * H;
#pragma omp simd
        for (int i = 0; i < H; i++) {
            const A g = load(gate[i]), s = sigmoid(g), d = load(dy[i]);
            store(dgate[i], load(dgate[i]) + d * load(up[i]) * s * (A(1) + g * (A(1) - s)));
            store(dup[i], load(dup[i]) + d * g * s);
        }
    }
}

template <class S>
void gelu_forward_impl(S* out, const S* inp, int64_t n) {
    using A = acc_t<S>;
    ZT_CHECK(n >= 0, "gelu: negative length %lld", (long long)n);
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const A x = load(inp[i]);
        const A u = A(kGeluC) * (x + A(kGeluA) * x * x * x);
        store(out[i], x * sigmoid(A(2) * u));
    }
}

// With s = s(2u): d gelu / dx = s + 2 x s (1 - s) du/dx, du/dx = sqrt(2/pi) (1 + 3 a x^2).
template <class S>
void gelu_backward_impl(S* dinp, const S* dout, const S* inp, int64_t n) {
    using A = acc_t<S>;
    ZT_CHECK(n >= 0, "gelu: negative length %lld", (long long)n);
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const A x = load(inp[i]);
        const A u = A(kGeluC) * (x + A(kGeluA) * x * x * x);
        const A s = sigmoid(A(2) * u);
        const A du = A(kGeluC) * (A(1) + A(3 * kGeluA) * x * x);
        store(dinp[i], load(dinp[i]) + load(dout[i]) * (s + A(2) * x * s * (A(1) - s) * du));
    }
}

template <class S>
void add_inplace_impl(S* y, const S* x, int64_t n) {
    ZT_CHECK(n >= 0, "add_inplace: negative length %lld", (long long)n);
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) store(y[i], load(y[i]) + load(x[i]));
}

}  // namespace

void swiglu_forward(float* out, const float* gate_up, int64_t N, int H) {
    swiglu_forward_impl(out, gate_up, N, H);
}
void swiglu_forward(double* out, const double* gate_up, int64_t N, int H) {
    swiglu_forward_impl(out, gate_up, N, H);
}
void swiglu_backward(float* dgate_up, const float* dout, const float* gate_up, int64_t N, int H) {
    swiglu_backward_impl(dgate_up, dout, gate_up, N, H);
}
void swiglu_backward(double* dgate_up, const double* dout, const double* gate_up, int64_t N,
                     int H) {
    swiglu_backward_impl(dgate_up, dout, gate_up, N, H);
}
void gelu_forward(float* out, const float* inp, int64_t n) {
    gelu_forward_impl(out, inp, n);
}
void gelu_forward(double* out, const double* inp, int64_t n) {
    gelu_forward_impl(out, inp, n);
}
void gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n) {
    gelu_backward_impl(dinp, dout, inp, n);
}
void gelu_backward(double* dinp, const double* dout, const double* inp, int64_t n) {
    gelu_backward_impl(dinp, dout, inp, n);
}

void swiglu_forward(bf16* out, const bf16* gate_up, int64_t N, int H) {
    swiglu_forward_impl(out, gate_up, N, H);
}
void swiglu_backward(bf16* dgate_up, const bf16* dout, const bf16* gate_up, int64_t N, int H) {
    swiglu_backward_impl(dgate_up, dout, gate_up, N, H);
}
void gelu_forward(bf16* out, const bf16* inp, int64_t n) {
    gelu_forward_impl(out, inp, n);
}
void gelu_backward(bf16* dinp, const bf16* dout, const bf16* inp, int64_t n) {
    gelu_backward_impl(dinp, dout, inp, n);
}

void add_inplace(float* y, const float* x, int64_t n) {
    add_inplace_impl(y, x, n);
}
void add_inplace(bf16* y, const bf16* x, int64_t n) {
    add_inplace_impl(y, x, n);
}

}  // namespace zt::cpu
