// One cuBLASLt GEMM, described in cuBLAS's column-major terms, for the ops
// that are matrix products (matmul, the classifier).
//
//   D (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * D,  then the epilogue
//
// With batch > 1 that is `batch` independent products, product i reading
// A + i * stride_a, B + i * stride_b and writing D + i * stride_d (strides in
// elements of the operand's own type); batched GEMMs take no epilogue.
//
// A row-major (R, S) array is a column-major (S, R) one with the same leading
// dimension, which is how the row-major ops below map onto this call.
// Invariant: compute is always fp32 (CUBLAS_COMPUTE_32F: no TF32, no bf16
// accumulation), so fp32 results match the CPU to rounding and bf16 inputs
// accumulate in fp32. beta = 1 makes D accumulate, which is how every
// backward keeps the "+=" contract.
#pragma once

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace zt::cuda {

enum class GemmEpilogue {
    none,
    bias,           // D = AB + bias (bias has m elements, broadcast over columns)
    gelu_aux_bias,  // aux = AB + bias, D = gelu_tanh(aux); bias may be null
};

struct GemmDesc {
    bool trans_a = false, trans_b = false;
    int64_t m = 0, n = 0, k = 0;
    const void* A = nullptr;
    int64_t lda = 0;
    const void* B = nullptr;
    int64_t ldb = 0;
    cudaDataType_t ab_type = CUDA_R_32F;  // A and B share one type
    void* D = nullptr;
    int64_t ldd = 0;
    cudaDataType_t d_type = CUDA_R_32F;
    float alpha = 1.0f, beta = 0.0f;
    GemmEpilogue epilogue = GemmEpilogue::none;
    const void* bias = nullptr;  // type d_type
    void* aux = nullptr;         // (m, n) column-major, type d_type, ld ld_aux
    int64_t ld_aux = 0;
    int batch = 1;
    int64_t stride_a = 0, stride_b = 0, stride_d = 0;
};

// The cuBLASLt type of an element type.
template <class T>
constexpr cudaDataType_t cuda_data_type();
template <>
constexpr cudaDataType_t cuda_data_type<float>() {
    return CUDA_R_32F;
}
template <>
constexpr cudaDataType_t cuda_data_type<__nv_bfloat16>() {
    return CUDA_R_16BF;
}

// Runs the GEMM on `stream` with the stream's workspace. The algorithm is
// chosen by cuBLASLt's heuristic for the shape, types and pointer alignments,
// once per distinct key, then cached. Fails (never falls back) when cuBLASLt
// offers no algorithm (the heuristic answers NOT_SUPPORTED or finds none),
// naming M, N, K, the types, transposes, leading dimensions, batch and
// pointer alignments.
void gemm(const GemmDesc& g, cudaStream_t stream);

}  // namespace zt::cuda
