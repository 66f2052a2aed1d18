// Rotary position embedding (Hugging Face rotate_half convention) on the CPU.
//
// Invariant: forward rotates each (x[i], x[i + D/2]) pair of every head by the
// angle t w_i, so it preserves every pair's norm; backward applies the
// transpose (inverse) rotation and accumulates (+=) into dinp. Rows are read
// with an explicit stride, so q and k are rotated inside the fused qkv buffer.
//
// Rows are stored as S (float, double or bf16) and rotated in the table's
// type A (fp32 for bf16 rows): load() widens an element, store() rounds once;
// for float and double both are the identity.
#include "ops/rope.h"

#include <cmath>
#include <vector>

#include "core/check.h"
#include "ops/cpu/storage.h"

namespace zt::cpu {

namespace {

void check_dims(int B, int T, int n_head, int head_dim, int64_t row_stride) {
    ZT_CHECK(B > 0 && T > 0 && n_head > 0, "rope: bad shape B=%d T=%d n_head=%d", B, T, n_head);
    ZT_CHECK(head_dim > 0 && head_dim % 2 == 0, "rope: head_dim %d must be even and positive",
             head_dim);
    ZT_CHECK(int64_t(n_head) * head_dim <= row_stride,
             "rope: %d heads of %d exceed the row stride %lld", n_head, head_dim,
             (long long)row_stride);
}

template <class S, class A>
void rope_forward_impl(S* out, const S* inp, const A* cos, const A* sin, int B, int T, int n_head,
                       int head_dim, int64_t row_stride) {
    check_dims(B, T, n_head, head_dim, row_stride);
    const int half = head_dim / 2;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < int64_t(B) * T; r++) {
        const A* c = cos + (r % T) * half;
        const A* s = sin + (r % T) * half;
        for (int h = 0; h < n_head; h++) {
            const S* x = inp + r * row_stride + int64_t(h) * head_dim;
            S* y = out + r * row_stride + int64_t(h) * head_dim;
            // Safe when y == x: lane i reads and writes only elements i and i + half.
#pragma omp simd
            for (int i = 0; i < half; i++) {
                const A x1 = load(x[i]), x2 = load(x[i + half]);
                store(y[i], x1 * c[i] - x2 * s[i]);
                store(y[i + half], x2 * c[i] + x1 * s[i]);
            }
        }
    }
}

template <class S, class A>
void rope_backward_impl(S* dinp, const S* dout, const A* cos, const A* sin, int B, int T,
                        int n_head, int head_dim, int64_t row_stride) {
    check_dims(B, T, n_head, head_dim, row_stride);
    ZT_CHECK(dinp != dout, "rope_backward: dinp must not alias dout (it accumulates)");
    const int half = head_dim / 2;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < int64_t(B) * T; r++) {
        const A* c = cos + (r % T) * half;
        const A* s = sin + (r % T) * half;
        for (int h = 0; h < n_head; h++) {
            const S* dy = dout + r * row_stride + int64_t(h) * head_dim;
            S* dx = dinp + r * row_stride + int64_t(h) * head_dim;
#pragma omp simd
            for (int i = 0; i < half; i++) {
                const A dy1 = load(dy[i]), dy2 = load(dy[i + half]);
                store(dx[i], load(dx[i]) + (dy1 * c[i] + dy2 * s[i]));
                store(dx[i + half], load(dx[i + half]) + (dy2 * c[i] - dy1 * s[i]));
            }
        }
    }
}

void check_table(int T, int head_dim, float theta) {
    ZT_CHECK(T > 0 && head_dim > 0 && head_dim % 2 == 0,
             "rope_table: need T > 0 and an even head_dim, got T=%d head_dim=%d", T, head_dim);
    ZT_CHECK(theta > 1.0f, "rope_table: theta %g must exceed 1", double(theta));
}

// A float product rounded on its own. PyTorch rounds every tensor operation,
// and with -ffp-contract=fast the compiler would fuse a * b + c into one
// rounding; a product it cannot see into cannot be fused.
[[gnu::noinline]] float rounded_product(float a, float b) {
    return a * b;
}

void check_scaling(const RopeScaling& s) {
    if (!s.enabled()) return;
    ZT_CHECK(std::isfinite(s.factor) && s.factor >= 1 && s.low_freq_factor > 0 &&
                 s.high_freq_factor > s.low_freq_factor && s.original_max_position > 0,
             "rope_inv_freq: llama3 scaling needs factor >= 1, 0 < low_freq_factor < "
             "high_freq_factor and original_max_position > 0; got factor %g, low %g, high %g, "
             "original %d",
             double(s.factor), double(s.low_freq_factor), double(s.high_freq_factor),
             s.original_max_position);
}

}  // namespace

