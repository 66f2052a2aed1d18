// The ops backends the model runs on: the same op names on the CPU (ops/*.h,
// zt::cpu) and on the GPU (ops/cuda/*.h, zt::cuda, on the model's stream).
//
// Model::Pass is written once against this interface: each op family's calls
// (matmul_forward, rmsnorm_backward, ...), plus the few memory moves a pass
// makes itself (zeroing a gradient buffer, copying v's gradient columns,
// bringing tokens in and losses or logits out). CpuOps calls the CPU ops on
// host memory; CudaOps calls the CUDA ops on device memory, queued on one
// stream, and synchronises the host only where a value must come back (the
// losses and the logits).
// Invariant: both backends take the same arguments in the same order, so a
// pass compiles against either; an op the GPU lacks is refused at compile
// time or, for a dtype pair, by Pass with a message.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "ops/attention.h"
#include "ops/classifier.h"
#include "ops/embedding.h"
#include "ops/matmul.h"
#include "ops/mlp.h"
#include "ops/norm.h"
#include "ops/rope.h"

#if ZT_HAVE_CUDA
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "ops/cuda/attention.h"
#include "ops/cuda/classifier.h"
#include "ops/cuda/embedding.h"
#include "ops/cuda/matmul.h"
#include "ops/cuda/mlp.h"
#include "ops/cuda/norm.h"
#include "ops/cuda/residual.h"
#include "ops/cuda/rope.h"
#endif

namespace zt {

// The op calls a pass makes, forwarded by name to the backend's namespace.
#define ZT_MODEL_OPS(X)                                                                         \
    X(embedding_forward)                                                                        \
    X(embedding_backward)                                                                       \
    X(rmsnorm_forward) X(rmsnorm_backward) X(layernorm_forward) X(layernorm_backward)           \
        X(matmul_forward) X(matmul_backward) X(rope_forward) X(rope_backward) X(swiglu_forward) \
            X(swiglu_backward) X(gelu_forward) X(gelu_backward) X(add_inplace)                  \
                X(classifier_forward_backward)

// Memory on the device the model runs on, as seen from the host: what brings
// the engine's host-resident units to the model and its gradients back.
// Copies are ordered with the model's ops (on the GPU: on its stream).
class DeviceCopier {
  public:
    virtual ~DeviceCopier() = default;
    virtual Device device() const = 0;
    virtual void* alloc(size_t bytes) = 0;  // zeroed
    virtual void release(void* p) = 0;
    virtual void upload(void* device_dst, const void* host_src, size_t bytes) = 0;
    // Returns once the bytes are on the host.
    virtual void download(void* host_dst, const void* device_src, size_t bytes) = 0;
    virtual void zero(void* p, size_t bytes) = 0;
};

// Host memory standing in for a device (Device::cpu): the same copies, so
// what runs over a DeviceCopier can be checked without a GPU.
std::unique_ptr<DeviceCopier> make_host_copier();

// Rows of logits the CPU's fused classifier holds at once: ~16 MiB of scratch.
int cpu_classifier_chunk_rows(int64_t N, int V);

struct CpuOps {
    static constexpr Device kDevice = Device::cpu;
    // fp32 gradients of a bf16 model: the CPU has every mixed overload.
    static constexpr bool kMixedGrads = true;

#define ZT_CPU_OP(name)        \
    template <class... A>      \
    void name(A... a) {        \
        ::zt::cpu::name(a...); \
    }
    ZT_MODEL_OPS(ZT_CPU_OP)
    ZT_CPU_OP(attention_forward)
    ZT_CPU_OP(attention_backward)
#undef ZT_CPU_OP

    template <class T>
    void zero(T* p, int64_t n) {
        std::memset(static_cast<void*>(p), 0, size_t(n) * sizeof(T));
    }
    // dst[r * stride + offset + i] = src[r * stride + offset + i] for r < rows, i < len.
    template <class T>
    void copy_columns(T* dst, const T* src, int64_t rows, int64_t stride, int64_t offset,
                      int64_t len) {
        for (int64_t r = 0; r < rows; r++)
            std::memcpy(static_cast<void*>(dst + r * stride + offset), src + r * stride + offset,
                        size_t(len) * sizeof(T));
    }
    // Host tokens (B, T) as the ops read them; `slot` 0 is inputs, 1 targets.
    const int32_t* tokens(const int32_t* host, int /*slot*/) {
        return host;
    }
    // The (n) fp32 values at p, readable by the host.
    const float* to_host(const float* p, int64_t /*n*/) {
        return p;
    }
    // Where the ops write (n) fp32 values the caller wants at `host`, and the
    // call that delivers them there.
    float* host_out(float* host, int64_t /*n*/) {
        return host;
    }
    void finish_host_out() {}
};

#if ZT_HAVE_CUDA

inline __nv_bfloat16* nv(bf16* p) {
    return reinterpret_cast<__nv_bfloat16*>(p);
}
inline const __nv_bfloat16* nv(const bf16* p) {
    return reinterpret_cast<const __nv_bfloat16*>(p);
}
template <class T>
T nv(T x) {
    return x;
}
static_assert(sizeof(bf16) == sizeof(__nv_bfloat16), "bf16 and __nv_bfloat16 must share a layout");

// Rows of logits the GPU's fused classifier holds at once
// (cuda::classifier_chunk_rows: thousands of rows, ~256 MiB of fp32 scratch),
// so the dweight GEMMs run a handful of times a step, not once per 100 rows.
int cuda_classifier_chunk_rows(int64_t N, int V);

// The GPU backend: its own non-blocking stream, device buffers for the
// tokens, host buffers for what comes back. Owned by the model.
class CudaOps : public DeviceCopier {
  public:
    static constexpr Device kDevice = Device::cuda;
    // The CUDA ops write a bf16 model's weight gradients in bf16 only.
    static constexpr bool kMixedGrads = false;

