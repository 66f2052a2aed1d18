// Storage type <-> math type for the CPU ops, so one template serves float,
// double and bf16 storage.
//
// Invariant: a bf16 value is widened to fp32 on load and rounded once, to
// nearest even, on store; float and double pass through unchanged, so their
// instantiations are the plain loops they always were. acc_t<S> is the type
// the arithmetic runs in: fp32 for bf16, S itself otherwise.
#pragma once

#include "core/dtype.h"

namespace zt::cpu {

inline float load(bf16 x) { return bf16_to_f32(x); }
template <class Real>
inline Real load(Real x) {
    return x;
}
inline void store(bf16& y, float v) { y = f32_to_bf16(v); }
template <class Real>
inline void store(Real& y, Real v) {
    y = v;
}
template <class S>
using acc_t = decltype(load(S{}));

}  // namespace zt::cpu
