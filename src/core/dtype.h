// Element types and the f32 <-> bf16 conversions every backend agrees on.
// The floating types (f32, bf16, f16, f64) carry tensors and scalar metrics;
// the integer ones (i32, i64, u8) carry control data (counts, flags, ledgers,
// names, file records), which never travels as floats.
//
// bf16 is the top half of an f32; conversion rounds to nearest, ties to even,
// and keeps NaN a NaN (a quiet NaN is forced so rounding never makes it Inf).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace zt {

// Values are stable (ranks compare them in collective signatures): new types
// are appended, never inserted.
enum class DType : uint8_t { f32, bf16, f16, i32, i64, u8, f64 };
constexpr int kDTypeCount = 7;

// Bytes per element; 0 for a value outside the enum.
inline size_t dtype_size(DType t) {
    switch (t) {
        case DType::f32: return 4;
        case DType::bf16: return 2;
        case DType::f16: return 2;
        case DType::i32: return 4;
        case DType::i64: return 8;
        case DType::u8: return 1;
        case DType::f64: return 8;
    }
    return 0;
}

inline const char* dtype_name(DType t) {
    switch (t) {
        case DType::f32: return "f32";
        case DType::bf16: return "bf16";
        case DType::f16: return "f16";
        case DType::i32: return "i32";
        case DType::i64: return "i64";
        case DType::u8: return "u8";
        case DType::f64: return "f64";
    }
    return "?";
}

inline bool dtype_is_integer(DType t) {
    return t == DType::i32 || t == DType::i64 || t == DType::u8;
}

struct bf16 {
    uint16_t bits;
};

inline bf16 f32_to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN: all-ones exponent, non-zero mantissa
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
