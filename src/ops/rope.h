// Rotary position embedding, Hugging Face's "rotate_half" convention:
// within a head of size D, element i (< D/2) pairs with element i + D/2:
//   out[i]       = x[i] * cos(t w_i) - x[i + D/2] * sin(t w_i)
//   out[i + D/2] = x[i + D/2] * cos(t w_i) + x[i] * sin(t w_i),  w_i = theta^(-2i/D)
// Llama 3.1/3.2 rescale the frequencies w_i (Hugging Face rope_type "llama3"):
// with wavelength l_i = 2 pi / w_i and L = original_max_position,
//   l_i < L / high_freq_factor:  w_i kept (high frequencies)
//   l_i > L / low_freq_factor:   w_i / factor (low frequencies)
//   otherwise:                   (1 - s) w_i / factor + s w_i,
//                                s = (L / l_i - low_freq_factor) / (high_freq_factor -
//                                low_freq_factor)
// Only the table changes; forward and backward read the same table.
// A rotation preserves the norm of every (x[i], x[i + D/2]) pair; backward is
// the inverse rotation. Heads are read from rows of a packed buffer (row
// stride given), so RoPE applies to q and k inside the fused qkv output.
// The bf16 overloads rotate bf16 rows with the fp32 tables: fp32 arithmetic,
// one rounding per element on store.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace zt {

// Llama 3's frequency rescaling (config.json rope_scaling with rope_type "llama3").
struct RopeScaling {
    float factor = 0;  // 0: no rescaling
    float low_freq_factor = 0;
    float high_freq_factor = 0;
    int original_max_position = 0;  // original_max_position_embeddings
    bool enabled() const { return factor > 0; }
};

}  // namespace zt

namespace zt::cpu {

// The frequencies w_i (head_dim/2), rescaled when `scaling` is enabled; the
// float ones in Hugging Face's float32 arithmetic, the double ones exact.
void rope_inv_freq(float* inv_freq, int head_dim, float theta, const RopeScaling& scaling);
void rope_inv_freq(double* inv_freq, int head_dim, float theta, const RopeScaling& scaling);

// cos, sin (T, head_dim/2)
void rope_table(float* cos, float* sin, int T, int head_dim, float theta,
                const RopeScaling& scaling = RopeScaling{});

// For each (b, t) row r of length row_stride: the first n_head * head_dim
// elements are rotated. out and inp share the layout and may alias.
void rope_forward(float* out, const float* inp, const float* cos, const float* sin, int B, int T,
                  int n_head, int head_dim, int64_t row_stride);

// dinp += R(t)^T dout over the same heads; dinp and dout share the layout, may not alias.
void rope_backward(float* dinp, const float* dout, const float* cos, const float* sin, int B, int T,
                   int n_head, int head_dim, int64_t row_stride);

// bf16 rows, fp32 tables (rope_table's float one); same semantics, in place allowed.
void rope_forward(bf16* out, const bf16* inp, const float* cos, const float* sin, int B, int T,
                  int n_head, int head_dim, int64_t row_stride);
void rope_backward(bf16* dinp, const bf16* dout, const float* cos, const float* sin, int B, int T,
                   int n_head, int head_dim, int64_t row_stride);

// Double-precision twins of the above (same semantics), for finite-difference
// gradient checks.
// The double table is computed in double throughout; the float table follows
// Hugging Face's float32 arithmetic (see rope.cpp).
void rope_table(double* cos, double* sin, int T, int head_dim, float theta,
                const RopeScaling& scaling = RopeScaling{});
void rope_forward(double* out, const double* inp, const double* cos, const double* sin, int B,
                  int T, int n_head, int head_dim, int64_t row_stride);
void rope_backward(double* dinp, const double* dout, const double* cos, const double* sin, int B,
                   int T, int n_head, int head_dim, int64_t row_stride);

}  // namespace zt::cpu
