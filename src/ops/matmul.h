// Matmul (linear layer) forward and backward.
//
// Weights are stored (OC, C), PyTorch's nn.Linear layout: out = inp @ W^T + b.
// Invariant shared by every backward in src/ops: gradients are ACCUMULATED
// (+=) into every d-pointer, so micro-batches and residual branches add up;
// callers zero gradient buffers when a new accumulation starts. A null
// d-pointer means "not needed" and skips that work.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace zt::cpu {

// out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC); bias may be null.
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N,
                    int C, int OC);

// dinp (N, C) += dout (N, OC) @ weight (OC, C)
// dweight (OC, C) += dout^T @ inp (N, C)
// dbias (OC) += column sums of dout
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int C, int OC);

// bf16 twins of the above (same semantics) for --precision bf16: bf16 storage,
// every product and the bias column sums accumulated in fp32, and each
// output rounded once (a bf16 gradient: old value plus the fp32 sum, rounded).
// Weight gradients come in fp32 or bf16, as the engine's reduce dtype asks.
void matmul_forward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int64_t N,
                    int C, int OC);
void matmul_backward(bf16* dinp, float* dweight, float* dbias, const bf16* dout, const bf16* inp,
                     const bf16* weight, int64_t N, int C, int OC);
void matmul_backward(bf16* dinp, bf16* dweight, bf16* dbias, const bf16* dout, const bf16* inp,
                     const bf16* weight, int64_t N, int C, int OC);

// fp32 out from bf16 operands, otherwise as the bf16 matmul_forward: the
// classifier's logits of a bf16 model, which the loss reads in fp32.
void matmul_forward(float* out, const bf16* inp, const bf16* weight, const bf16* bias, int64_t N,
                    int C, int OC);

// One row of the fp32 matmul_forward as a GEMV, for KV-cached decoding:
// out (OC) = weight (OC, C) @ x (C) + bias (OC); bias may be null. Split over
// up to `threads` OpenMP threads, each owning a contiguous block of output rows,
// so no element is written twice and each row's dot product is the same
// whatever the thread count.
void matmul_forward_row(float* out, const float* x, const float* weight, const float* bias, int C,
                        int OC, int threads);

// Which BLAS the fp32 and fp64 GEMMs call, for `zerotrain --version`:
// "openblas" and OpenBLAS's own configuration string, or "portable blocked
// GEMM (built without OpenBLAS: ZT_BLAS=OFF or not found)".
const char* gemm_fp32_path();

// Which implementation the bf16 GEMMs use on this machine, for the run line:
// the oneDNN version and the kernel oneDNN picks for a 256^3 product, e.g.
// "onednn 2.6.3 (brg:avx512_core_amx_bf16)", or
// "fallback: fp32 sgemm on widened operands (oneDNN not built in)".
const char* gemm_bf16_path();

// Double-precision twins of the above (same semantics), for finite-difference
// gradient checks.
void matmul_forward(double* out, const double* inp, const double* weight, const double* bias,
                    int64_t N, int C, int OC);
void matmul_backward(double* dinp, double* dweight, double* dbias, const double* dout,
                     const double* inp, const double* weight, int64_t N, int C, int OC);

}  // namespace zt::cpu
