// The GPU side of the model's ops backend (ops/backend.h): the stream, the
// token and output buffers, the activation arena, the memory moves.
#include "ops/backend.h"

#include <algorithm>

#include "core/check.h"
#include "ops/cuda/cuda_check.h"

namespace zt {

int cuda_classifier_chunk_rows(int64_t N, int V) {
    int64_t rows = (int64_t(64) << 20) / V;
    return int(std::min<int64_t>(std::max<int64_t>(rows, 1024), N));
}

CudaOps::CudaOps(int64_t N) : N_(N) {
    ZT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    for (auto& t : tokens_)
        ZT_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&t), size_t(N) * sizeof(int32_t)));
}

CudaOps::~CudaOps() {
    if (stream_) ZT_CUDA_WARN(cudaStreamSynchronize(stream_));
    for (auto* t : tokens_)
        if (t) ZT_CUDA_WARN(cudaFree(t));
    if (out_device_) ZT_CUDA_WARN(cudaFree(out_device_));
    if (arena_) ZT_CUDA_WARN(cudaFree(arena_));
    if (stream_) ZT_CUDA_WARN(cudaStreamDestroy(stream_));
}

void* CudaOps::alloc_arena(size_t bytes) {
    ZT_CHECK(!arena_, "internal: the GPU activation arena is allocated once");
    const cudaError_t err = cudaMalloc(&arena_, bytes);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();  // a failed allocation must not be blamed on the next launch
        arena_ = nullptr;
        size_t free_b = 0, total_b = 0;
        (void)cudaMemGetInfo(&free_b, &total_b);
        ZT_FAIL(
            "activations: cudaMalloc of %zu bytes failed (%s); the GPU has %zu of %zu bytes "
            "free. Lower --micro-batch or --seq-len, or use --recompute",
            bytes, cudaGetErrorString(err), free_b, total_b);
    }
    zero_bytes(arena_, bytes);
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return arena_;
}

void CudaOps::upload(void* device_dst, const void* host_src, size_t bytes) {
    ZT_CUDA_CHECK(cudaMemcpyAsync(device_dst, host_src, bytes, cudaMemcpyHostToDevice, stream_));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaOps::zero_bytes(void* p, size_t bytes) {
    if (bytes) ZT_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_));
}

void CudaOps::copy_columns_bytes(void* dst, const void* src, size_t rows, size_t pitch,
                                 size_t width) {
    if (rows && width)
        ZT_CUDA_CHECK(cudaMemcpy2DAsync(dst, pitch, src, pitch, width, rows,
                                        cudaMemcpyDeviceToDevice, stream_));
}

const int32_t* CudaOps::tokens(const int32_t* host, int slot) {
    ZT_CHECK(slot == 0 || slot == 1, "internal: token slot %d", slot);
    // From pageable memory the copy is staged before the call returns, so the
    // caller may reuse `host` at once.
    ZT_CUDA_CHECK(cudaMemcpyAsync(tokens_[slot], host, size_t(N_) * sizeof(int32_t),
                                  cudaMemcpyHostToDevice, stream_));
    return tokens_[slot];
}

const float* CudaOps::to_host(const float* p, int64_t n) {
    host_.resize(size_t(n));
    ZT_CUDA_CHECK(cudaMemcpyAsync(host_.data(), p, size_t(n) * sizeof(float),
                                  cudaMemcpyDeviceToHost, stream_));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return host_.data();
}

float* CudaOps::host_out(float* host, int64_t n) {
    if (n > out_capacity_) {
        if (out_device_) ZT_CUDA_CHECK(cudaFree(out_device_));
        out_device_ = nullptr;
        ZT_CUDA_CHECK(
            cudaMalloc(reinterpret_cast<void**>(&out_device_), size_t(n) * sizeof(float)));
        out_capacity_ = n;
    }
    out_host_ = host;
    out_n_ = n;
    return out_device_;
}

void CudaOps::finish_host_out() {
    ZT_CHECK(out_host_, "internal: finish_host_out without host_out");
    ZT_CUDA_CHECK(cudaMemcpyAsync(out_host_, out_device_, size_t(out_n_) * sizeof(float),
                                  cudaMemcpyDeviceToHost, stream_));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    out_host_ = nullptr;
}

}  // namespace zt
