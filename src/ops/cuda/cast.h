// Casts between f32 and bf16 device arrays; same names and argument order as
// ops/cast.h plus the stream. Round to nearest even; NaN stays a quiet NaN,
// bit for bit what the CPU cast (core/dtype.h) produces.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace zt::cuda {

void cast_f32_to_bf16(__nv_bfloat16* out, const float* inp, int64_t n, cudaStream_t stream);
void cast_bf16_to_f32(float* out, const __nv_bfloat16* inp, int64_t n, cudaStream_t stream);

}  // namespace zt::cuda
