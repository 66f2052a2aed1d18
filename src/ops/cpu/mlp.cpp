// MLP activations on the CPU: SwiGLU (LLaMA) and tanh-approximated GELU (GPT-2).
//
// Invariant: backward accumulates (+=) into its input gradient. Both
// activations are written through a sigmoid, s(z) = 1 / (1 + exp(-z)):
//   silu(g) = g s(g)
//   gelu(x) = 0.5 x (1 + tanh(u)) = x s(2u),  u = sqrt(2/pi) (x + 0.044715 x^3)
// which needs one exp per element (vectorised by exp_v) and never cancels.
#include "ops/mlp.h"

#include "core/check.h"
#include "ops/cpu/vec_math.h"

namespace zt::cpu {

namespace {

constexpr double kGeluC = 0.7978845608028654;  // sqrt(2/pi)
constexpr double kGeluA = 0.044715;

template <class Real>
inline Real sigmoid(Real z) {
    return Real(1) / (Real(1) + exp_v(-z));
}

template <class Real>
void swiglu_forward_impl(Real* out, const Real* gate_up, int64_t N, int H) {
    ZT_CHECK(N >= 0 && H > 0, "swiglu: bad shape N=%lld H=%d", (long long)N, H);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const Real* gate = gate_up + n * 2 * H;
        const Real* up = gate + H;
        Real* o = out + n * H;
#pragma omp simd
        for (int i = 0; i < H; i++) o[i] = gate[i] * sigmoid(gate[i]) * up[i];
    }
}

// d silu(g) / dg = s (1 + g (1 - s))
template <class Real>
void swiglu_backward_impl(Real* dgate_up, const Real* dout, const Real* gate_up, int64_t N, int H) {
    ZT_CHECK(N >= 0 && H > 0, "swiglu: bad shape N=%lld H=%d", (long long)N, H);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const Real* gate = gate_up + n * 2 * H;
        const Real* up = gate + H;
        Real* dgate = dgate_up + n * 2 * H;
        Real* dup = dgate + H;
        const Real* dy = dout + n * H;
#pragma omp simd
        for (int i = 0; i < H; i++) {
            const Real g = gate[i], s = sigmoid(g);
            dgate[i] += dy[i] * up[i] * s * (Real(1) + g * (Real(1) - s));
            dup[i] += dy[i] * g * s;
        }
    }
}

template <class Real>
void gelu_forward_impl(Real* out, const Real* inp, int64_t n) {
    ZT_CHECK(n >= 0, "gelu: negative length %lld", (long long)n);
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const Real x = inp[i];
        const Real u = Real(kGeluC) * (x + Real(kGeluA) * x * x * x);
        out[i] = x * sigmoid(Real(2) * u);
    }
}

// With s = s(2u): d gelu / dx = s + 2 x s (1 - s) du/dx, du/dx = sqrt(2/pi) (1 + 3 a x^2).
template <class Real>
void gelu_backward_impl(Real* dinp, const Real* dout, const Real* inp, int64_t n) {
    ZT_CHECK(n >= 0, "gelu: negative length %lld", (long long)n);
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const Real x = inp[i];
        const Real u = Real(kGeluC) * (x + Real(kGeluA) * x * x * x);
        const Real s = sigmoid(Real(2) * u);
        const Real du = Real(kGeluC) * (Real(1) + Real(3 * kGeluA) * x * x);
        dinp[i] += dout[i] * (s + Real(2) * x * s * (Real(1) - s) * du);
    }
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

}  // namespace zt::cpu
