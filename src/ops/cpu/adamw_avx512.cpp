// The fused AdamW step's AVX-512 path: adamw_kernel.h's loop on 16 floats.
// Compiled for AVX-512F whatever the build's -march; adamw.cpp calls it only
// when the CPU has AVX-512F (__builtin_cpu_supports).
#if defined(__x86_64__)

#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "core/dtype.h"

#pragma GCC target("avx512f")
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own
// `__Y = __Y` placeholders once inlined (GCC bug 105593, fixed in 13).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "ops/cpu/adamw_kernel.h"

namespace zt::cpu {

namespace {

struct Avx512Lanes {
    using F = __m512;
    static constexpr int64_t width = 16;
    static F set1(float x) { return _mm512_set1_ps(x); }
    static F load(const float* x) { return _mm512_loadu_ps(x); }
    static F load_grad(const float* g, F) { return load(g); }
    static F load_grad(const bf16* g, F scale) {
        const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)g));
        return _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(wide, 16)), scale);
    }
    static void store(float* x, F a) { _mm512_storeu_ps(x, a); }
    // core/dtype.h's f32_to_bf16 on 16 lanes: add 0x7fff plus the kept
    // mantissa's lowest bit, keep the top half; a NaN keeps its top half, quieted.
    static void store_bf16(bf16* out, F a) {
        const __m512i u = _mm512_castps_si512(a);
        const __m512i top = _mm512_srli_epi32(u, 16);
        const __m512i bias = _mm512_add_epi32(_mm512_and_si512(top, _mm512_set1_epi32(1)),
                                              _mm512_set1_epi32(0x7fff));
        const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
        const __m512i quiet = _mm512_or_si512(top, _mm512_set1_epi32(0x40));
        const __mmask16 nan = _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
        const __m512i bits = _mm512_mask_blend_epi32(nan, rounded, quiet);
        _mm256_storeu_si256((__m256i*)out, _mm512_cvtepi32_epi16(bits));
    }
    static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
    static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
    static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
    static F add(F a, F b) { return _mm512_add_ps(a, b); }
    static F div(F a, F b) { return _mm512_div_ps(a, b); }
    static F sqrt(F a) { return _mm512_sqrt_ps(a); }
};

}  // namespace

template <class Grad>
void adamw_chunk_avx512(const AdamWScalars<float>& c, const AdamWSpan<Grad>& s, int64_t begin,
                        int64_t end) {
    adamw_run<Avx512Lanes>(c, s, begin, end);
}
template void adamw_chunk_avx512(const AdamWScalars<float>&, const AdamWSpan<float>&, int64_t,
                                 int64_t);
template void adamw_chunk_avx512(const AdamWScalars<float>&, const AdamWSpan<bf16>&, int64_t,
                                 int64_t);

}  // namespace zt::cpu

#endif  // __x86_64__