// Float frequencies in Hugging Face's float32 arithmetic: inv_freq = 1 /
// theta^(2i/D) with a float exponent; then, for llama3 scaling, the steps of
// transformers' _compute_llama3_parameters as PyTorch evaluates them on float32
// tensors: a Python scalar meets the tensor as a float, `scalar / tensor` is
// reciprocal(tensor) * scalar, and every operation rounds to float.
void rope_inv_freq(float* inv_freq, int head_dim, float theta, const RopeScaling& s) {
    check_table(1, head_dim, theta);
    check_scaling(s);
    const int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        const float expo = float(2 * i) / float(head_dim);
        inv_freq[i] = 1.0f / float(std::pow(double(theta), double(expo)));
    }
    if (!s.enabled()) return;
    const float two_pi = float(2.0 * M_PI);
    const float old_len = float(s.original_max_position);
    const float low_wavelen = float(double(s.original_max_position) / double(s.low_freq_factor));
    const float high_wavelen = float(double(s.original_max_position) / double(s.high_freq_factor));
    const float span = float(double(s.high_freq_factor) - double(s.low_freq_factor));
    for (int i = 0; i < half; i++) {
        const float w = inv_freq[i];
        const float wavelen = rounded_product(1.0f / w, two_pi);
        if (wavelen < high_wavelen) continue;  // high frequency: kept
        if (wavelen > low_wavelen) {           // low frequency: slowed by the factor
            inv_freq[i] = w / s.factor;
            continue;
        }
        const float smooth = (rounded_product(1.0f / wavelen, old_len) - s.low_freq_factor) / span;
        inv_freq[i] = rounded_product(1.0f - smooth, w) / s.factor + rounded_product(smooth, w);
    }
}

void rope_inv_freq(double* inv_freq, int head_dim, float theta, const RopeScaling& s) {
    check_table(1, head_dim, theta);
    check_scaling(s);
    const int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        double w = std::pow(double(theta), -2.0 * i / head_dim);
        if (s.enabled()) {
            const double wavelen = 2.0 * M_PI / w, L = s.original_max_position;
            const double low = s.low_freq_factor, high = s.high_freq_factor;
            if (wavelen > L / low) {
                w /= s.factor;
            } else if (wavelen >= L / high) {
                const double smooth = (L / wavelen - low) / (high - low);
                w = (1.0 - smooth) * w / s.factor + smooth * w;
            }
        }
        inv_freq[i] = w;
    }
}

// Float table in Hugging Face's float32 arithmetic (angle = float(t) * inv_freq
// rounded to float, then cos/sin of that float angle): at t ~ 4096 the float
// angle is off by ~2e-4 rad from the exact one, and matching PyTorch golden
// values needs the same rounding, not a more exact one.
void rope_table(float* cos, float* sin, int T, int head_dim, float theta,
                const RopeScaling& scaling) {
    check_table(T, head_dim, theta);
    const int half = head_dim / 2;
    std::vector<float> inv_freq(static_cast<size_t>(half));
    rope_inv_freq(inv_freq.data(), head_dim, theta, scaling);
    for (int i = 0; i < half; i++) {
        for (int t = 0; t < T; t++) {
            const float angle = float(t) * inv_freq[size_t(i)];
            cos[int64_t(t) * half + i] = float(std::cos(double(angle)));
            sin[int64_t(t) * half + i] = float(std::sin(double(angle)));
        }
    }
}

void rope_table(double* cos, double* sin, int T, int head_dim, float theta,
                const RopeScaling& scaling) {
    check_table(T, head_dim, theta);
    const int half = head_dim / 2;
    std::vector<double> inv_freq(static_cast<size_t>(half));
    rope_inv_freq(inv_freq.data(), head_dim, theta, scaling);
    for (int i = 0; i < half; i++) {
        for (int t = 0; t < T; t++) {
            cos[int64_t(t) * half + i] = std::cos(t * inv_freq[size_t(i)]);
            sin[int64_t(t) * half + i] = std::sin(t * inv_freq[size_t(i)]);
        }
    }
}

void rope_forward(float* out, const float* inp, const float* cos, const float* sin, int B, int T,
                  int n_head, int head_dim, int64_t row_stride) {
    rope_forward_impl(out, inp, cos, sin, B, T, n_head, head_dim, row_stride);
}
void rope_forward(double* out, const double* inp, const double* cos, const double* sin, int B,
                  int T, int n_head, int head_dim, int64_t row_stride) {
    rope_forward_impl(out, inp, cos, sin, B, T, n_head, head_dim, row_stride);
}
void rope_backward(float* dinp, const float* dout, const float* cos, const float* sin, int B, int T,
                   int n_head, int head_dim, int64_t row_stride) {
    rope_backward_impl(dinp, dout, cos, sin, B, T, n_head, head_dim, row_stride);
}
void rope_backward(double* dinp, const double* dout, const double* cos, const double* sin, int B,
                   int T, int n_head, int head_dim, int64_t row_stride) {
    rope_backward_impl(dinp, dout, cos, sin, B, T, n_head, head_dim, row_stride);
}

void rope_forward(bf16* out, const bf16* inp, const float* cos, const float* sin, int B, int T,
                  int n_head, int head_dim, int64_t row_stride) {
    rope_forward_impl(out, inp, cos, sin, B, T, n_head, head_dim, row_stride);
}
void rope_backward(bf16* dinp, const bf16* dout, const float* cos, const float* sin, int B, int T,
                   int n_head, int head_dim, int64_t row_stride) {
    rope_backward_impl(dinp, dout, cos, sin, B, T, n_head, head_dim, row_stride);
}

}  // namespace zt::cpu
