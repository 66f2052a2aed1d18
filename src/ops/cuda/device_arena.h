// Device memory: DeviceBuffer (one owned cudaMalloc array) and DeviceArena (one
// cudaMalloc block per memory category, bump-allocated, freed all at once).
//
// Invariant: every byte these hold is counted in a MemoryLedger under the
// category it was created with, from construction to destruction, so the GPU's
// `mem_bytes` are counted, not estimated. Plain cudaMalloc only: no managed
// memory, no stream-ordered pools whose size the ledger cannot see.
// Allocations are 256-byte aligned (cuBLASLt's preferred alignment).
// Every copy and zeroing is ordered on the stream the caller names; nothing
// here uses the legacy default stream implicitly, which would not be ordered
// against the engine's non-blocking streams. The *_async forms only enqueue,
// the plain forms also wait for that stream.
// A failed allocation clears CUDA's sticky last error before it throws, so the
// next launch check does not blame an unrelated kernel.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "ops/cuda/cuda_check.h"
#include "prof/memory.h"

namespace zt::cuda {

// cudaMalloc of `bytes` into *p, or a thrown error naming the bytes asked,
// what they are for (`what`, the ledger category) and the device's free and
// total memory; clears the sticky error of the failed call first.
void device_malloc(void** p, size_t bytes, const char* what, MemCategory cat);

// An owning device array of n elements of T; ledger may be null (not counted).
// Contents are not initialised.
template <typename T>
class DeviceBuffer {
  public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(int64_t n, MemoryLedger* ledger = nullptr,
                          MemCategory cat = MemCategory::buffers)
        : ledger_(ledger), cat_(cat), n_(n) {
        ZT_CHECK(n >= 0, "DeviceBuffer: negative element count %lld", (long long)n);
        if (n_ == 0) return;
        device_malloc(reinterpret_cast<void**>(&data_), bytes(), "device buffer", cat_);
        if (ledger_) ledger_->add(cat_, int64_t(bytes()));
    }
    ~DeviceBuffer() { release(); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        if (this != &o) {
            release();
            ledger_ = o.ledger_;
            cat_ = o.cat_;
            n_ = std::exchange(o.n_, 0);
            data_ = std::exchange(o.data_, nullptr);
        }
        return *this;
    }

    T* data() { return data_; }
    const T* data() const { return data_; }
    int64_t size() const { return n_; }
    size_t bytes() const { return size_t(n_) * sizeof(T); }

    // Copies of the first n elements, ordered on `stream`. The async forms
    // only enqueue: the host array must stay valid and unchanged until the
    // stream reaches the copy. The plain forms wait for the stream, so the
    // host data is usable (copy_to_host) or reusable (copy_from_host) at once.
    void copy_from_host_async(const T* host, int64_t n, cudaStream_t stream) {
        check_count("into", n);
        if (n > 0)
            ZT_CUDA_CHECK(cudaMemcpyAsync(data_, host, size_t(n) * sizeof(T),
                                          cudaMemcpyHostToDevice, stream));
    }
    void copy_from_host(const T* host, int64_t n, cudaStream_t stream) {
        copy_from_host_async(host, n, stream);
        ZT_CUDA_CHECK(cudaStreamSynchronize(stream));
    }
    void copy_to_host_async(T* host, int64_t n, cudaStream_t stream) const {
        check_count("out of", n);
        if (n > 0)
            ZT_CUDA_CHECK(cudaMemcpyAsync(host, data_, size_t(n) * sizeof(T),
                                          cudaMemcpyDeviceToHost, stream));
    }
    void copy_to_host(T* host, int64_t n, cudaStream_t stream) const {
        copy_to_host_async(host, n, stream);
        ZT_CUDA_CHECK(cudaStreamSynchronize(stream));
    }
    // Zeroes every element, ordered on `stream` (enqueued only).
    void zero_async(cudaStream_t stream) {
        if (n_ > 0) ZT_CUDA_CHECK(cudaMemsetAsync(data_, 0, bytes(), stream));
    }

  private:
    void check_count(const char* dir, int64_t n) const {
        ZT_CHECK(n >= 0 && n <= n_, "DeviceBuffer: copy of %lld elements %s %lld", (long long)n,
                 dir, (long long)n_);
    }
    void release() {
        if (data_) {
            ZT_CUDA_WARN(cudaFree(data_));
            if (ledger_) ledger_->sub(cat_, int64_t(bytes()));
        }
        data_ = nullptr;
        n_ = 0;
    }

    MemoryLedger* ledger_ = nullptr;
    MemCategory cat_ = MemCategory::buffers;
    int64_t n_ = 0;
    T* data_ = nullptr;
};

// One device block for one ledger category (activations of a step, gathered
// parameters of a unit, ...), handed out by bumping an offset.
class DeviceArena {
  public:
    DeviceArena() = default;
    // Reserves capacity_bytes (rounded up to kAlign) with one cudaMalloc and
    // zeroes it once on `stream`, waiting for that stream, so the zeros are in
    // place for every stream when the constructor returns.
    DeviceArena(MemoryLedger* ledger, MemCategory cat, size_t capacity_bytes, cudaStream_t stream,
                std::string name = "device-arena");
    ~DeviceArena();
    DeviceArena(const DeviceArena&) = delete;
    DeviceArena& operator=(const DeviceArena&) = delete;
    DeviceArena(DeviceArena&& other) noexcept;
    DeviceArena& operator=(DeviceArena&& other) noexcept;

    // n elements of T, aligned to kAlign. Contents are whatever the block held
    // (zero only until the first reset); use alloc_zeroed where zeros matter.
    template <typename T>
    T* alloc(size_t n) {
        return static_cast<T*>(alloc_bytes(n * sizeof(T)));
    }
    // n zeroed elements of T; the zeroing is ordered on `stream`.
    template <typename T>
    T* alloc_zeroed(size_t n, cudaStream_t stream) {
        void* p = alloc_bytes(n * sizeof(T));
        if (n > 0) ZT_CUDA_CHECK(cudaMemsetAsync(p, 0, n * sizeof(T), stream));
        return static_cast<T*>(p);
    }
    void* alloc_bytes(size_t bytes);
    // Forgets every allocation; the caller guarantees no kernel still uses them.
    void reset() { used_ = 0; }

    size_t capacity() const { return capacity_; }
    size_t used() const { return used_; }
    size_t high_water() const { return high_water_; }
    MemCategory category() const { return cat_; }
    const std::string& name() const { return name_; }

    static constexpr size_t kAlign = 256;
    static size_t aligned(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

  private:
    void release();

    MemoryLedger* ledger_ = nullptr;
    MemCategory cat_ = MemCategory::buffers;
    uint8_t* base_ = nullptr;
    size_t capacity_ = 0;
    size_t used_ = 0;
    size_t high_water_ = 0;
    std::string name_;
};

}  // namespace zt::cuda
