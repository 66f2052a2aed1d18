// exp that the compiler can vectorise, for the softmax and activation loops.
//
// glibc's expf is a scalar call unless built with -ffast-math, which would make
// every softmax and GELU element-by-element. exp_v<float> is Cephes' expf
// polynomial (relative error under 2 ulp over the whole range, which is what
// PyTorch's vectorised exp also gives) written without branches, so loops
// under `#pragma omp simd` vectorise. exp_v<double> is std::exp: the double
// path exists for gradient checks and must be exact, not fast.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/dtype.h"

namespace zt::cpu {

template <class T>
inline T exp_v(T x);

template <>
inline double exp_v<double>(double x) {
    return std::exp(x);
}

// exp(x) for x in [-87.3, 88.7]; 0 below (no denormals), 2^127.9 above, NaN stays NaN.
template <>
inline float exp_v<float>(float x) {
    const float lo = -87.33654f, hi = 88.72283f;
    const bool underflow = x < lo;
    x = x < lo ? lo : x;
    x = x > hi ? hi : x;
    // x = n ln2 + r with |r| <= ln2/2; ln2 split in two so n*ln2 is exact enough.
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    // 2^n by building the exponent field; n in [-126, 128], 128 split to stay finite.
    // A NaN x has a NaN n, whose conversion to int is undefined: it converts 0
    // instead, and the NaN reaches the result through p.
    const int32_t ni = int32_t(n == n ? n : 0.0f);
    const int32_t n1 = ni >> 1, n2 = ni - n1;
    uint32_t b1 = uint32_t(n1 + 127) << 23, b2 = uint32_t(n2 + 127) << 23;
    float s1, s2;
    std::memcpy(&s1, &b1, 4);
    std::memcpy(&s2, &b2, 4);
    const float y = p * s1 * s2;
    return underflow ? 0.0f : y;
}

// In place over p[0..n): softmax; p[n..len) = 0 (the causal mask). Shared by
// training's attention and generation's, so both round the same way.
template <class Real>
void causal_softmax_row(Real* p, int n, int len) {
    Real mx = p[0];
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < n; j++) mx = std::max(mx, p[j]);
    Real sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
        p[j] = exp_v(p[j] - mx);
        sum += p[j];
    }
    const Real inv = Real(1) / sum;
#pragma omp simd
    for (int j = 0; j < n; j++) p[j] *= inv;
    std::fill(p + n, p + len, Real(0));
}

// causal_softmax_row for bf16 storage: softmax(scale * p[0..n)) computed in
// fp32, the probabilities rounded once into out[0..n), and out[n..len) = 0.
// The scale (> 0) is applied here rather than by the GEMM that made p, so
// that GEMM runs with alpha = 1. p[0..n) is scratch (left holding the
// unnormalised exponentials); out and p must not overlap.
inline void causal_softmax_row_bf16(bf16* out, float* p, int n, int len, float scale) {
    float mx = p[0];
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < n; j++) mx = std::max(mx, p[j]);
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
        p[j] = exp_v((p[j] - mx) * scale);
        sum += p[j];
    }
    const float inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j < n; j++) out[j] = f32_to_bf16(p[j] * inv);
    std::fill(out + n, out + len, bf16{0});
}

}  // namespace zt::cpu
