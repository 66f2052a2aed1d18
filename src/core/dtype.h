// Element types and the f32 <-> bf16 conversions every backend agrees on.
//
// bf16 is the top half of an f32; conversion rounds to nearest, ties to even,
// and keeps NaN a NaN (a quiet NaN is forced so rounding never makes it Inf).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace zt {

enum class DType : uint8_t { f32, bf16, f16 };

inline size_t dtype_size(DType t) { return t == DType::f32 ? 4 : 2; }

inline const char* dtype_name(DType t) {
    switch (t) {
        case DType::f32: return "f32";
        case DType::bf16: return "bf16";
        case DType::f16: return "f16";
    }
    return "?";
}

struct bf16 {
    uint16_t bits;
};

inline bf16 f32_to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) {
        return bf16{uint16_t((u >> 16) | 0x0040u)};  // quiet NaN
    }
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return bf16{uint16_t((u + rounding) >> 16)};
}

inline float bf16_to_f32(bf16 h) {
    uint32_t u = uint32_t(h.bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

}  // namespace zt
