// The GPU side of the model's ops backend (ops/backend.h): the stream, the
// token and output buffers, the activation arena, the memory moves.
#include "ops/backend.h"

#include <algorithm>

#include "core/check.h"
#include "ops/cuda/attention.h"
#include "ops/cuda/classifier.h"
#include "ops/cuda/cuda_check.h"

namespace zt {

int cuda_classifier_chunk_rows(int64_t N, int V) {
    return cuda::classifier_chunk_rows(N, V);
}

CudaOps::CudaOps(int64_t N) : N_(N) {
    int devices = 0;
    const cudaError_t err = cudaGetDeviceCount(&devices);
    (void)cudaGetLastError();
    ZT_USER_CHECK(err == cudaSuccess && devices > 0,
                  "--device cuda: no usable GPU on this machine (%s); use --device cpu",
                  err != cudaSuccess ? cudaGetErrorString(err) : "cudaGetDeviceCount found none");
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
    if (scratch_) ZT_CUDA_WARN(cudaFree(scratch_));
    if (stream_) ZT_CUDA_WARN(cudaStreamDestroy(stream_));
}

namespace {

// cudaMalloc of `bytes` for `what`, zeroed on `stream`; a failure clears the
// sticky error (so the next launch is not blamed) and says what was free.
void* device_alloc(size_t bytes, const char* what, const char* hint, cudaStream_t stream) {
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        (void)cudaMemGetInfo(&free_b, &total_b);
        ZT_FAIL("%s: cudaMalloc of %zu bytes failed (%s); the GPU has %zu of %zu bytes free.%s",
                what, bytes, cudaGetErrorString(err), free_b, total_b, hint);
    }
    if (bytes) ZT_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream));
    return p;
}

}  // namespace

void* CudaOps::alloc_arena(size_t bytes) {
    ZT_CHECK(!arena_, "internal: the GPU activation arena is allocated once");
    arena_ = device_alloc(bytes, "activations",
                          " Lower --micro-batch or --seq-len, or use --recompute", stream_);
    return arena_;
}

void* CudaOps::alloc(size_t bytes) {
    return device_alloc(bytes, "the units' GPU copies", " Lower the model size or use a larger GPU",
                        stream_);
}

void CudaOps::release(void* p) {
    if (!p) return;
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    ZT_CUDA_CHECK(cudaFree(p));
}

void CudaOps::download(void* host_dst, const void* device_src, size_t bytes) {
    ZT_CUDA_CHECK(cudaMemcpyAsync(host_dst, device_src, bytes, cudaMemcpyDeviceToHost, stream_));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void* CudaOps::attention_scratch(int B, int T, int NH, int NKV, int HD, DType dtype) {
    const size_t need = cuda::attention_cublas_scratch_bytes(B, T, NH, NKV, HD, dtype);
    if (need > scratch_bytes_) {
        release(scratch_);
        scratch_ = nullptr;
        scratch_bytes_ = 0;
        scratch_ =
            device_alloc(need, "attention scratch", " Lower --micro-batch or --seq-len", stream_);
        scratch_bytes_ = need;
    }
    return scratch_;
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
        release(out_device_);
        out_device_ = nullptr;
        out_device_ = static_cast<float*>(
            device_alloc(size_t(n) * sizeof(float), "logits", " Lower --micro-batch", stream_));
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
