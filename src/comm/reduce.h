// Element-wise reduction kernels the CPU backends share (mpi's user op, the
// ring's per-chunk reduce, local's avg).
//
// Invariant: bf16 adds in f32 and rounds to bf16 once per combination (one
// rounding per ring hop, as NCCL does), so bf16 travels the wire as bf16.
// dst may alias a or b element for element (dst == a or dst == b).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace zt {

inline void comm_add_f32(float* dst, const float* a, const float* b, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = a[i] + b[i];
}

inline void comm_add_bf16(uint16_t* dst, const uint16_t* a, const uint16_t* b, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float s = bf16_to_f32(bf16{a[i]}) + bf16_to_f32(bf16{b[i]});
        dst[i] = f32_to_bf16(s).bits;
    }
}

// dst = a + b, element-wise, n elements of dtype.
inline void comm_add(DType dtype, void* dst, const void* a, const void* b, int64_t n) {
    if (dtype == DType::f32) {
        comm_add_f32(static_cast<float*>(dst), static_cast<const float*>(a),
                     static_cast<const float*>(b), n);
    } else {
        comm_add_bf16(static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(a),
                      static_cast<const uint16_t*>(b), n);
    }
}

// buf /= world (the avg of a sum). Division, not a multiply by 1/world, so an
// exactly representable mean comes out exact.
inline void comm_divide(DType dtype, void* buf, int64_t n, int world) {
    float w = float(world);
    if (dtype == DType::f32) {
        float* p = static_cast<float*>(buf);
        for (int64_t i = 0; i < n; i++) p[i] /= w;
    } else {
        uint16_t* p = static_cast<uint16_t*>(buf);
        for (int64_t i = 0; i < n; i++) p[i] = f32_to_bf16(bf16_to_f32(bf16{p[i]}) / w).bits;
    }
}

}  // namespace zt
