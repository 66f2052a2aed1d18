// Casts between f32 and bf16 arrays (round to nearest even, NaN stays NaN).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace zt::cpu {

void cast_f32_to_bf16(bf16* out, const float* inp, int64_t n);
void cast_bf16_to_f32(float* out, const bf16* inp, int64_t n);

}  // namespace zt::cpu
