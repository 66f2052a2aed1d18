// Element-wise reduction kernels the CPU backends share (mpi's user ops, the
// ring's per-chunk reduce, avg's final divide).
//
// Invariants (communicator.h states the contract):
//   - bf16 adds in f32 and rounds to bf16 once per combination (one rounding
//     per ring hop, as NCCL does), so bf16 travels the wire as bf16; its max
//     compares values and keeps the larger one's bits (no rounding).
//   - Integer sums are exact in any order: they add in the unsigned type of
//     the same width, so an overflow wraps modulo 2^bits (C++20 defines the
//     conversion back) instead of being undefined.
//   - dst may alias a or b element for element (dst == a or dst == b).
#pragma once

#include <cstdint>

#include "comm/communicator.h"
#include "core/check.h"
#include "core/dtype.h"

namespace zt {

inline void comm_add_bf16(uint16_t* dst, const uint16_t* a, const uint16_t* b, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float s = bf16_to_f32(bf16{a[i]}) + bf16_to_f32(bf16{b[i]});
        dst[i] = f32_to_bf16(s).bits;
    }
}

inline void comm_max_bf16(uint16_t* dst, const uint16_t* a, const uint16_t* b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        dst[i] = bf16_to_f32(bf16{a[i]}) < bf16_to_f32(bf16{b[i]}) ? b[i] : a[i];
}

// T is the element type, U the type the addition runs in (T for floats, the
// unsigned type of T's width for integers).
template <typename T, typename U = T>
inline void comm_add_typed(void* dst, const void* a, const void* b, int64_t n) {
    T* d = static_cast<T*>(dst);
    const T* x = static_cast<const T*>(a);
    const T* y = static_cast<const T*>(b);
    for (int64_t i = 0; i < n; i++) d[i] = T(U(x[i]) + U(y[i]));
}

template <typename T>
inline void comm_max_typed(void* dst, const void* a, const void* b, int64_t n) {
    T* d = static_cast<T*>(dst);
    const T* x = static_cast<const T*>(a);
    const T* y = static_cast<const T*>(b);
    for (int64_t i = 0; i < n; i++) d[i] = x[i] < y[i] ? y[i] : x[i];
}

// dst = a (op) b, element-wise, n elements of dtype: sum and avg add (avg
// divides once at the end, comm_divide), max takes the larger. The dtype and
// op were checked at issue (comm_check_dtype); anything else is a bug here.
inline void comm_combine(DType dtype, ReduceOp op, void* dst, const void* a, const void* b,
                         int64_t n) {
    const bool add = op != ReduceOp::max;
    switch (dtype) {
        case DType::f32:
            return add ? comm_add_typed<float>(dst, a, b, n) : comm_max_typed<float>(dst, a, b, n);
        case DType::f64:
            return add ? comm_add_typed<double>(dst, a, b, n)
                       : comm_max_typed<double>(dst, a, b, n);
        case DType::bf16: {
            auto* d = static_cast<uint16_t*>(dst);
            auto* x = static_cast<const uint16_t*>(a);
            auto* y = static_cast<const uint16_t*>(b);
            return add ? comm_add_bf16(d, x, y, n) : comm_max_bf16(d, x, y, n);
        }
        case DType::i32:
            return add ? comm_add_typed<int32_t, uint32_t>(dst, a, b, n)
                       : comm_max_typed<int32_t>(dst, a, b, n);
        case DType::i64:
            return add ? comm_add_typed<int64_t, uint64_t>(dst, a, b, n)
                       : comm_max_typed<int64_t>(dst, a, b, n);
        case DType::u8:
            return add ? comm_add_typed<uint8_t, uint32_t>(dst, a, b, n)
                       : comm_max_typed<uint8_t>(dst, a, b, n);
        case DType::f16:
            break;
    }
    ZT_FAIL("comm_combine: dtype %s has no %s kernel", dtype_name(dtype), reduce_op_name(op));
}

// buf /= world (the avg of a sum), floating types only. Division, not a
// multiply by 1/world, so an exactly representable mean comes out exact.
inline void comm_divide(DType dtype, void* buf, int64_t n, int world) {
    switch (dtype) {
        case DType::f32: {
            float* p = static_cast<float*>(buf);
            for (int64_t i = 0; i < n; i++) p[i] /= float(world);
            return;
        }
        case DType::f64: {
            double* p = static_cast<double*>(buf);
            for (int64_t i = 0; i < n; i++) p[i] /= double(world);
            return;
        }
        case DType::bf16: {
            uint16_t* p = static_cast<uint16_t*>(buf);
            for (int64_t i = 0; i < n; i++)
                p[i] = f32_to_bf16(bf16_to_f32(bf16{p[i]}) / float(world)).bits;
            return;
        }
        default:
            break;
    }
    ZT_FAIL("comm_divide: avg is not defined on %s", dtype_name(dtype));
}

}  // namespace zt