    // N = B * T tokens per micro-batch.
    explicit CudaOps(int64_t N);
    ~CudaOps() override;
    CudaOps(const CudaOps&) = delete;
    CudaOps& operator=(const CudaOps&) = delete;

    cudaStream_t stream() const { return stream_; }

#define ZT_CUDA_OP(name)                     \
    template <class... A>                    \
    void name(A... a) {                      \
        ::zt::cuda::name(nv(a)..., stream_); \
    }
    ZT_MODEL_OPS(ZT_CUDA_OP)
#undef ZT_CUDA_OP

    // Training attention on tensor cores: the cuBLAS path (batched GEMMs
    // around fused causal-softmax kernels), with scratch the backend keeps.
    // The scalar kernels (cuda::attention_forward) remain the tests' oracle.
    template <class T>
    void attention_forward(T* out, T* att, const T* qkv, int B, int T_, int NH, int NKV, int HD) {
        void* s = attention_scratch(B, T_, NH, NKV, HD, sizeof(T) == 4 ? DType::f32 : DType::bf16);
        cuda::attention_forward_cublas(nv(out), nv(att), nv(qkv), B, T_, NH, NKV, HD, s,
                                       scratch_bytes_, stream_);
    }
    template <class T>
    void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* att, int B, int T_,
                            int NH, int NKV, int HD) {
        void* s = attention_scratch(B, T_, NH, NKV, HD, sizeof(T) == 4 ? DType::f32 : DType::bf16);
        cuda::attention_backward_cublas(nv(dqkv), nv(dout), nv(qkv), nv(att), B, T_, NH, NKV, HD, s,
                                        scratch_bytes_, stream_);
    }

    template <class T>
    void zero(T* p, int64_t n) {
        zero_bytes(p, size_t(n) * sizeof(T));
    }
    template <class T>
    void copy_columns(T* dst, const T* src, int64_t rows, int64_t stride, int64_t offset,
                      int64_t len) {
        copy_columns_bytes(dst + offset, src + offset, size_t(rows), size_t(stride) * sizeof(T),
                           size_t(len) * sizeof(T));
    }
    const int32_t* tokens(const int32_t* host, int slot);
    const float* to_host(const float* p, int64_t n);
    float* host_out(float* host, int64_t n);
    void finish_host_out();

    // Device memory for the activation arena (bytes, zeroed), freed with the backend.
    void* alloc_arena(size_t bytes);

    // DeviceCopier, on the stream. upload waits for the copy, so the host
    // buffer may change at once.
    Device device() const override {
        return Device::cuda;
    }
    void* alloc(size_t bytes) override;
    void release(void* p) override;
    void upload(void* device_dst, const void* host_src, size_t bytes) override;
    void download(void* host_dst, const void* device_src, size_t bytes) override;
    void zero(void* p, size_t bytes) override {
        zero_bytes(p, bytes);
    }

  private:
    // Device scratch of at least attention_cublas_scratch_bytes for the shape.
    void* attention_scratch(int B, int T, int NH, int NKV, int HD, DType dtype);
    void zero_bytes(void* p, size_t bytes);
    void copy_columns_bytes(void* dst, const void* src, size_t rows, size_t pitch, size_t width);

    cudaStream_t stream_ = nullptr;
    int64_t N_ = 0;
    int32_t* tokens_[2] = {nullptr, nullptr};  // (N) inputs, targets on the device
    void* arena_ = nullptr;
    void* scratch_ = nullptr;  // the attention's
    size_t scratch_bytes_ = 0;
    std::vector<float> host_;      // what to_host brought back
    float* out_device_ = nullptr;  // host_out's device side
    int64_t out_capacity_ = 0;
    float* out_host_ = nullptr;
    int64_t out_n_ = 0;
};

#endif  // ZT_HAVE_CUDA

}  // namespace zt
