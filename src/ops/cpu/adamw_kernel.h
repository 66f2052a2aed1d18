// The fused AdamW element loop, written once over a "lanes" type and compiled
// once per instruction set: adamw_avx512.cpp and adamw_avx2.cpp include this
// after a `#pragma GCC target`, adamw.cpp includes it for the scalar path.
//
// Invariant: every lane does the operations of adamw.cpp's header comment in
// that order, with exactly two multiply-adds fused, m's lerp and v's
// b2 v + (1 - b2) g^2 (as GCC contracts them in adamw_update where the build
// has FMA), and every other product and quotient rounded on its own,
// p (1 - lr wd) included (torch applies the decay as its own p.mul_). The two
// are fused explicitly (fma); no other product can be: GCC contracts a
// product only into an addition that is its sole use, and the one product
// that has such a use, the decay, goes through unfusable(). So every path, on
// every build (-march=native or not), gives bitwise the same floats; and the
// bf16 write-back is the rounding of core/dtype.h (nearest, ties to even, NaN
// quiet) done in integers, because AVX512-BF16's vcvtneps2bf16 flushes
// denormals to zero.
//
// Everything below the declarations has internal linkage so each copy keeps
// the instruction set of the file that compiled it: an inline function with
// external linkage is merged across files by the linker, and the AVX-512
// copy could then run on a CPU without AVX-512. For the same reason the
// files that set a target include their headers before the pragma.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/dtype.h"

namespace zt::cpu {

// The update's scalars in the working precision, as adamw.cpp computes them.
template <class Real>
struct AdamWScalars {
    Real decay;     // 1 - lr wd, or 1
    Real w1;        // 1 - beta1
    Real beta2;     //
    Real w2;        // 1 - beta2
    Real neg_step;  // -lr / (1 - beta1^t)
    Real bc2_sqrt;  // sqrt(1 - beta2^t)
    Real eps;       //
};

// One fused step's arrays, all (n,); compute_out may be null.
template <class Grad>
struct AdamWSpan {
    float* param;
    const Grad* grad;
    float grad_scale;  // multiplies a bf16 gradient as it is read; unused for f32
    float* m;
    float* v;
    bf16* compute_out;
};

// Elements [begin, end) of a span on one thread, one function per path
// (defined where that path is compiled; the AVX ones only on x86).
template <class Grad>
void adamw_chunk_scalar(const AdamWScalars<float>& c, const AdamWSpan<Grad>& s, int64_t begin,
                        int64_t end);
template <class Grad>
void adamw_chunk_avx2(const AdamWScalars<float>& c, const AdamWSpan<Grad>& s, int64_t begin,
                      int64_t end);
template <class Grad>
void adamw_chunk_avx512(const AdamWScalars<float>& c, const AdamWSpan<Grad>& s, int64_t begin,
                        int64_t end);

namespace {

// One float at a time; also the tail of the vector paths.
struct ScalarLanes {
    using F = float;
    static constexpr int64_t width = 1;
    static F set1(float x) { return x; }
    static F load(const float* x) { return *x; }
    static F load_grad(const float* g, F) { return *g; }
    static F load_grad(const bf16* g, F scale) { return bf16_to_f32(*g) * scale; }
    static void store(float* x, F a) { *x = a; }
    static void store_bf16(bf16* out, F a) { *out = f32_to_bf16(a); }
    static F fma(F a, F b, F c) { return std::fma(a, b, c); }
    static F mul(F a, F b) { return a * b; }
    static F sub(F a, F b) { return a - b; }
    static F add(F a, F b) { return a + b; }
    static F div(F a, F b) { return a / b; }
    static F sqrt(F a) { return std::sqrt(a); }
};

// x, from where the compiler can no longer see that it is a product, so it
// is never fused into the addition that uses it.
template <class F>
inline F unfusable(F x) {
#if defined(__x86_64__)
    asm("" : "+x"(x));  // no instruction; x stays in its register
    return x;
#else
    volatile F r = x;
    return r;
#endif
}

// Whole groups of L::width elements from begin while they fit before end;
// returns where it stopped.
template <class L, class Grad>
inline int64_t adamw_lanes(const AdamWScalars<float>& c, const AdamWSpan<Grad>& s, int64_t begin,
                           int64_t end) {
    using F = typename L::F;
    const F decay = L::set1(c.decay), w1 = L::set1(c.w1), beta2 = L::set1(c.beta2);
    const F w2 = L::set1(c.w2), neg_step = L::set1(c.neg_step), bc2_sqrt = L::set1(c.bc2_sqrt);
    const F eps = L::set1(c.eps), scale = L::set1(s.grad_scale);
    int64_t i = begin;
    for (; i + L::width <= end; i += L::width) {
        const F g = L::load_grad(s.grad + i, scale);
        const F m0 = L::load(s.m + i);
        const F m = L::fma(w1, L::sub(g, m0), m0);
        const F v = L::fma(L::load(s.v + i), beta2, L::mul(L::mul(w2, g), g));
        const F denom = L::add(L::div(L::sqrt(v), bc2_sqrt), eps);
        const F p = L::add(unfusable(L::mul(L::load(s.param + i), decay)),
                           L::div(L::mul(neg_step, m), denom));
        L::store(s.m + i, m);
        L::store(s.v + i, v);
        L::store(s.param + i, p);
        if (s.compute_out) L::store_bf16(s.compute_out + i, p);
    }
    return i;
}

// [begin, end) with lanes L, the remainder one element at a time.
template <class L, class Grad>
inline void adamw_run(const AdamWScalars<float>& c, const AdamWSpan<Grad>& s, int64_t begin,
                      int64_t end) {
    adamw_lanes<ScalarLanes>(c, s, adamw_lanes<L>(c, s, begin, end), end);
}

}  // namespace

}  // namespace zt::cpu
