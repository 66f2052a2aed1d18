// DeviceArena: one cudaMalloc block per memory category, bump-allocated.
//
// Invariant: the ledger holds exactly `capacity_` bytes under `cat_` for as
// long as the block exists; allocations never exceed the block (a request that
// does not fit fails with the arena's name and its numbers, never grows it
// behind the ledger's back). A failed cudaMalloc is reported by device_malloc
// with the bytes asked, the category and the device's free memory, and its
// sticky error is cleared so the next launch check does not misreport it.
#include "ops/cuda/device_arena.h"

namespace zt::cuda {

void device_malloc(void** p, size_t bytes, const char* what, MemCategory cat) {
    *p = nullptr;
    const cudaError_t err = cudaMalloc(p, bytes);
    if (err == cudaSuccess) return;
    *p = nullptr;
    // The failed call left the error sticky for cudaGetLastError, which the
    // next ZT_CUDA_LAUNCH_CHECK would report against an unrelated kernel.
    (void)cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
        (void)cudaGetLastError();
        free_b = total_b = 0;
    }
    int dev = -1;
    if (cudaGetDevice(&dev) != cudaSuccess) (void)cudaGetLastError();
    constexpr double kGiB = double(1ull << 30);
    ZT_FAIL(
        "%s (memory category '%s'): cudaMalloc of %zu bytes (%.3f GiB) on device %d failed: %s "
        "(%s); the device has %zu bytes (%.3f GiB) free of %zu (%.3f GiB) (hint: lower "
        "--micro-batch or --seq-len, use --recompute, or raise --zero-stage)",
        what, mem_category_name(cat), bytes, double(bytes) / kGiB, dev, cudaGetErrorString(err),
        cudaGetErrorName(err), free_b, double(free_b) / kGiB, total_b, double(total_b) / kGiB);
}

DeviceArena::DeviceArena(MemoryLedger* ledger, MemCategory cat, size_t capacity_bytes,
                         cudaStream_t stream, std::string name)
    : ledger_(ledger), cat_(cat), capacity_(aligned(capacity_bytes)), name_(std::move(name)) {
    if (capacity_ == 0) return;
    const std::string what = "device arena '" + name_ + "'";
    device_malloc(reinterpret_cast<void**>(&base_), capacity_, what.c_str(), cat_);
    cudaError_t zero_err = cudaMemsetAsync(base_, 0, capacity_, stream);
    if (zero_err == cudaSuccess) zero_err = cudaStreamSynchronize(stream);
    if (zero_err != cudaSuccess) {
        (void)cudaGetLastError();
        cudaFree(base_);  // the destructor does not run for a throwing constructor
        base_ = nullptr;
        ZT_FAIL("device arena '%s': zeroing %zu bytes on its stream failed: %s", name_.c_str(),
                capacity_, cudaGetErrorString(zero_err));
    }
    if (ledger_) ledger_->add(cat_, int64_t(capacity_));
}

DeviceArena::~DeviceArena() {
    release();
}

void DeviceArena::release() {
    if (base_) {
        ZT_CUDA_WARN(cudaFree(base_));
        if (ledger_) ledger_->sub(cat_, int64_t(capacity_));
    }
    base_ = nullptr;
    capacity_ = used_ = high_water_ = 0;
}

DeviceArena::DeviceArena(DeviceArena&& other) noexcept {
    *this = std::move(other);
}

DeviceArena& DeviceArena::operator=(DeviceArena&& other) noexcept {
    if (this != &other) {
        release();
        ledger_ = other.ledger_;
        cat_ = other.cat_;
        base_ = std::exchange(other.base_, nullptr);
        capacity_ = std::exchange(other.capacity_, 0);
        used_ = std::exchange(other.used_, 0);
        high_water_ = std::exchange(other.high_water_, 0);
        name_ = std::move(other.name_);
    }
    return *this;
}

void* DeviceArena::alloc_bytes(size_t bytes) {
    const size_t need = aligned(bytes);
    ZT_CHECK(used_ + need <= capacity_,
             "device arena '%s' (%s) exhausted: %zu bytes used of %zu, %zu more requested "
             "(hint: the arena is sized up front from the model shape and batch; a larger "
             "request means the sizing missed a buffer)",
             name_.c_str(), mem_category_name(cat_), used_, capacity_, need);
    uint8_t* p = base_ + used_;
    used_ += need;
    if (used_ > high_water_) high_water_ = used_;
    return p;
}

}  // namespace zt::cuda
