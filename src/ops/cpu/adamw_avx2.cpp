// The fused AdamW step's AVX2 path: adamw_kernel.h's loop on 8 floats.
// Compiled for AVX2 and FMA whatever the build's -march; adamw.cpp calls it
// only when the CPU has both (__builtin_cpu_supports).
#if defined(__x86_64__)

#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "core/dtype.h"

#pragma GCC target("avx2,fma")

#include "ops/cpu/adamw_kernel.h"

namespace zt::cpu {

namespace {

struct Avx2Lanes {
    using F = __m256;
    static constexpr int64_t width = 8;
    static F set1(float x) { return _mm256_set1_ps(x); }
    static F load(const float* x) { return _mm256_loadu_ps(x); }
    static F load_grad(const float* g, F) { return load(g); }
    static F load_grad(const bf16* g, F scale) {
        const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)g));
        return _mm256_mul_ps(_mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)), scale);
    }
    static void store(float* x, F a) { _mm256_storeu_ps(x, a); }
    // As Avx512Lanes::store_bf16; packus keeps the 16-bit halves (all in
    // 0..65535) per 128-bit lane, the permute joins the two lanes' results.
    static void store_bf16(bf16* out, F a) {
        const __m256i u = _mm256_castps_si256(a);
        const __m256i top = _mm256_srli_epi32(u, 16);
        const __m256i bias = _mm256_add_epi32(_mm256_and_si256(top, _mm256_set1_epi32(1)),
                                              _mm256_set1_epi32(0x7fff));
        const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
        const __m256i quiet = _mm256_or_si256(top, _mm256_set1_epi32(0x40));
        const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(a, a, _CMP_UNORD_Q));
        const __m256i bits = _mm256_blendv_epi8(rounded, quiet, nan);
        const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(bits, bits), 0x08);
        _mm_storeu_si128((__m128i*)out, _mm256_castsi256_si128(packed));
    }
    static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
    static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
    static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
    static F add(F a, F b) { return _mm256_add_ps(a, b); }
    static F div(F a, F b) { return _mm256_div_ps(a, b); }
    static F sqrt(F a) { return _mm256_sqrt_ps(a); }
};

}  // namespace

template <class Grad>
void adamw_chunk_avx2(const AdamWScalars<float>& c, const AdamWSpan<Grad>& s, int64_t begin,
                      int64_t end) {
    adamw_run<Avx2Lanes>(c, s, begin, end);
}
template void adamw_chunk_avx2(const AdamWScalars<float>&, const AdamWSpan<float>&, int64_t,
                               int64_t);
template void adamw_chunk_avx2(const AdamWScalars<float>&, const AdamWSpan<bf16>&, int64_t,
                               int64_t);

}  // namespace zt::cpu

#endif  // __x86_64__
