// Check macros for every CUDA runtime and cuBLASLt call and every kernel launch.
//
// Invariant: no CUDA status is ever dropped. A failure throws zt::Error (through
// zt::fail, always on) naming the call as written, the file:line, and the
// library's own error string, so "CUDA call cudaMalloc(&p, bytes) failed: out of
// memory" is what the user reads. Destructors cannot throw: they use
// ZT_CUDA_WARN, which prints the same message to stderr and carries on.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdio>

#include "core/check.h"

#define ZT_CUDA_CHECK(call)                                                               \
    do {                                                                                  \
        const cudaError_t zt_cuda_err_ = (call);                                          \
        if (zt_cuda_err_ != cudaSuccess) {                                                \
            ::zt::fail(__FILE__, __LINE__, "CUDA call %s failed: %s (%s)", #call,         \
                       cudaGetErrorString(zt_cuda_err_), cudaGetErrorName(zt_cuda_err_)); \
        }                                                                                 \
    } while (0)

#define ZT_CUBLAS_CHECK(call)                                                                \
    do {                                                                                     \
        const cublasStatus_t zt_cublas_st_ = (call);                                         \
        if (zt_cublas_st_ != CUBLAS_STATUS_SUCCESS) {                                        \
            ::zt::fail(__FILE__, __LINE__, "cuBLASLt call %s failed: %s (status %d)", #call, \
                       cublasLtGetStatusString(zt_cublas_st_), int(zt_cublas_st_));          \
        }                                                                                    \
    } while (0)

// After every <<<...>>> launch: catches bad launch configurations at once
// (asynchronous faults inside the kernel surface at the next checked call).
#define ZT_CUDA_LAUNCH_CHECK(kernel_name)                                                    \
    do {                                                                                     \
        const cudaError_t zt_cuda_err_ = cudaGetLastError();                                 \
        if (zt_cuda_err_ != cudaSuccess) {                                                   \
            ::zt::fail(__FILE__, __LINE__, "kernel %s: launch failed: %s (%s)", kernel_name, \
                       cudaGetErrorString(zt_cuda_err_), cudaGetErrorName(zt_cuda_err_));    \
        }                                                                                    \
    } while (0)

// For destructors and other no-throw paths: report, never throw.
#define ZT_CUDA_WARN(call)                                                                      \
    do {                                                                                        \
        const cudaError_t zt_cuda_err_ = (call);                                                \
        if (zt_cuda_err_ != cudaSuccess && zt_cuda_err_ != cudaErrorCudartUnloading) {          \
            std::fprintf(stderr, "%s:%d: CUDA call %s failed: %s\n", __FILE__, __LINE__, #call, \
                         cudaGetErrorString(zt_cuda_err_));                                     \
        }                                                                                       \
    } while (0)
