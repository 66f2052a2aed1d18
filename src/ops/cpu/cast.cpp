// f32 <-> bf16 array casts on the CPU.
//
// Invariant: element-wise the same conversion as core/dtype.h (round to
// nearest, ties to even; NaN stays a quiet NaN; Inf stays Inf), so every
// backend and the checkpoint writer agree bit for bit.
#include "ops/cast.h"

#include "core/check.h"

namespace zt::cpu {

void cast_f32_to_bf16(bf16* out, const float* inp, int64_t n) {
    ZT_CHECK(n >= 0, "cast_f32_to_bf16: negative length %lld", (long long)n);
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = f32_to_bf16(inp[i]);
}

void cast_bf16_to_f32(float* out, const bf16* inp, int64_t n) {
    ZT_CHECK(n >= 0, "cast_bf16_to_f32: negative length %lld", (long long)n);
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = bf16_to_f32(inp[i]);
}

}  // namespace zt::cpu
